"""Dead letters: a message the store refuses stops holding back the stream (real Redis,
SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as redis_asyncio
from sqlalchemy.exc import DataError
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.events import ingest
from rasa_personalize.events.dead_letters import (
    count_dead_letters,
    dead_letter_stream,
    drop_dead_letters,
    failure_counts_key,
    list_dead_letters,
    retry_dead_letters,
)
from rasa_personalize.events.validation import ValidEvent
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import migrated_store
from tests.events.test_worker import make_event, pending, publish, stored_ids, worker_for
from tests.factories import add_product

pytestmark = pytest.mark.redis

POISON = "e-poison"
runner = CliRunner()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    sql = await migrated_store(database_url)
    async with sql.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=50.0)
    yield sql
    await sql.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    """A client and a stream of this test's own, with every key deleted afterwards."""
    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"test:events:{asyncio.get_running_loop().time()}:{id(client)}"
    yield client, stream
    await client.delete(*_keys(stream))
    await client.aclose()


def _keys(stream: str) -> list[str]:
    suffixes = ("", ":dirty", ":dirty-version", ":dirty-latest", ":dirty-claims")
    return [stream + s for s in suffixes] + [dead_letter_stream(stream), failure_counts_key(stream)]


def poison(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the store refuse any batch holding the event POISON; returns a call counter."""
    real = ingest.store_events
    refusals = [0]

    async def refusing(session: Any, events: Sequence[ValidEvent], **kwargs: Any) -> Any:
        if any(event.event_id == POISON for event in events):
            refusals[0] += 1
            # What a value the database rejects raises (the message quotes nothing here).
            raise DataError("INSERT", {}, ValueError("rejected"))
        return await real(session, events, **kwargs)

    monkeypatch.setattr(ingest, "store_events", refusing)
    return refusals


def poisoned_event() -> ValidEvent:
    return dataclasses.replace(make_event(99, customer="jane"), event_id=POISON)


async def fill(client: redis_asyncio.Redis, stream: str) -> None:
    """Three messages: good, poisoned, good."""
    await publish(client, stream, [make_event(n) for n in range(5)])
    await publish(client, stream, [poisoned_event()])
    await publish(client, stream, [make_event(n) for n in range(5, 10)])


GOOD = sorted(f"e{n}" for n in range(10))


async def test_a_poisoned_message_goes_to_the_dead_letters_and_the_rest_is_stored(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Good messages of the failing batch are stored; the bad one dies after N failures."""
    client, stream = redis
    refusals = poison(monkeypatch)
    await fill(client, stream)

    worker = worker_for(client, stream, store, max_deliveries=3, retry_delay_s=0.001)
    stats = await asyncio.wait_for(worker.run(), timeout=60)

    assert await stored_ids(store) == GOOD
    assert stats.dead_letters == 1
    assert stats.refused == 3
    assert refusals[0] == 4  # the whole batch once, then the message alone three times
    assert await client.xlen(stream) == 0
    assert await pending(client, stream) == 0
    assert await client.exists(failure_counts_key(stream)) == 0
    [letter] = await list_dead_letters(client, stream)
    assert (letter.failures, letter.reason, letter.events) == (3, "DataError", 1)
    assert letter.deliveries >= 3


async def test_retry_moves_a_dead_letter_back_and_the_worker_stores_it(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the cause is fixed, a retried dead letter is stored; nothing is duplicated."""
    client, stream = redis
    poison(monkeypatch)
    await fill(client, stream)
    await worker_for(client, stream, store, max_deliveries=2, retry_delay_s=0.001).run()
    monkeypatch.undo()  # the store takes the event now
    [letter] = await list_dead_letters(client, stream)

    assert await retry_dead_letters(client, stream, [letter.id, "0-1"]) == [letter.id]
    assert await count_dead_letters(client, stream) == 0
    assert await client.xlen(stream) == 1
    stats = await worker_for(client, stream, store).run()

    assert stats.stored == 1
    assert await stored_ids(store) == sorted([*GOOD, POISON])


async def test_drop_deletes_dead_letters(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped dead letters are gone and never reach the stream again."""
    client, stream = redis
    poison(monkeypatch)
    await fill(client, stream)
    await worker_for(client, stream, store, max_deliveries=1, retry_delay_s=0.001).run()

    dropped = await drop_dead_letters(client, stream, None)

    assert len(dropped) == 1
    assert await count_dead_letters(client, stream) == 0
    assert await client.xlen(stream) == 0
    assert await stored_ids(store) == GOOD


async def test_a_store_outage_counts_no_failures(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that takes no connections is an outage: nothing goes to the dead letters."""
    client, stream = redis
    await publish(client, stream, [make_event(1)])
    worker = worker_for(client, stream, store, max_deliveries=1)

    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(ingest, "store_events", down)
    monkeypatch.setattr(worker, "_store_answers", _false)
    for _ in range(3):
        assert await worker.step() is None

    assert await count_dead_letters(client, stream) == 0
    assert await pending(client, stream) == 1


async def _false() -> bool:
    return False


def test_cli_lists_retries_and_drops_without_personal_data(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`worker dead-letters list` shows ids, counts and the error class, never customers."""
    stream = f"test:events:cli:{tmp_path.name}"
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def prepare() -> str:
        store = await migrated_store(url)
        client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
        try:
            async with store.sessions.begin() as session:
                await add_product(session, "SKU-1", "shoes", price=50.0)
            await client.delete(*_keys(stream))
            await fill(client, stream)
            second = dataclasses.replace(poisoned_event(), event_id=f"{POISON}-2")
            await publish(client, stream, [second])
            await worker_for(client, stream, store, max_deliveries=1, retry_delay_s=0.001).run()
            return poisoned_event().customer_key
        finally:
            await client.aclose()
            await store.dispose()

    monkeypatch.setattr(
        ingest,
        "store_events",
        _refusing_prefix(ingest.store_events),
    )
    customer_key = asyncio.run(prepare())
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", redis_url)
    monkeypatch.setenv("PERSONALIZE_EVENT_STREAM", stream)
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", url)
    try:
        listed = runner.invoke(app, ["worker", "dead-letters", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        document = json.loads(listed.stdout)
        assert document["total"] == 2
        for private in ("jane", customer_key, "Lisbon", POISON):
            assert private not in listed.output
        table = runner.invoke(app, ["worker", "dead-letters", "list", "--limit", "1"])
        assert table.exit_code == 0
        assert ": 2" in table.stdout
        assert "1 more" in table.stdout
        assert "jane" not in table.output
        assert customer_key not in table.output

        first, second = (letter["id"] for letter in document["dead_letters"])
        unconfirmed = runner.invoke(app, ["worker", "dead-letters", "drop", first])
        assert unconfirmed.exit_code == 2
        dropped = runner.invoke(app, ["worker", "dead-letters", "drop", first, "--yes"])
        assert dropped.exit_code == 0
        assert "1 dead letters dropped" in dropped.stdout
        retried = runner.invoke(app, ["worker", "dead-letters", "retry", "--all"])
        assert retried.exit_code == 0
        assert "1 dead letters moved back" in retried.stdout
        missing = runner.invoke(app, ["worker", "dead-letters", "retry", second])
        assert missing.exit_code == 1
        after = json.loads(runner.invoke(app, ["worker", "dead-letters", "list", "--json"]).stdout)
        assert after["total"] == 0
    finally:
        asyncio.run(_delete(redis_url, stream))


def _refusing_prefix(real: Any) -> Any:
    async def refusing(session: Any, events: Sequence[ValidEvent], **kwargs: Any) -> Any:
        if any(event.event_id.startswith(POISON) for event in events):
            raise DataError("INSERT", {}, ValueError("rejected"))
        return await real(session, events, **kwargs)

    return refusing


async def _delete(redis_url: str, stream: str) -> None:
    client = redis_asyncio.from_url(redis_url)
    await client.delete(*_keys(stream))
    await client.aclose()
