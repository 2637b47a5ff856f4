"""Reads and writes of customers, profiles, tags and segments. Sessions come from callers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import (
    Select,
    String,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.clock import utc_now
from rasa_personalize.store.dialect import count_where, member_of
from rasa_personalize.store.models import (
    ASSISTANT_KINDS,
    ConsentState,
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerRunningTotals,
    CustomerTag,
    Interaction,
    InteractionInbox,
    PrecomputedRecommendations,
    Product,
    PropensityScore,
    SegmentAssignment,
)
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    SegmentRecord,
    StoreStats,
    TagRecord,
    carry_derived,
)
from rasa_personalize.store.totals import (
    CATEGORY_AFFINITY_WEIGHTS,
    DISCOUNT_THRESHOLD,
    Totals,
    as_datetime,
    drop_totals,
)

# Intents kept per profile, the most frequent first: the profile is read on the hot path,
# and a chat_message's category is whatever its sender wrote.
MAX_INTENT_COUNTS: Final = 50


SnapshotStatements = tuple[Select[Any], Select[Any], Select[Any], Select[Any], Select[Any]]


@lru_cache(maxsize=1)
def _snapshot_statements() -> SnapshotStatements:
    """The hot path's statements, built once: building them costs more than running."""
    customers, profiles = Customer.__table__, CustomerProfile.__table__
    tags, segments = CustomerTag.__table__, SegmentAssignment.__table__
    aliases = CustomerAlias.__table__
    customer_columns = select(
        customers.c.id,
        customers.c.created_at,
        customers.c.loyalty_tier,
        customers.c.age,
        customers.c.gender,
        customers.c.country,
        customers.c.city,
        profiles.c.attributes,
        profiles.c.metrics,
        profiles.c.version,
    ).select_from(customers.outerjoin(profiles, profiles.c.customer_id == customers.c.id))
    customer = customer_columns.where(customers.c.customer_key == bindparam("key"))
    # The key of a customer merged into another (see rasa_personalize/imports) reaches the survivor.
    aliased_customer = customer_columns.where(
        customers.c.id
        == select(aliases.c.customer_id)
        .where(aliases.c.alias_key == bindparam("key"))
        .scalar_subquery()
    )
    customer_tags = (
        select(tags.c.tag, tags.c.source, tags.c.weight, tags.c.updated_at)
        .where(tags.c.customer_id == bindparam("customer_id"))
        .order_by(tags.c.weight.desc(), tags.c.tag)
    )
    latest_segment = (
        select(
            segments.c.segment,
            segments.c.method,
            segments.c.model_version,
            segments.c.score,
            segments.c.assigned_at,
        )
        .where(segments.c.customer_id == bindparam("customer_id"))
        .order_by(segments.c.assigned_at.desc(), segments.c.id.desc())
        .limit(1)
    )
    # Consent is given under the id the customer uses; a customer merged from several ids
    # (see rasa_personalize/imports) is one person, so every one of their keys counts and
    # the latest answer per purpose wins (rows come oldest first).
    answers = ConsentState.__table__
    person_keys = union_all(
        select(bindparam("key", type_=String)),
        select(customers.c.customer_key).where(customers.c.id == bindparam("customer_id")),
        select(aliases.c.alias_key).where(aliases.c.customer_id == bindparam("customer_id")),
    )
    consent = (
        select(answers.c.purpose, answers.c.granted, answers.c.updated_at)
        .where(answers.c.customer_key.in_(person_keys))
        .order_by(answers.c.updated_at, answers.c.customer_key == bindparam("key"))
    )
    return customer, aliased_customer, customer_tags, latest_segment, consent


def read_customer_snapshot(connection: Connection, key: str) -> CustomerSnapshot | None:
    """Everything the hot path needs about the customer with ``key``, or None if unknown.

    Synchronous on purpose: it runs in one worker thread (SQLite) or one greenlet hop
    (PostgreSQL) instead of a thread hop per cursor call. Four indexed point reads (the
    customer, tags, latest segment, consent under each of the customer's keys); the alias
    of a merged customer costs a fifth, and only when the key is not a customer's.
    """
    customer_statement, aliased_statement, tags_statement, segment_statement, consent = (
        _snapshot_statements()
    )
    row = connection.execute(customer_statement, {"key": key}).one_or_none()
    if row is None:
        row = connection.execute(aliased_statement, {"key": key}).one_or_none()
        if row is None:
            return None
    tags = connection.execute(tags_statement, {"customer_id": row.id}).all()
    segment = connection.execute(segment_statement, {"customer_id": row.id}).one_or_none()
    answers = connection.execute(consent, {"key": key, "customer_id": row.id}).all()
    return snapshot_from_rows(row, tags, segment, answers)


