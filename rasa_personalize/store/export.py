"""Reads for a customer's data export: every row held about one customer, as records.

The customer is found by key, or by the key of a customer merged into them (an alias),
as the hot path finds them. Interactions come in batches (a customer may have tens of
thousands), oldest first, each batch one short indexed query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, func, or_, select

from rasa_personalize.store.consent import (
    ConsentChangeRecord,
    ConsentStateRecord,
    load_consent_history,
    load_consent_states,
)
from rasa_personalize.store.models import (
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerTag,
    ExperimentExposure,
    Interaction,
    OfferExposure,
    PrecomputedRecommendations,
    Product,
    SegmentAssignment,
)
from rasa_personalize.store.propensity import StoredScore, read_propensity_scores
from rasa_personalize.store.records import Demographics, SegmentRecord, TagRecord
from rasa_personalize.store.types import Session

INTERACTION_BATCH: Final = 1_000


@dataclass(frozen=True)
class StoredContacts:
    """A customer's contact columns as stored: ciphertexts, each None when not kept."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None

    @property
    def empty(self) -> bool:
        """Whether no contact detail is stored."""
        return self.name is None and self.email is None and self.phone is None


@dataclass(frozen=True)
class StoredProfile:
    """The profile document: attributes and metrics as stored."""

    attributes: Mapping[str, Any]
    metrics: Mapping[str, Any]
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class AliasRecord:
    """The key of a customer merged into this one, how the match was found, and when."""

    alias_key: str
    match: str
    merged_at: datetime


@dataclass(frozen=True)
class KeyConsent:
    """The consent states and history recorded under one of the customer's keys."""

    customer_key: str
    states: tuple[ConsentStateRecord, ...]
    history: tuple[ConsentChangeRecord, ...]


@dataclass(frozen=True)
class ExposureRecord:
    """An experiment the customer was shown an arm of, under one of their keys."""

    experiment: str
    arm: str
    customer_key: str
    exposed_at: datetime


@dataclass(frozen=True)
class OfferShownRecord:
    """An offer the assistant showed the customer (first time that day), under one of
    their keys, with their segment then."""

    offer: str
    segment: str
    customer_key: str
    shown_at: datetime


@dataclass(frozen=True)
class PrecomputedRecord:
    """The recommendations precomputed for a customer by the last training run."""

    items: tuple[tuple[str, float], ...]
    model_version: str
    computed_at: datetime


@dataclass(frozen=True)
class InteractionRecord:
    """One stored interaction; ``sku`` is None once its product left the catalogue."""

    id: int
    sku: str | None
    kind: str
    value: float | None
    quantity: int
    price: float | None
    occurred_at: datetime
    channel: str | None
    device: str | None
    location: str | None
    category: str | None


@dataclass(frozen=True)
class CustomerRecords:
    """Everything held about one customer except the interactions (read those in
    batches with :func:`interaction_batches`)."""

    customer_id: int
    customer_key: str
    created_at: datetime
    loyalty_tier: str
    demographics: Demographics
    contacts: StoredContacts
    profile: StoredProfile | None
    tags: tuple[TagRecord, ...]
    segments: tuple[SegmentRecord, ...]
    recommendations: PrecomputedRecord | None
    aliases: tuple[AliasRecord, ...]
    # The customer's own key first, then each alias key that has consent rows.
    consent: tuple[KeyConsent, ...]
    interaction_count: int
    experiments: tuple[ExposureRecord, ...] = ()
    propensity: tuple[StoredScore, ...] = ()
    offers: tuple[OfferShownRecord, ...] = ()


async def find_customer_id(session: Session, key: str) -> int | None:
    """The id of the customer with ``key``, or of the one it was merged into; None if
    neither."""
    customer_id = await session.scalar(select(Customer.id).where(Customer.customer_key == key))
    if customer_id is None:
        customer_id = await session.scalar(
            select(CustomerAlias.customer_id).where(CustomerAlias.alias_key == key)
        )
    return None if customer_id is None else int(customer_id)


