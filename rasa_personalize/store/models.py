"""SQLAlchemy 2 typed ORM models. Every change here needs an Alembic migration."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rasa_personalize.clock import utc_now
from rasa_personalize.store.dialect import DOUBLE, MYSQL, MYSQL_TABLE_OPTIONS, UTC_DATETIME

# "rating" holds explicit star ratings (value 1-5), e.g. imported from MovieLens.
# "shown" is a product the assistant recommended in a chat (an impression, not a liking);
# "category_asked" is a category the customer asked about (product-less, in `category`).
# From Rasa's event broker (product-less): "chat_message" is one message of the customer
# (its intent in `category`), "session_start" a conversation session begun, and
# "session_end" its length, recorded when it is over (seconds in `value`, the customer's
# messages in `quantity`).
INTERACTION_KINDS: Final = (
    "view",
    "search",
    "cart",
    "purchase",
    "chat_click",
    "feedback",
    "rating",
    "shown",
    "category_asked",
    "chat_message",
    "session_start",
    "session_end",
)
# What the assistant did rather than the customer: never counted as customer activity.
ASSISTANT_KINDS: Final = ("shown",)
KIND_CHECK: Final = "kind IN ({})".format(", ".join(f"'{kind}'" for kind in INTERACTION_KINDS))

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite and MySQL forget the zone)."""

    impl = UTC_DATETIME
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime (UTC)")
        utc = value.astimezone(timezone.utc)
        # MySQL's DATETIME holds no zone: it gets the UTC wall time, whatever a driver
        # would make of an offset.
        return utc.replace(tzinfo=None) if dialect.name == MYSQL else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table of the store."""


class Customer(Base):
    """A customer, known only by a keyed hash of their external id."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    age: Mapped[int | None] = mapped_column(Integer)
    gender: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(128))
    loyalty_tier: Mapped[str] = mapped_column(String(16), default="none")
    # Set only by the synthetic demo generator: the behaviour group a customer was drawn
    # from, so segmentation can be scored against the truth.
    synthetic_group: Mapped[str | None] = mapped_column(String(32))
    # Also demo data only: the probability the customer was drawn to buy with in the week
    # before seeding, the truth a purchase-propensity model is scored against.
    synthetic_purchase_probability: Mapped[float | None] = mapped_column(DOUBLE)
    # Contact details, each encrypted on its own (AES-256-GCM) as "<key id>:<base64 of
    # nonce + ciphertext>" (rasa_personalize/imports/contacts.py); never keys, never logged.
    name_encrypted: Mapped[str | None] = mapped_column(String(512))
    email_encrypted: Mapped[str | None] = mapped_column(String(512))
    phone_encrypted: Mapped[str | None] = mapped_column(String(512))
    # Blind indexes: keyed hashes of the normalised e-mail and phone, so that an import
    # finds an exact duplicate by an indexed lookup instead of decrypting every row.
    email_index: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)

    __table_args__ = (
        CheckConstraint(
            "loyalty_tier IN ('none', 'silver', 'gold', 'platinum')", name="ck_customers_tier"
        ),
        CheckConstraint("age IS NULL OR (age >= 0 AND age < 150)", name="ck_customers_age"),
        MYSQL_TABLE_OPTIONS,
    )


ALIAS_MATCHES: Final = ("exact", "fuzzy")


class CustomerAlias(Base):
    """The key of a customer merged into another, so their old id still reaches them.

    Events, chats and profile reads under the alias key resolve to ``customer_id``.
    """

    __tablename__ = "customer_aliases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alias_key: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    # How the duplicate was found: equal e-mail or phone, or a fuzzy match.
    match: Mapped[str] = mapped_column(String(16))
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        # An expression, not text: MATCH is a reserved word on MySQL and must be quoted.
        CheckConstraint(column("match").in_(ALIAS_MATCHES), name="ck_customer_aliases_match"),
        MYSQL_TABLE_OPTIONS,
    )


class CustomerProfile(Base):
    """The profile document: static attributes plus behavioural metrics, versioned."""

    __tablename__ = "customer_profiles"

    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = MYSQL_TABLE_OPTIONS


