"""Frozen dataclasses that the store hands out; ORM rows never leave the store package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


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

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ProfileMetrics:
        """Read metrics from a stored JSON document, tolerating missing keys."""
        affinity = document.get("category_affinity") or {}
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
        )

    def to_document(self) -> dict[str, Any]:
        """The JSON document stored in ``customer_profiles.metrics``."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
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
        }


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
