"""Which interaction events may be stored: tracking consent and erasure tombstones.

An event is *suppressed* (dropped and counted, never stored) when its customer

- denied the ``tracking`` purpose, or never answered and the default is ``denied``; or
- was erased (``personalize privacy erase``) at or after the event's ``occurred_at``:
  a late or replayed event from before the erasure must not bring the customer back.

Ingestion asks once per batch (:func:`split_trackable`), never once per event.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from rasa_personalize.privacy.consent import ConsentDefault
from rasa_personalize.store.consent import TrackingFacts, load_tracking_facts
from rasa_personalize.store.types import Session


class TrackedEvent(Protocol):
    """What the gate reads of an event (``ValidEvent`` has these attributes)."""

    @property
    def customer_key(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...


EventT = TypeVar("EventT", bound=TrackedEvent)


@dataclass(frozen=True)
class TrackingGate:
    """The tracking answers and erasures of a batch's customers, and the default."""

    facts: TrackingFacts
    default: ConsentDefault

    def allows(self, customer_key: str, occurred_at: datetime) -> bool:
        """Whether an event of this customer at this time may be stored."""
        return self.facts.allows(customer_key, occurred_at, self.default == "granted")


async def tracking_gate(
    session: Session, customer_keys: Collection[str], default: ConsentDefault
) -> TrackingGate:
    """The gate for these customers, from one store lookup."""
    facts = await load_tracking_facts(session, customer_keys) if customer_keys else TrackingFacts()
    return TrackingGate(facts, default)


async def split_trackable(
    session: Session, events: Sequence[EventT], default: ConsentDefault
) -> tuple[list[EventT], list[EventT]]:
    """The events that may be stored and those suppressed, each in the given order.

    Args:
        session: an open session; inside the write's transaction when the events are
            stored right after, so the answer and the write see the same store.
        events: the checked events of one batch.
        default: ``PERSONALIZE_CONSENT_DEFAULT``, for customers who never answered.
    """
    if not events:
        return [], []
    gate = await tracking_gate(session, {event.customer_key for event in events}, default)
    kept: list[EventT] = []
    suppressed: list[EventT] = []
    for event in events:
        (kept if gate.allows(event.customer_key, event.occurred_at) else suppressed).append(event)
    return kept, suppressed