class CustomerTag(Base):
    """A fine-grained tag on a customer ("interested_in_running"), with where it came from."""

    __tablename__ = "customer_tags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    tag: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), default="manual")
    weight: Mapped[float] = mapped_column(DOUBLE, default=1.0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        UniqueConstraint("customer_id", "tag", name="uq_customer_tags_tag"),
        MYSQL_TABLE_OPTIONS,
    )


class Product(Base):
    """A catalogue item."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), index=True)
    brand: Mapped[str | None] = mapped_column(String(64))
    price: Mapped[float] = mapped_column(Numeric(12, 2, asdecimal=False))
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)

    __table_args__ = (CheckConstraint("price >= 0", name="ck_products_price"), MYSQL_TABLE_OPTIONS)


class Interaction(Base):
    """One thing a customer did: viewed, searched, carted, bought, clicked, rated."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Idempotency: the same event delivered twice is stored once.
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("products.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(DOUBLE)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    price: Mapped[float | None] = mapped_column(Numeric(12, 2, asdecimal=False))
    channel: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(32))
    # Where the customer was, as the sender put it (a city or region; never coordinates).
    location: Mapped[str | None] = mapped_column(String(128))
    # The category a product-less event is about ("category_asked", "search").
    category: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        CheckConstraint(KIND_CHECK, name="ck_interactions_kind"),
        CheckConstraint("quantity >= 0", name="ck_interactions_quantity"),
        Index("ix_interactions_customer_time", "customer_id", "occurred_at"),
        Index("ix_interactions_product", "product_id"),
        # Retention deletes by age across all customers.
        Index("ix_interactions_occurred_at", "occurred_at"),
        MYSQL_TABLE_OPTIONS,
    )


class InteractionInbox(Base):
    """An interaction not yet added to its customer's running totals.

    The event paths (``write_interactions``, the chat writer) add a row with each new
    interaction, in the same transaction; the stream worker's refresh takes them out as
    it folds their interactions into ``customer_totals``
    (:mod:`rasa_personalize.store.totals`).
    """

    __tablename__ = "interaction_inbox"

    # By event id, which the writer has in hand: no read of the new rows' ids. No
    # foreign keys: checked row by row, they made each event's inbox row cost several
    # times the row itself. A refresh deletes rows whose interaction is gone; erasure
    # and merges delete a customer's rows themselves.
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The interaction's customer, so that a refresh finds its customers' rows directly.
    # A merge moves interactions to the survivor and deletes the duplicate's inbox rows;
    # the survivor's totals are computed again from its history.
    customer_id: Mapped[int] = mapped_column(BigId, index=True)

    __table_args__ = MYSQL_TABLE_OPTIONS


class CustomerRunningTotals(Base):
    """Sums over a customer's interactions that are not in ``interaction_inbox``: the
    counts, money, times, categories, intents and active days that metrics and tag
    features derive from (a JSON document, :class:`~rasa_personalize.store.totals.Totals`)."""

    __tablename__ = "customer_totals"

    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    totals: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = MYSQL_TABLE_OPTIONS


class SegmentAssignment(Base):
    """The segment a method put a customer in, with the model version and a score."""

    __tablename__ = "segment_assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigId, ForeignKey("customers.id", ondelete="CASCADE"))
    segment: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(DOUBLE)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        UniqueConstraint("customer_id", "method", name="uq_segment_assignments_method"),
        Index("ix_segment_assignments_customer", "customer_id", "assigned_at"),
        MYSQL_TABLE_OPTIONS,
    )


class PropensityScore(Base):
    """A customer's latest calibrated propensity for a target, with the model that gave it.

    One row per customer and target, replaced by every scoring run. The hot path reads
    the same score from the profile's ``metrics`` document instead (no extra query);
    this table is the record that export, erasure and reports read.
    """

    __tablename__ = "propensity_scores"

    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    score: Mapped[float] = mapped_column(DOUBLE)
    model_version: Mapped[str] = mapped_column(String(64))
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        CheckConstraint("score >= 0 AND score <= 1", name="ck_propensity_scores_score"),
        MYSQL_TABLE_OPTIONS,
    )


class PrecomputedRecommendations(Base):
    """A customer's top items from the last training run, so the hot path reads one row.

    Filters (stock, category, price cap) still apply at request time.
    """

    __tablename__ = "precomputed_recommendations"

    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    # [[sku, score], ...], best first.
    items: Mapped[list[Any]] = mapped_column(JsonDocument)
    model_version: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = MYSQL_TABLE_OPTIONS


