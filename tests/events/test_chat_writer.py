"""Chat-side writes of many conversations share transactions, and each keeps its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.events.chat_writer import ChatEventWriter
from rasa_personalize.identity import customer_key
from rasa_personalize.store.catalogue import ChatInteraction, ChatWrite
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product


class CountingGuard:
    """Passes each transaction through, counting them (or failing them all)."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.transactions = 0
        self.failure = failure

    async def __call__(self, work: Awaitable[list[set[str]]]) -> list[set[str]]:
        self.transactions += 1
        if self.failure is not None:
            if asyncio.iscoroutine(work):
                work.close()
            raise StoreUnavailableError("test") from self.failure
        return await work


def shown(customer: str, *skus: str, prefix: str = "m1") -> ChatWrite:
    key = customer_key(TEST_SECRET, customer)
    events = [ChatInteraction(f"chat-{customer}-{prefix}-{sku}", "shown", sku=sku) for sku in skus]
    return ChatWrite(key, events, NOW, channel="web", location="Berlin")


async def rows(store: SqlStore) -> tuple[int, int]:
    """(customers, chat interactions) in the store."""
    async with store.sessions() as session:
        customers = await session.scalar(select(func.count()).select_from(Customer))
        chats = await session.scalar(
            select(func.count()).where(Interaction.event_id.like("chat-%"))
        )
        return int(customers or 0), int(chats or 0)


async def catalogue(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "running")
        await add_product(session, "SKU-2", "running")


async def test_concurrent_conversations_share_transactions(store: SqlStore) -> None:
    """Forty turns at once: every write's ids come back, in far fewer transactions."""
    await catalogue(store)
    guard = CountingGuard()
    writer = ChatEventWriter(store, "granted", guard)

    outcomes = await asyncio.gather(
        *(writer.write(shown(f"shopper-{n}", "SKU-1", "SKU-2")) for n in range(40))
    )

    assert outcomes == [
        {f"chat-shopper-{n}-m1-SKU-1", f"chat-shopper-{n}-m1-SKU-2"} for n in range(40)
    ]
    assert guard.transactions <= 2  # the first write alone, then the other 39 together
    assert await rows(store) == (40, 80)


async def test_background_writes_arriving_apart_linger_into_one_transaction(
    store: SqlStore,
) -> None:
    """Turns a few milliseconds apart, none waited on by an answer: one commit for all."""
    await catalogue(store)
    guard = CountingGuard()
    writer = ChatEventWriter(store, "granted", guard, linger_s=0.5)

    async def turn(n: int) -> set[str] | None:
        await asyncio.sleep(0.01 * n)  # after the first batch has started waiting
        return await writer.write(shown(f"shopper-{n}", "SKU-1"), linger=True)

    outcomes = await asyncio.gather(*(turn(n) for n in range(5)))

    assert outcomes == [{f"chat-shopper-{n}-m1-SKU-1"} for n in range(5)]
    assert guard.transactions == 1
    assert await rows(store) == (5, 5)


async def test_a_write_an_answer_waits_for_does_not_linger(store: SqlStore) -> None:
    """A lingering batch is stored at once, together with a write that cannot wait."""
    await catalogue(store)
    guard = CountingGuard()
    writer = ChatEventWriter(store, "granted", guard, linger_s=60.0)
    background = asyncio.ensure_future(writer.write(shown("ada", "SKU-1"), linger=True))
    await asyncio.sleep(0.05)
    assert not background.done()  # waiting for company, within its minute

    answered = await asyncio.wait_for(writer.write(shown("bob", "SKU-2")), timeout=5)

    assert answered == {"chat-bob-m1-SKU-2"}
    assert await asyncio.wait_for(background, timeout=5) == {"chat-ada-m1-SKU-1"}
    assert guard.transactions == 1


