"""Offer exposures and the acceptances that follow them, for the acceptance model.

An exposure is stored once per (customer key, offer, UTC day) by the chat writer
(:mod:`rasa_personalize.store.catalogue`), with the customer's segment at the time. The
chat has no "yes to the offer", so acceptance is read from what the customer did next:

- an exposure is **accepted** when a goal event (``purchase``, or ``cart``) of the same
  customer (through a merged customer's key too) comes at or after it and within the
  window, and no other offer was shown to them in between: the last offer shown before
  a purchase takes the credit, so a purchase is credited once;
- an exposure counts only once its window is over (``shown_at`` at least one window
  before ``now``): a younger one may still be accepted, and counting it as not accepted
  would bias every rate down. Younger ones still take the credit for what follows them.

Exposures are read a page of customers at a time, each page three indexed queries, so a
shop with millions of exposures costs one page of memory.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select

from rasa_personalize.store.dialect import dialect_of, member_of
from rasa_personalize.store.models import Customer, CustomerAlias, Interaction, OfferExposure
from rasa_personalize.store.types import Session

# The interactions that accept an offer.
ACCEPT_KINDS: Final = ("purchase", "cart")
# Customers per page.
PAGE_SIZE: Final = 2_000


@dataclass(frozen=True)
class OfferCount:
    """One offer in one segment: exposures whose window is over, and how many were accepted."""

    offer: str
    segment: str
    exposures: int
    accepted: int


@dataclass(frozen=True)
class OfferOutcomes:
    """What the acceptance model learns from.

    Attributes:
        counts: per (offer, segment), sorted.
        pending: exposures still inside their window (not counted yet).
        customers: customer keys with at least one exposure.
    """

    counts: tuple[OfferCount, ...]
    pending: int
    customers: int


@dataclass(frozen=True)
class _Shown:
    offer: str
    segment: str
    shown_at: datetime


async def offer_outcomes(
    session: Session,
    *,
    goal: str,
    window: timedelta,
    now: datetime,
    page_size: int = PAGE_SIZE,
) -> OfferOutcomes:
    """Exposures and acceptances per (offer, segment) as of ``now`` (see the module).

    Raises:
        ValueError: ``goal`` is not one of :data:`ACCEPT_KINDS`, or a size is not positive.
    """
    if goal not in ACCEPT_KINDS:
        raise ValueError(f"unknown goal {goal!r}; it is one of {', '.join(ACCEPT_KINDS)}")
    if window <= timedelta(0) or page_size < 1:
        raise ValueError("window and page_size must be positive")
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    pending = customers = 0
    after = ""
    while True:
        keys = list(
            (
                await session.scalars(
                    select(OfferExposure.customer_key)
                    .distinct()
                    .where(OfferExposure.customer_key > after)
                    .order_by(OfferExposure.customer_key)
                    .limit(page_size)
                )
            ).all()
        )
        if not keys:
            break
        customers += len(keys)
        after = keys[-1]
        pending += await _count_page(
            session, keys, goal=goal, window=window, now=now, totals=totals
        )
    counts = tuple(
        OfferCount(offer, segment, exposures, accepted)
        for (offer, segment), (exposures, accepted) in sorted(totals.items())
    )
    return OfferOutcomes(counts, pending, customers)


async def _count_page(
    session: Session,
    keys: Sequence[str],
    *,
    goal: str,
    window: timedelta,
    now: datetime,
    totals: dict[tuple[str, str], list[int]],
) -> int:
    """Add one page's matured exposures to ``totals``; returns the page's pending ones."""
    dialect = dialect_of(session)
    shown = (
        await session.execute(
            select(
                OfferExposure.customer_key,
                OfferExposure.offer,
                OfferExposure.segment,
                OfferExposure.shown_at,
            ).where(member_of(OfferExposure.customer_key, keys, dialect))
        )
    ).all()
    # A person is a customer row; a key the store has no customer for is its own person.
    person_of: dict[str, int | str] = {key: key for key in keys}
    own = await session.execute(
        select(Customer.customer_key, Customer.id).where(
            member_of(Customer.customer_key, keys, dialect)
        )
    )
    merged = await session.execute(
        select(CustomerAlias.alias_key, CustomerAlias.customer_id).where(
            member_of(CustomerAlias.alias_key, keys, dialect)
        )
    )
    for key, customer_id in (*merged.all(), *own.all()):
        person_of[str(key)] = int(customer_id)
    by_person: dict[int | str, list[_Shown]] = defaultdict(list)
    for key, offer, segment, shown_at in shown:
        by_person[person_of[str(key)]].append(_Shown(str(offer), str(segment), shown_at))
    for exposures in by_person.values():
        exposures.sort(key=lambda exposure: exposure.shown_at)
    ids = sorted(person for person in by_person if isinstance(person, int))
    earliest = min((exposure.shown_at for e in by_person.values() for exposure in e), default=now)
    goals: dict[int, list[datetime]] = defaultdict(list)
    if ids:
        rows = await session.execute(
            select(Interaction.customer_id, Interaction.occurred_at).where(
                member_of(Interaction.customer_id, ids, dialect),
                Interaction.kind == goal,
                Interaction.occurred_at >= earliest,
            )
        )
        for customer_id, occurred_at in rows.all():
            goals[int(customer_id)].append(occurred_at)
    matured_before = now - window
    pending = 0
    for person, exposures in by_person.items():
        events = goals.get(person, []) if isinstance(person, int) else []
        accepted = _accepted(exposures, events, window)
        for index, exposure in enumerate(exposures):
            if exposure.shown_at > matured_before:
                pending += 1
                continue
            cell = totals[(exposure.offer, exposure.segment)]
            cell[0] += 1
            cell[1] += index in accepted
    return pending


def _accepted(
    exposures: Sequence[_Shown], goal_times: Sequence[datetime], window: timedelta
) -> set[int]:
    """Indexes of ``exposures`` (sorted by time) that a goal event is credited to: the
    latest exposure at or before the event, if the event comes within its window."""
    if not goal_times:
        return set()
    times = [exposure.shown_at for exposure in exposures]
    accepted: set[int] = set()
    for occurred_at in goal_times:
        index = bisect.bisect_right(times, occurred_at) - 1
        if index >= 0 and occurred_at < times[index] + window:
            accepted.add(index)
    return accepted