API_KEY_SCOPES: Final = ("ingest", "read", "admin")


class ApiKey(Base):
    """A key for the HTTP API, stored only as the SHA-256 of the key itself.

    Keys are 256 random bits, so a plain hash cannot be brute-forced and needs no salt or
    slow KDF; the hash is what requests are looked up by.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        CheckConstraint("scope IN ('ingest', 'read', 'admin')", name="ck_api_keys_scope"),
        MYSQL_TABLE_OPTIONS,
    )


CONSENT_PURPOSES: Final = ("personalization", "tracking", "marketing")
CONSENT_SOURCES: Final = ("chat", "api", "import", "cli")


class ConsentState(Base):
    """A customer's current answer for one purpose, by customer key.

    Keyed by the customer key, not the customer row: a visitor who says "don't use my
    data" before the store knows them is still heard, and the answer survives until they
    become a customer (and is what stops their events from being stored).
    """

    __tablename__ = "consent_states"

    customer_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        CheckConstraint(
            "purpose IN ('personalization', 'tracking', 'marketing')",
            name="ck_consent_states_purpose",
        ),
        CheckConstraint(
            "source IN ('chat', 'api', 'import', 'cli')", name="ck_consent_states_source"
        ),
        MYSQL_TABLE_OPTIONS,
    )


CONSENT_DECISIONS: Final = ("granted", "denied", "erased")


class ConsentChange(Base):
    """Append-only history of consent: every grant and denial, and an erasure marker.

    An erasure deletes the customer's states and history and leaves one row with decision
    "erased" (purpose, source and policy empty): the record that consent ended there.
    """

    __tablename__ = "consent_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_key: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(16))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    __table_args__ = (
        CheckConstraint(
            "decision IN ('granted', 'denied', 'erased')", name="ck_consent_history_decision"
        ),
        Index("ix_consent_history_customer", "customer_key", "recorded_at"),
        MYSQL_TABLE_OPTIONS,
    )


class AuditEntry(Base):
    """Append-only log of privacy operations, profile reads and writes, and key changes.

    ``customer_key`` is the keyed hash, never a raw id; ``detail`` holds counts and names
    (never personal data).
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    # "cli", or "api" with the key's id and label.
    actor: Mapped[str] = mapped_column(String(16))
    api_key_id: Mapped[int | None] = mapped_column(BigId)
    api_key_label: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    customer_key: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)

    __table_args__ = MYSQL_TABLE_OPTIONS


class ErasureTombstone(Base):
    """An erased customer's key and when: late or replayed events from before it are dropped."""

    __tablename__ = "erasure_tombstones"

    customer_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = MYSQL_TABLE_OPTIONS


class ExperimentExposure(Base):
    """A customer's first exposure to an experiment, with their arm.

    By customer key (a conversation's key for a visitor who is not a verified customer),
    once per experiment: later exposures add nothing. Conversions are read from the
    interactions in the window after ``exposed_at`` (``rasa_personalize.store.experiments``).
    """

    __tablename__ = "experiment_exposures"

    experiment: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    arm: Mapped[str] = mapped_column(String(64))
    exposed_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        # Erasure and export find a customer's exposures by key.
        Index("ix_experiment_exposures_customer", "customer_key"),
        MYSQL_TABLE_OPTIONS,
    )


class OfferExposure(Base):
    """An offer the session actions showed a customer, once per customer, offer and day.

    ``offer`` is the offer's label (``discount_10``, ``bundle``: see
    ``rasa_personalize.rules.offers.offer_label``) and ``segment`` the customer's segment
    when it was shown, which the acceptance model learns per. By customer key (a
    conversation's key for a visitor who is not a verified customer); stored only with
    tracking consent, and only while a rule chooses offers (``offer_type: best``).
    Acceptances are read from the interactions after ``shown_at``
    (``rasa_personalize.store.offers``).
    """

    __tablename__ = "offer_exposures"

    # The key first: erasure, export and training find a customer's rows by it.
    customer_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    offer: Mapped[str] = mapped_column(String(64), primary_key=True)
    shown_on: Mapped[date] = mapped_column(Date, primary_key=True)
    segment: Mapped[str] = mapped_column(String(32))
    shown_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = MYSQL_TABLE_OPTIONS