async def read_customer_records(session: Session, key: str) -> CustomerRecords | None:
    """Everything held about the customer reached by ``key`` (an alias key reaches the
    customer it was merged into), or None when no customer is."""
    customer_id = await find_customer_id(session, key)
    if customer_id is None:
        return None
    customer = (
        await session.execute(select(Customer).where(Customer.id == customer_id))
    ).scalar_one()
    profile = await session.scalar(
        select(CustomerProfile).where(CustomerProfile.customer_id == customer_id)
    )
    tags = (
        await session.execute(
            select(CustomerTag.tag, CustomerTag.source, CustomerTag.weight, CustomerTag.updated_at)
            .where(CustomerTag.customer_id == customer_id)
            .order_by(CustomerTag.tag)
        )
    ).all()
    segments = (
        await session.execute(
            select(
                SegmentAssignment.segment,
                SegmentAssignment.method,
                SegmentAssignment.model_version,
                SegmentAssignment.score,
                SegmentAssignment.assigned_at,
            )
            .where(SegmentAssignment.customer_id == customer_id)
            .order_by(SegmentAssignment.assigned_at, SegmentAssignment.id)
        )
    ).all()
    precomputed = await session.scalar(
        select(PrecomputedRecommendations).where(
            PrecomputedRecommendations.customer_id == customer_id
        )
    )
    aliases = (
        await session.execute(
            select(CustomerAlias.alias_key, CustomerAlias.match, CustomerAlias.merged_at)
            .where(CustomerAlias.customer_id == customer_id)
            .order_by(CustomerAlias.merged_at, CustomerAlias.id)
        )
    ).all()
    # Consent is kept by key, and a merged customer may have answered under an old one.
    keys = (customer.customer_key, *(alias.alias_key for alias in aliases))
    interaction_count = await session.scalar(
        select(func.count()).select_from(Interaction).where(Interaction.customer_id == customer_id)
    )
    return CustomerRecords(
        customer_id=customer_id,
        customer_key=customer.customer_key,
        created_at=customer.created_at,
        loyalty_tier=customer.loyalty_tier,
        demographics=Demographics(
            age=customer.age, gender=customer.gender, country=customer.country, city=customer.city
        ),
        contacts=StoredContacts(
            customer.name_encrypted, customer.email_encrypted, customer.phone_encrypted
        ),
        profile=(
            StoredProfile(
                dict(profile.attributes or {}),
                dict(profile.metrics or {}),
                profile.version,
                profile.updated_at,
            )
            if profile is not None
            else None
        ),
        tags=tuple(TagRecord(t.tag, t.source, float(t.weight), t.updated_at) for t in tags),
        segments=tuple(SegmentRecord(*segment) for segment in segments),
        recommendations=(
            PrecomputedRecord(
                tuple((str(sku), float(score)) for sku, score in precomputed.items or ()),
                precomputed.model_version,
                precomputed.computed_at,
            )
            if precomputed is not None
            else None
        ),
        aliases=tuple(AliasRecord(a.alias_key, a.match, a.merged_at) for a in aliases),
        consent=await _consent(session, keys),
        interaction_count=int(interaction_count or 0),
        experiments=await _exposures(session, keys),
        propensity=await read_propensity_scores(session, customer_id),
        offers=await _offers_shown(session, keys),
    )


async def _exposures(session: Session, keys: Sequence[str]) -> tuple[ExposureRecord, ...]:
    rows = await session.execute(
        select(
            ExperimentExposure.experiment,
            ExperimentExposure.arm,
            ExperimentExposure.customer_key,
            ExperimentExposure.exposed_at,
        )
        .where(ExperimentExposure.customer_key.in_(keys))
        .order_by(ExperimentExposure.exposed_at, ExperimentExposure.experiment)
    )
    return tuple(ExposureRecord(*row) for row in rows.all())


async def _offers_shown(session: Session, keys: Sequence[str]) -> tuple[OfferShownRecord, ...]:
    rows = await session.execute(
        select(
            OfferExposure.offer,
            OfferExposure.segment,
            OfferExposure.customer_key,
            OfferExposure.shown_at,
        )
        .where(OfferExposure.customer_key.in_(keys))
        .order_by(OfferExposure.shown_at, OfferExposure.offer)
    )
    return tuple(OfferShownRecord(*row) for row in rows.all())


async def _consent(session: Session, keys: Sequence[str]) -> tuple[KeyConsent, ...]:
    found: list[KeyConsent] = []
    for index, key in enumerate(keys):
        states = await load_consent_states(session, key)
        history = await load_consent_history(session, key)
        if index == 0 or states or history:
            found.append(KeyConsent(key, states, history))
    return tuple(found)


async def interaction_batches(
    session: Session, customer_id: int, batch_size: int = INTERACTION_BATCH
) -> AsyncIterator[list[InteractionRecord]]:
    """A customer's interactions, oldest first, ``batch_size`` at a time.

    Each batch is its own query that resumes after the last row of the one before
    (over the (customer_id, occurred_at) index), so no cursor stays open between them.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    statement = (
        select(
            Interaction.id,
            Product.sku,
            Interaction.kind,
            Interaction.value,
            Interaction.quantity,
            Interaction.price,
            Interaction.occurred_at,
            Interaction.channel,
            Interaction.device,
            Interaction.location,
            Interaction.category,
        )
        .outerjoin(Product, Product.id == Interaction.product_id)
        .where(Interaction.customer_id == customer_id)
        .order_by(Interaction.occurred_at, Interaction.id)
        .limit(batch_size)
    )
    after: tuple[datetime, int] | None = None
    while True:
        page = statement
        if after is not None:
            last_at, last_id = after
            page = statement.where(
                or_(
                    Interaction.occurred_at > last_at,
                    and_(Interaction.occurred_at == last_at, Interaction.id > last_id),
                )
            )
        rows = (await session.execute(page)).all()
        if not rows:
            return
        batch = [
            InteractionRecord(
                id=int(row.id),
                sku=row.sku,
                kind=row.kind,
                value=None if row.value is None else float(row.value),
                quantity=int(row.quantity),
                price=None if row.price is None else float(row.price),
                occurred_at=row.occurred_at,
                channel=row.channel,
                device=row.device,
                location=row.location,
                category=row.category,
            )
            for row in rows
        ]
        yield batch
        if len(rows) < batch_size:
            return
        after = (batch[-1].occurred_at, batch[-1].id)
