"""Frozen dataclasses that the store hands out; ORM rows never leave the store package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

# Keys of the metrics document that are not rebuilt from interactions but written by an
# offline job (``personalize propensity train``): every writer of the document keeps them.
DERIVED_METRICS: Final = ("propensity",)
# What a propensity model predicts: a purchase in the 7 days after scoring.
PURCHASE_7D: Final = "purchase_7d"
PROPENSITY_TARGETS: Final = (PURCHASE_7D,)


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def carry_derived(document: dict[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """``document`` with the :data:`DERIVED_METRICS` entries of ``previous`` put back.

    For writers that rebuild the metrics document from interactions: the scores of an
    offline model are not theirs to drop.
    """
    if previous:
        for key in DERIVED_METRICS:
            if key in previous:
                document[key] = previous[key]
    return document


@dataclass(frozen=True)
class PropensityRecord:
    """A customer's latest propensity score for one target (``purchase_7d``).

    Attributes:
        score: calibrated probability, 0 to 1.
        band: ``low``, ``medium`` or ``high`` by the model's cut-offs.
        model_version: the model that scored it.
        scored_at: when.
    """

    score: float
    band: str
    model_version: str
    scored_at: datetime | None = None

    @classmethod
    def from_entry(cls, entry: Any) -> PropensityRecord | None:
        """Read one stored entry; None when it is not a well-formed score."""
        if not isinstance(entry, Mapping):
            return None
        score, band, version = entry.get("score"), entry.get("band"), entry.get("model_version")
        if (
            not isinstance(score, int | float)
            or isinstance(score, bool)
            or not 0.0 <= score <= 1.0
            or not isinstance(band, str)
            or not isinstance(version, str)
        ):
            return None
        try:
            scored_at = _parse_time(entry.get("scored_at"))
        except ValueError:
            scored_at = None
        return cls(float(score), band, version, scored_at)

    def to_entry(self) -> dict[str, Any]:
        """The entry stored under ``metrics.propensity.<target>``."""
        return {
            "score": self.score,
            "band": self.band,
            "model_version": self.model_version,
            "scored_at": self.scored_at.isoformat() if self.scored_at else None,
        }


@dataclass(frozen=True)
class ProfileMetrics:
    """Behavioural metrics kept in the profile document, rebuilt from interactions."""

    interaction_count: int = 0
    view_count: int = 0
    purchase_count: int = 0
    total_spent: float = 0.0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    last_purchase_at: datetime | None = None
    # Share of purchases paid below the product's list price.
    discounted_purchase_share: float = 0.0
    favorite_category: str | None = None
    category_affinity: Mapping[str, float] = field(default_factory=dict)
    # Chat activity from Rasa's event broker: the customer's messages, and of those with
    # an intent, how many had each (the most frequent MAX_INTENT_COUNTS intents).
    chat_message_count: int = 0
    intent_counts: Mapping[str, int] = field(default_factory=dict)
    # Conversation sessions begun, and the mean length of those whose end was recorded.
    session_count: int = 0
    average_session_seconds: float | None = None
    # Latest offline propensity scores by target (``purchase_7d``); written by
    # ``personalize propensity train``, kept by every rebuild (DERIVED_METRICS).
    propensity: Mapping[str, PropensityRecord] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ProfileMetrics:
        """Read metrics from a stored JSON document, tolerating missing keys."""
        affinity = document.get("category_affinity") or {}
        intents = document.get("intent_counts") or {}
        average = document.get("average_session_seconds")
        stored = document.get("propensity")
        propensity = {
            str(target): record
            for target, entry in (stored.items() if isinstance(stored, Mapping) else ())
            if (record := PropensityRecord.from_entry(entry)) is not None
        }
        return cls(
            interaction_count=int(document.get("interaction_count", 0)),
            view_count=int(document.get("view_count", 0)),
            purchase_count=int(document.get("purchase_count", 0)),
            total_spent=float(document.get("total_spent", 0.0)),
            first_seen_at=_parse_time(document.get("first_seen_at")),
            last_seen_at=_parse_time(document.get("last_seen_at")),
            last_purchase_at=_parse_time(document.get("last_purchase_at")),
            discounted_purchase_share=float(document.get("discounted_purchase_share", 0.0)),
            favorite_category=document.get("favorite_category"),
            category_affinity={str(k): float(v) for k, v in affinity.items()},
            chat_message_count=int(document.get("chat_message_count", 0)),
            intent_counts={str(k): int(v) for k, v in intents.items()},
            session_count=int(document.get("session_count", 0)),
            average_session_seconds=float(average) if average is not None else None,
            propensity=propensity,
        )

    def to_document(self) -> dict[str, Any]:
        """The JSON document stored in ``customer_profiles.metrics``."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        document: dict[str, Any] = {
            "interaction_count": self.interaction_count,
            "view_count": self.view_count,
            "purchase_count": self.purchase_count,
            "total_spent": round(self.total_spent, 2),
            "first_seen_at": iso(self.first_seen_at),
            "last_seen_at": iso(self.last_seen_at),
            "last_purchase_at": iso(self.last_purchase_at),
            "discounted_purchase_share": round(self.discounted_purchase_share, 4),
            "favorite_category": self.favorite_category,
            "category_affinity": dict(self.category_affinity),
            "chat_message_count": self.chat_message_count,
            "intent_counts": dict(self.intent_counts),
            "session_count": self.session_count,
            "average_session_seconds": (
                round(self.average_session_seconds, 1)
                if self.average_session_seconds is not None
                else None
            ),
        }
        # Only when scored: documents written before propensity existed stay the same.
        if self.propensity:
            document["propensity"] = {t: r.to_entry() for t, r in self.propensity.items()}
        return document


@dataclass(frozen=True)
class Demographics:
    """What the CRM knows about a customer; every field may be unknown."""

    age: int | None = None
    gender: str | None = None
    country: str | None = None
    city: str | None = None


@dataclass(frozen=True)
class TagRecord:
    """A tag on a customer."""

    tag: str
    source: str
    weight: float
    updated_at: datetime


@dataclass(frozen=True)
class SegmentRecord:
    """The latest segment assignment of a customer."""

    segment: str
    method: str
    model_version: str
    score: float | None
    assigned_at: datetime


@dataclass(frozen=True)
class CustomerSnapshot:
    """Everything the hot path reads about one customer, in one immutable value."""

    customer_id: int
    created_at: datetime
    loyalty_tier: str
    demographics: Demographics
    attributes: Mapping[str, Any]
    metrics: ProfileMetrics
    profile_version: int
    tags: tuple[TagRecord, ...]
    segment: SegmentRecord | None
    # The customer's own consent answers, purpose -> granted (purposes never answered are
    # absent: PERSONALIZE_CONSENT_DEFAULT decides those).
    consent: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductRecord:
    """A catalogue item."""

    sku: str
    title: str
    category: str
    brand: str | None
    price: float
    in_stock: bool
    description: str = ""


@dataclass(frozen=True)
class StoreStats:
    """Row counts of the main tables."""

    customers: int
    products: int
    interactions: int
    tags: int
    segment_assignments: int