async def test_a_lone_background_write_is_stored_after_its_linger(store: SqlStore) -> None:
    await catalogue(store)
    guard = CountingGuard()
    writer = ChatEventWriter(store, "granted", guard, linger_s=0.05)

    outcome = await asyncio.wait_for(writer.write(shown("ada", "SKU-1"), linger=True), 5)

    assert outcome == {"chat-ada-m1-SKU-1"}
    assert guard.transactions == 1
    assert await rows(store) == (1, 1)


async def test_a_repeated_write_stores_nothing_twice(store: SqlStore) -> None:
    """The same turn twice in one batch, then again later: its ids are new once."""
    await catalogue(store)
    writer = ChatEventWriter(store, "granted", CountingGuard())

    first, again = await asyncio.gather(
        writer.write(shown("ada", "SKU-1")), writer.write(shown("ada", "SKU-1"))
    )
    later = await writer.write(shown("ada", "SKU-1"))

    assert first == {"chat-ada-m1-SKU-1"}
    assert again == set()
    assert later == set()
    assert await rows(store) == (1, 1)


async def test_a_customer_without_tracking_consent_is_left_out_alone(store: SqlStore) -> None:
    """In the same batch: the denied customer gets nothing stored, the other everything."""
    await catalogue(store)
    async with store.sessions.begin() as session:
        await set_consent(
            session,
            customer_key(TEST_SECRET, "private"),
            {"tracking": False},
            source="chat",
            policy_version=None,
            now=NOW,
        )
    writer = ChatEventWriter(store, "granted", CountingGuard())

    private, public = await asyncio.gather(
        writer.write(shown("private", "SKU-1")), writer.write(shown("public", "SKU-1"))
    )

    assert private == set()
    assert public == {"chat-public-m1-SKU-1"}
    assert await rows(store) == (1, 1)


async def test_an_unreachable_store_answers_none_for_every_write(store: SqlStore) -> None:
    """An outage: nothing is known to be new, and the writer is ready for the next turn."""
    writer = ChatEventWriter(store, "granted", CountingGuard(OSError("down")))

    outcomes = await asyncio.gather(*(writer.write(shown(f"s{n}", "SKU-1")) for n in range(5)))

    assert outcomes == [None] * 5


class RefusingBatches(ChatEventWriter):
    """The database refuses any transaction of more than one write (a data error)."""

    async def _store(self, writes: Sequence[ChatWrite]) -> list[set[str]]:
        if len(writes) > 1:
            raise IntegrityError("INSERT ...", {}, Exception("refused"))
        return await super()._store(writes)


async def refused_as_the_engine_does(work: Awaitable[list[set[str]]]) -> list[set[str]]:
    try:
        return await work
    except IntegrityError as error:
        raise StoreUnavailableError("store refused this request") from error


async def test_a_refused_batch_is_retried_write_by_write(store: SqlStore) -> None:
    """A data error fails a batch: each write is tried on its own, so one cannot sink all."""
    await catalogue(store)
    writer = RefusingBatches(store, "granted", refused_as_the_engine_does)

    outcomes = await asyncio.gather(
        *(writer.write(shown(name, "SKU-1")) for name in ("a", "b", "c"))
    )

    assert outcomes == [{"chat-a-m1-SKU-1"}, {"chat-b-m1-SKU-1"}, {"chat-c-m1-SKU-1"}]
    assert await rows(store) == (3, 3)


async def test_a_cancelled_flush_answers_every_waiting_write(store: SqlStore) -> None:
    """A shutdown mid-write: the writes in flight and queued get None, none waits forever."""
    await catalogue(store)
    started = asyncio.Event()

    async def stuck(work: Awaitable[list[set[str]]]) -> list[set[str]]:
        if asyncio.iscoroutine(work):
            work.close()
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    writer = ChatEventWriter(store, "granted", stuck)
    first = asyncio.ensure_future(writer.write(shown("a", "SKU-1")))
    await started.wait()
    second = asyncio.ensure_future(writer.write(shown("b", "SKU-1")))
    await asyncio.sleep(0)
    assert writer._flusher is not None
    writer._flusher.cancel()

    assert await asyncio.wait_for(asyncio.gather(first, second), timeout=5) == [None, None]
