"""Reads and writes of customers, profiles, tags and segments. Sessions come from callers."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from actions.store.models import (
    Customer,
    CustomerProfile,
    CustomerTag,
    Interaction,
    Product,
    SegmentAssignment,
    utc_now,
)
from actions.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    SegmentRecord,
    StoreStats,
    TagRecord,
)

# How much one interaction of each kind says about a customer's taste for a category.
CATEGORY_AFFINITY_WEIGHTS = {
    "view": 1.0,
    "search": 0.5,
    "chat_click": 2.0,
    "cart": 3.0,
    "purchase": 5.0,
    "feedback": 2.0,
}

# A purchase counts as discounted when paid at least this much below the list price.
DISCOUNT_THRESHOLD = 0.95


async def load_customer_snapshot(session: AsyncSession, key: str) -> CustomerSnapshot | None:
    """Everything the hot path needs about the customer with ``key``, or None if unknown."""
    latest_segment = (
        select(SegmentAssignment)
        .join(Customer, Customer.id == SegmentAssignment.customer_id)
        .where(Customer.customer_key == key)
        .order_by(SegmentAssignment.assigned_at.desc(), SegmentAssignment.id.desc())
        .limit(1)
        .subquery()
    )
    row = (
        await session.execute(
            select(
                Customer,
                CustomerProfile,
                latest_segment.c.segment,
                latest_segment.c.method,
                latest_segment.c.model_version,
                latest_segment.c.score,
                latest_segment.c.assigned_at,
            )
            .outerjoin(CustomerProfile, CustomerProfile.customer_id == Customer.id)
            .outerjoin(latest_segment, latest_segment.c.customer_id == Customer.id)
            .where(Customer.customer_key == key)
        )
    ).one_or_none()
    if row is None:
        return None
    customer, profile, segment, method, model_version, score, assigned_at = row
    tags = (
        await session.scalars(
            select(CustomerTag)
            .where(CustomerTag.customer_id == customer.id)
            .order_by(CustomerTag.weight.desc(), CustomerTag.tag)
        )
    ).all()
    return CustomerSnapshot(
        customer_id=customer.id,
        created_at=customer.created_at,
        loyalty_tier=customer.loyalty_tier,
        demographics=Demographics(
            age=customer.age, gender=customer.gender, country=customer.country, city=customer.city
        ),
        attributes=dict(profile.attributes) if profile else {},
        metrics=ProfileMetrics.from_document(profile.metrics) if profile else ProfileMetrics(),
        profile_version=profile.version if profile else 0,
        tags=tuple(TagRecord(t.tag, t.source, t.weight, t.updated_at) for t in tags),
        segment=(
            SegmentRecord(segment, method, model_version, score, assigned_at)
            if segment is not None
            else None
        ),
    )


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

    Aggregates run in SQL; only one row per customer (and per customer and category)
    comes back to Python. Returns the number of profiles written.
    """
    now = now or utc_now()
    is_purchase = Interaction.kind == "purchase"
    spent = Interaction.price * Interaction.quantity
    discounted = (Interaction.price < Product.price * DISCOUNT_THRESHOLD) & is_purchase
    totals = await session.execute(
        select(
            Interaction.customer_id,
            func.count(),
            func.sum(case((Interaction.kind == "view", 1), else_=0)),
            func.sum(case((is_purchase, 1), else_=0)),
            func.sum(case((is_purchase, spent), else_=0)),
            func.min(Interaction.occurred_at),
            func.max(Interaction.occurred_at),
            func.max(case((is_purchase, Interaction.occurred_at), else_=None)),
            func.sum(case((discounted, 1), else_=0)),
        )
        .outerjoin(Product, Product.id == Interaction.product_id)
        .group_by(Interaction.customer_id)
    )
    weight = case(
        *((Interaction.kind == kind, w) for kind, w in CATEGORY_AFFINITY_WEIGHTS.items()),
        else_=0.0,
    )
    affinity_rows = await session.execute(
        select(Interaction.customer_id, Product.category, func.sum(weight))
        .join(Product, Product.id == Interaction.product_id)
        .group_by(Interaction.customer_id, Product.category)
    )
    affinities: dict[int, dict[str, float]] = defaultdict(dict)
    for customer_id, category, score in affinity_rows:
        affinities[customer_id][category] = float(score or 0.0)

    # UtcDateTime is not applied to aggregate results, so SQLite hands back strings.
    def as_time(value: object) -> datetime | None:
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)

    existing = {p.customer_id: p for p in (await session.scalars(select(CustomerProfile))).all()}
    written = 0
    for row in totals:
        customer_id, n, views, purchases, total, first, last, last_purchase, n_discounted = row
        raw = affinities.get(customer_id, {})
        mass = sum(raw.values()) or 1.0
        affinity = {c: round(s / mass, 4) for c, s in sorted(raw.items(), key=lambda i: -i[1])}
        metrics = ProfileMetrics(
            interaction_count=int(n),
            view_count=int(views or 0),
            purchase_count=int(purchases or 0),
            total_spent=float(total or 0.0),
            first_seen_at=as_time(first),
            last_seen_at=as_time(last),
            last_purchase_at=as_time(last_purchase),
            discounted_purchase_share=(int(n_discounted or 0) / purchases) if purchases else 0.0,
            favorite_category=next(iter(affinity), None),
            category_affinity=affinity,
        ).to_document()
        profile = existing.get(customer_id)
        if profile is None:
            session.add(CustomerProfile(customer_id=customer_id, attributes={}, metrics=metrics))
        elif profile.metrics != metrics:
            profile.metrics = metrics
            profile.version += 1
            profile.updated_at = now
        written += 1
    return written


async def delete_all_rows(session: AsyncSession) -> None:
    """Empty every table, children first (``seed-demo --reset``)."""
    for model in (SegmentAssignment, CustomerTag, Interaction, CustomerProfile, Product, Customer):
        await session.execute(delete(model))