def snapshot_statements() -> SnapshotStatements:
    """The snapshot's statements: customer by key, customer by alias key, tags, segment,
    consent answers.

    Parameters: ``key`` for the customer, alias and consent, ``customer_id`` for tags and
    segment. For readers that execute them another way (``rasa_personalize.store.inline``).
    """
    return _snapshot_statements()


def snapshot_from_rows(
    customer: Sequence[Any],
    tags: Sequence[Sequence[Any]],
    segment: Sequence[Any] | None,
    consent: Sequence[Sequence[Any]] = (),
) -> CustomerSnapshot:
    """Assemble a snapshot from the rows of :func:`snapshot_statements`, values converted."""
    (
        customer_id,
        created_at,
        loyalty_tier,
        age,
        gender,
        country,
        city,
        attributes,
        metrics,
        version,
    ) = customer
    return CustomerSnapshot(
        customer_id=customer_id,
        created_at=created_at,
        loyalty_tier=loyalty_tier,
        demographics=Demographics(age=age, gender=gender, country=country, city=city),
        attributes=dict(attributes or {}),
        metrics=ProfileMetrics.from_document(metrics or {}),
        profile_version=version or 0,
        tags=tuple(TagRecord(t[0], t[1], t[2], t[3]) for t in tags),
        segment=SegmentRecord(*segment) if segment is not None else None,
        # Rows oldest first: a later answer for a purpose replaces an earlier one.
        consent={str(purpose): bool(granted) for purpose, granted, *_ in consent},
    )


async def load_customer_snapshot(session: AsyncSession, key: str) -> CustomerSnapshot | None:
    """:func:`read_customer_snapshot` inside an open async session (sees its pending rows)."""
    connection = await session.connection()
    return await connection.run_sync(read_customer_snapshot, key)


