"""Which events may be stored: tracking answers, the default, erasure tombstones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert

from rasa_personalize.privacy.tracking import TrackingGate, split_trackable
from rasa_personalize.store.consent import TrackingFacts, set_consent
from rasa_personalize.store.models import ErasureTombstone
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW

ERASED_AT = NOW - timedelta(days=1)


@dataclass(frozen=True)
class Event:
    customer_key: str
    occurred_at: datetime


def test_gate_rules() -> None:
    """Denied, or no answer under opt-in, or at/before the erasure: not stored."""
    facts = TrackingFacts(tracking={"yes": True, "no": False}, erased_at={"gone": ERASED_AT})
    opt_out = TrackingGate(facts, "granted")
    opt_in = TrackingGate(facts, "denied")
    assert [opt_out.allows(key, NOW) for key in ("yes", "no", "silent")] == [True, False, True]
    assert [opt_in.allows(key, NOW) for key in ("yes", "no", "silent")] == [True, False, False]
    # Erased: what happened up to the erasure stays out; what came after follows consent.
    assert not opt_out.allows("gone", ERASED_AT - timedelta(hours=1))
    assert not opt_out.allows("gone", ERASED_AT)
    assert opt_out.allows("gone", ERASED_AT + timedelta(microseconds=1))
    assert not opt_in.allows("gone", ERASED_AT + timedelta(hours=1))


async def test_split_keeps_order_and_asks_once(store: SqlStore) -> None:
    """Events split into kept and suppressed, each in the given order, on every backend."""
    async with store.sessions.begin() as session:
        await set_consent(session, "b" * 64, {"tracking": False}, source="api",
                          policy_version=None, now=NOW)  # fmt: skip
        await session.execute(
            insert(ErasureTombstone).values(customer_key="c" * 64, erased_at=ERASED_AT)
        )
    events = [
        Event("a" * 64, NOW),
        Event("b" * 64, NOW),
        Event("c" * 64, ERASED_AT - timedelta(seconds=1)),
        Event("c" * 64, NOW),
        Event("a" * 64, NOW - timedelta(days=3)),
    ]
    async with store.sessions() as session:
        kept, suppressed = await split_trackable(session, events, "granted")
        assert await split_trackable(session, [], "denied") == ([], [])
    assert kept == [events[0], events[3], events[4]]
    assert suppressed == [events[1], events[2]]