async def aliased_customer_ids(session: AsyncSession, keys: Sequence[str]) -> dict[str, int]:
    """alias key -> id of the customer it was merged into, for the keys that are aliases."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), 1_000):
        rows = await session.execute(
            select(CustomerAlias.alias_key, CustomerAlias.customer_id).where(
                CustomerAlias.alias_key.in_(keys[start : start + 1_000])
            )
        )
        found.update({key: int(customer_id) for key, customer_id in rows.all()})
    return found


async def store_stats(session: AsyncSession) -> StoreStats:
    """Row counts of the main tables."""

    async def count(model: type[object]) -> int:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    return StoreStats(
        customers=await count(Customer),
        products=await count(Product),
        interactions=await count(Interaction),
        tags=await count(CustomerTag),
        segment_assignments=await count(SegmentAssignment),
    )


async def rebuild_profile_metrics(session: AsyncSession, now: datetime | None = None) -> int:
    """Recompute every customer's behavioural metrics from the interactions table.

    Returns the number of profiles written (new or changed).
    """
    return await write_profile_metrics(session, now or utc_now(), None)


async def write_profile_metrics(
    session: AsyncSession, now: datetime, customer_ids: Sequence[int] | None
) -> int:
    """Recompute and store the metrics of these customers (None: every customer).

    Aggregates run in SQL (over the (customer_id, occurred_at) index for a subset); only
    one row per customer, and per customer and category, comes back. A profile's version
    goes up only when its metrics change. Returns the number of profiles written.

    Callers come here when interactions changed in ways the running totals do not follow
    (a merge, retention, bulk loads), so these customers' totals are dropped, to be
    computed again by the next fold (:mod:`rasa_personalize.store.totals`).
    """
    dialect = session.get_bind().dialect.name
    await drop_totals(session, customer_ids)
    only = (
        true()
        if customer_ids is None
        else member_of(Interaction.customer_id, customer_ids, dialect)
    )
    is_purchase = Interaction.kind == "purchase"
    is_session_length = (Interaction.kind == "session_end") & (Interaction.value >= 0)
    is_chat = Interaction.kind == "chat_message"
    spent = Interaction.price * Interaction.quantity
    discounted = (Interaction.price < Product.price * DISCOUNT_THRESHOLD) & is_purchase
    totals = await session.execute(
        select(
            Interaction.customer_id,
            func.count(),
            count_where(Interaction.kind == "view"),
            count_where(is_purchase),
            func.sum(case((is_purchase, spent), else_=0)),
            func.min(Interaction.occurred_at),
            func.max(Interaction.occurred_at),
            func.max(case((is_purchase, Interaction.occurred_at), else_=None)),
            count_where(discounted),
            count_where(is_chat),
            count_where(Interaction.kind == "session_start"),
            # Lengths only: a negative value (from before ingestion checked it) is no length.
            func.avg(case((is_session_length, Interaction.value), else_=None)),
        )
        .outerjoin(Product, Product.id == Interaction.product_id)
        .where(only, Interaction.kind.not_in(ASSISTANT_KINDS))
        .group_by(Interaction.customer_id)
    )
    weight = case(
        *((Interaction.kind == kind, w) for kind, w in CATEGORY_AFFINITY_WEIGHTS.items()),
        else_=0.0,
    )
    affinity_rows = await session.execute(
        select(Interaction.customer_id, Product.category, func.sum(weight))
        .join(Product, Product.id == Interaction.product_id)
        .where(only)
        .group_by(Interaction.customer_id, Product.category)
    )
    affinities: dict[int, dict[str, float]] = {}
    for customer_id, category, score in affinity_rows:
        affinities.setdefault(customer_id, {})[category] = float(score or 0.0)
    intents = await _intent_counts(session, only)

    # UtcDateTime is not applied to aggregate results, so SQLite hands back strings.
    def as_time(value: object) -> datetime | None:
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)

    metrics: dict[int, ProfileMetrics] = {}
    for row in totals:
        (
            customer_id,
            n,
            views,
            purchases,
            total,
            first,
            last,
            last_purchase,
            n_discounted,
            chats,
            sessions,
            session_seconds,
        ) = row
        affinity = _affinity_shares(affinities.get(customer_id, {}))
        metrics[int(customer_id)] = ProfileMetrics(
            interaction_count=int(n),
            view_count=int(views or 0),
            purchase_count=int(purchases or 0),
            total_spent=float(total or 0.0),
            first_seen_at=as_time(first),
            last_seen_at=as_time(last),
            last_purchase_at=as_time(last_purchase),
            discounted_purchase_share=(
                (int(n_discounted or 0) / int(purchases)) if purchases else 0.0
            ),
            favorite_category=next(iter(affinity), None),
            category_affinity=affinity,
            chat_message_count=int(chats or 0),
            intent_counts=intents.get(customer_id, {}),
            session_count=int(sessions or 0),
            average_session_seconds=(
                float(session_seconds) if session_seconds is not None else None
            ),
        )
    return await _store_metrics(session, now, metrics, customer_ids)


async def write_metrics_from_totals(
    session: AsyncSession, now: datetime, totals: Mapping[int, Totals]
) -> int:
    """Store the metrics of these customers from their running totals (no aggregate over
    their history); the same metrics as :func:`write_profile_metrics` computes. Customers
    without an interaction of their own (only the assistant's) get no profile from here,
    as there. Returns the number of profiles written (new or changed)."""
    metrics = {
        customer_id: metrics_from_totals(each)
        for customer_id, each in totals.items()
        if each.interactions
    }
    return await _store_metrics(session, now, metrics, list(totals))


def metrics_from_totals(totals: Totals) -> ProfileMetrics:
    """A customer's behavioural metrics from their running totals."""
    affinity = _affinity_shares({name: s.weight for name, s in totals.categories.items()})
    intents = sorted(totals.intents.items(), key=lambda item: (-item[1], item[0]))
    return ProfileMetrics(
        interaction_count=totals.interactions,
        view_count=totals.views,
        purchase_count=totals.purchases,
        total_spent=totals.spent_cents / 100,
        first_seen_at=as_datetime(totals.first_us),
        last_seen_at=as_datetime(totals.last_us),
        last_purchase_at=as_datetime(totals.last_purchase_us),
        discounted_purchase_share=(
            totals.discounted_purchases / totals.purchases if totals.purchases else 0.0
        ),
        favorite_category=next(iter(affinity), None),
        category_affinity=affinity,
        chat_message_count=totals.chat_messages,
        intent_counts=dict(intents[:MAX_INTENT_COUNTS]),
        session_count=totals.session_starts,
        average_session_seconds=(
            totals.session_seconds / totals.session_lengths if totals.session_lengths else None
        ),
    )


def _affinity_shares(weights: Mapping[str, float]) -> dict[str, float]:
    """Category weights as shares of their sum (4 decimals), the strongest first; ties
    by name, so that the favourite does not depend on the order rows came back in."""
    mass = sum(weights.values()) or 1.0
    ranked = sorted(weights.items(), key=lambda item: (-item[1], item[0]))
    return {category: round(score / mass, 4) for category, score in ranked}


async def _store_metrics(
    session: AsyncSession,
    now: datetime,
    metrics: Mapping[int, ProfileMetrics],
    customer_ids: Sequence[int] | None,
) -> int:
    """Write these metrics documents where they differ from the stored ones (a profile's
    version goes up only then); ``customer_ids`` bounds the read of the stored ones."""
    dialect = session.get_bind().dialect.name
    # Looked up as a Table, which is what Core insert() and update() are typed for.
    profiles = CustomerProfile.metadata.tables[CustomerProfile.__tablename__]
    existing: dict[int, Any] = dict(
        (
            await session.execute(
                select(profiles.c.customer_id, profiles.c.metrics).where(
                    true()
                    if customer_ids is None
                    else member_of(profiles.c.customer_id, customer_ids, dialect)
                )
            )
        ).all()
    )
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for customer_id in sorted(metrics):
        document = carry_derived(metrics[customer_id].to_document(), existing.get(customer_id))
        if customer_id not in existing:
            inserts.append(
                {
                    "customer_id": customer_id,
                    "attributes": {},
                    "metrics": document,
                    "version": 1,
                    "updated_at": now,
                }
            )
        elif existing[customer_id] != document:
            updates.append({"target": customer_id, "new_metrics": document, "now": now})
    # Core executemany, not ORM objects: one statement per kind of change, not per row.
    if inserts:
        await session.execute(insert(profiles), inserts)
    if updates:
        await session.execute(
            update(profiles)
            .where(profiles.c.customer_id == bindparam("target"))
            .values(
                metrics=bindparam("new_metrics"),
                version=profiles.c.version + 1,
                updated_at=bindparam("now"),
            ),
            updates,
        )
    return len(inserts) + len(updates)


async def _intent_counts(session: AsyncSession, only: Any) -> dict[int, dict[str, int]]:
    """customer id -> {intent: messages}: the customers' chat messages grouped by the
    intent in their category, the MAX_INTENT_COUNTS most frequent of each (ties by name)."""
    rows = await session.execute(
        select(Interaction.customer_id, Interaction.category, func.count())
        .where(only, Interaction.kind == "chat_message", Interaction.category.is_not(None))
        .group_by(Interaction.customer_id, Interaction.category)
    )
    found: dict[int, list[tuple[str, int]]] = {}
    for customer_id, intent, count in rows:
        found.setdefault(customer_id, []).append((str(intent), int(count)))
    return {
        customer_id: dict(sorted(counts, key=lambda item: (-item[1], item[0]))[:MAX_INTENT_COUNTS])
        for customer_id, counts in found.items()
    }


async def delete_all_rows(session: AsyncSession) -> None:
    """Empty every table, children first (``seed-demo --reset``)."""
    for model in (
        InteractionInbox,
        CustomerRunningTotals,
        PrecomputedRecommendations,
        PropensityScore,
        SegmentAssignment,
        CustomerTag,
        Interaction,
        CustomerProfile,
        Product,
        CustomerAlias,
        Customer,
    ):
        await session.execute(delete(model))
