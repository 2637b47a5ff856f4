"""Erasing a customer: SQL, Redis, queued events and model artifacts keep no trace of
them; erasing again is a no-op; late events stay out; every erasure is audited."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis import asyncio as redis_asyncio
from sqlalchemy import func, select

from rasa_personalize.cache.precomputed import cache_key
from rasa_personalize.cache.profiles import entry_key, generation_key, version_key
from rasa_personalize.events.dead_letters import dead_letter_stream
from rasa_personalize.events.ingest import ingest_events
from rasa_personalize.events.stream import FIELD, encode_events
from rasa_personalize.events.validation import ValidEvent
from rasa_personalize.identity import customer_key
from rasa_personalize.privacy.audit import Actor
from rasa_personalize.privacy.erasure import ERASE_ACTION, erase_customer
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import list_versions, load_latest, save_artifact
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.versions import als_dir
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import (
    Base,
    ConsentChange,
    ConsentState,
    Customer,
    CustomerAlias,
    CustomerProfile,
    ErasureTombstone,
    ExperimentExposure,
    Interaction,
    OfferExposure,
    PrecomputedRecommendations,
    PropensityScore,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product

RAW_ID = "jane.doe@example.com"
OLD_ID = "crm-0042"
OTHER_ID = "someone.else@example.com"
KEY = customer_key(TEST_SECRET, RAW_ID)
OLD_KEY = customer_key(TEST_SECRET, OLD_ID)
OTHER_KEY = customer_key(TEST_SECRET, OTHER_ID)
ERASED_AT = NOW + timedelta(hours=1)
# Tables that keep the key on purpose: the tombstone, the "erased" consent marker, and the
# audit log (the record of who erased whom, by key).
KEEPERS = {"erasure_tombstones", "consent_history", "audit_log"}


async def seed(store: SqlStore, *, interactions: int = 5) -> dict[str, int]:
    """Jane (with a customer merged into her) and a stranger, each in every table."""
    ids: dict[str, int] = {}
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=100.0)
        for name, raw in (("jane", RAW_ID), ("other", OTHER_ID)):
            customer = await add_customer(
                session, raw, tier="gold", tags=("premium",), segment="loyal", city="Berlin"
            )
            customer.email_encrypted = f"k1:cipher-of-{name}"
            customer.email_index = f"index-of-{name}"
            ids[name] = customer.id
            await add_interactions(session, customer, shoes, "view", interactions)
            session.add(
                CustomerProfile(customer_id=customer.id, attributes={"shoe": 42}, metrics={})
            )
            session.add(
                PrecomputedRecommendations(
                    customer_id=customer.id, items=[["SKU-1", 0.9]], model_version="v1"
                )
            )
            session.add(
                PropensityScore(
                    customer_id=customer.id,
                    target="purchase_7d",
                    score=0.42,
                    model_version="p1",
                    scored_at=NOW,
                )
            )
            session.add(
                ConsentState(
                    customer_key=customer.customer_key,
                    purpose="personalization",
                    granted=True,
                    source="chat",
                    policy_version="2026-01",
                )
            )
            session.add(
                ConsentChange(
                    customer_key=customer.customer_key,
                    purpose="personalization",
                    decision="granted",
                    source="chat",
                    policy_version="2026-01",
                    recorded_at=NOW - timedelta(days=1),
                )
            )
            session.add(
                ExperimentExposure(
                    experiment="bigger_discount",
                    customer_key=customer.customer_key,
                    arm="twenty",
                    exposed_at=NOW - timedelta(days=1),
                )
            )
            session.add(
                OfferExposure(
                    customer_key=customer.customer_key,
                    offer="discount_10",
                    shown_on=NOW.date(),
                    segment="loyal",
                    shown_at=NOW,
                )
            )
        session.add(CustomerAlias(alias_key=OLD_KEY, customer_id=ids["jane"], match="exact"))
        session.add(
            ConsentState(customer_key=OLD_KEY, purpose="marketing", granted=False, source="import")
        )
        # Exposed under her old id, before the merge.
        session.add(
            ExperimentExposure(
                experiment="bigger_discount", customer_key=OLD_KEY, arm="control", exposed_at=NOW
            )
        )
        # Shown an offer under her old id too.
        session.add(
            OfferExposure(
                customer_key=OLD_KEY,
                offer="bundle",
                shown_on=NOW.date(),
                segment="loyal",
                shown_at=NOW,
            )
        )
    return ids


def als_model(users: list[str], seed: int) -> AlsRecommender:
    rng = np.random.default_rng(seed)
    return AlsRecommender.from_factors(
        AlsParams(factors=4),
        user_ids=IdMap.from_ids(users),
        item_ids=IdMap.from_ids(["SKU-1", "SKU-2", "SKU-3"]),
        user_factors=rng.normal(size=(len(users), 4)),
        item_factors=rng.normal(size=(3, 4)),
    )


def seed_models(model_dir: Path) -> None:
    """Two ALS versions that know Jane under both keys, and the stranger."""
    users = [KEY, OLD_KEY, OTHER_KEY, "x" * 64]
    save_artifact(als_model(users, 1), als_dir(model_dir), trained_at=NOW - timedelta(days=2))
    save_artifact(als_model(users, 2), als_dir(model_dir), trained_at=NOW - timedelta(days=1))


def event(event_id: str, key: str) -> ValidEvent:
    return ValidEvent(event_id, key, "SKU-1", "view", NOW, "web", None, None, None, 1, None)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    """A client and an event stream of this test's own (under the plugin's prefix)."""
    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"personalize:test-erasure-{uuid.uuid4().hex}"
    yield client, stream
    await client.delete(
        stream,
        dead_letter_stream(stream),
        *(entry_key(k) for k in (KEY, OLD_KEY, OTHER_KEY)),
        *(version_key(k) for k in (KEY, OLD_KEY, OTHER_KEY)),
        *(cache_key(k) for k in (KEY, OLD_KEY, OTHER_KEY)),
    )
    await client.aclose()


async def seed_redis(client: redis_asyncio.Redis, stream: str) -> None:
    """Cached profiles, versions and precomputed lists of both; queued and dead events."""
    for key in (KEY, OLD_KEY, OTHER_KEY):
        await client.set(entry_key(key), json.dumps({"schema": 1, "key": key}))
        await client.set(version_key(key), 3)
        await client.set(cache_key(key), json.dumps({"version": "v1", "items": []}))
    await client.xadd(stream, {FIELD: encode_events([event("q1", KEY), event("q2", OTHER_KEY)])})
    await client.xadd(stream, {FIELD: encode_events([event("q3", OLD_KEY)])})
    await client.xadd(
        dead_letter_stream(stream),
        {FIELD: encode_events([event("d1", KEY)]), "reason": "DataError"},
    )


# The erased customer's keys, raw ids (never stored, checked anyway) and contact columns.
NEEDLES = (KEY, OLD_KEY, RAW_ID, OLD_ID, "cipher-of-jane", "index-of-jane")


async def sql_traces(store: SqlStore, customer_id: int) -> list[str]:
    """Every table and column where the erased customer still appears (all columns of all
    tables, as text), except the rows that keep the key on purpose."""
    found: list[str] = []
    async with store.sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).mappings().all()
            for row in rows:
                if table.name in KEEPERS:
                    if table.name == "consent_history" and row["decision"] == "erased":
                        assert (row["purpose"], row["source"], row["policy_version"]) == (
                            None,
                            None,
                            None,
                        )
                        continue
                    if table.name != "consent_history":
                        continue
                for column, value in row.items():
                    text = json.dumps(value, default=str)
                    if any(needle in text for needle in NEEDLES):
                        found.append(f"{table.name}.{column}")
                    if column == "customer_id" and value == customer_id:
                        found.append(f"{table.name}.{column}")
    return found


async def redis_traces(client: redis_asyncio.Redis) -> list[str]:
    """Every key under the plugin's prefix whose name or value names the customer."""
    found: list[str] = []
    async for raw_name in client.scan_iter(match="personalize*", count=1_000):
        name = raw_name.decode()
        kind = (await client.type(raw_name)).decode()
        if kind == "string":
            values: list[Any] = [await client.get(raw_name)]
        elif kind == "hash":
            values = list((await client.hgetall(raw_name)).items())
        elif kind == "zset":
            values = await client.zrange(raw_name, 0, -1)
        elif kind == "stream":
            values = [fields for _, fields in await client.xrange(raw_name)]
        elif kind == "list":
            values = await client.lrange(raw_name, 0, -1)
        else:
            values = list(await client.smembers(raw_name))
        text = name + repr(values)
        if KEY in text or OLD_KEY in text:
            found.append(name)
    return found


def artifact_traces(model_dir: Path) -> list[str]:
    """Files under the model directory holding a key, as text or as numpy's UCS-4."""
    found: list[str] = []
    for path in model_dir.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for key in (KEY, OLD_KEY):
            if key.encode() in data or key.encode("utf-32-le") in data:
                found.append(str(path.relative_to(model_dir)))
    return found


@pytest.mark.redis
async def test_erasure_leaves_no_trace_anywhere(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str], tmp_path: Path
) -> None:
    """Seeded in every table, Redis and two model versions; erased by the survivor's key,
    the customer is nowhere (SQL: every column of every table; Redis: every key under
    the prefix; models: every file), and the stranger is untouched everywhere."""
    client, stream = redis
    models = tmp_path / "models"  # beside a SQLite store file, which is not a model
    ids = await seed(store)
    await seed_redis(client, stream)
    seed_models(models)
    generation_before = await client.get(generation_key())
    assert await sql_traces(store, ids["jane"])
    assert await redis_traces(client)
    assert artifact_traces(models)

    receipt = await erase_customer(
        store.sessions,
        customer_key=KEY,
        actor=Actor.cli(),
        model_dir=models,
        redis=client,
        event_stream=stream,
        now=ERASED_AT,
        batch_size=2,
    )

    assert receipt.found
    assert receipt.outcome == "erased"
    assert dict(receipt.tables) == {
        "customers": 1,
        "customer_aliases": 1,
        "customer_profiles": 1,
        "customer_totals": 0,
        "interactions": 5,
        "customer_tags": 1,
        "segment_assignments": 1,
        "precomputed_recommendations": 1,
        "propensity_scores": 1,
        "consent_states": 2,
        "consent_history": 1,
        "experiment_exposures": 2,
        "offer_exposures": 2,
    }
    assert (receipt.keys, receipt.tombstones) == (2, 2)
    assert (receipt.redis_keys, receipt.stream_events, receipt.artifacts) == (6, 3, 2)
    assert receipt.redis == "done"
    assert await sql_traces(store, ids["jane"]) == []
    assert await redis_traces(client) == []
    assert artifact_traces(models) == []
    # The profile cache's generation moved: a read begun before the erasure cannot
    # write Jane's old snapshot back.
    assert await client.get(generation_key()) != generation_before

    # The stranger keeps everything, and the models still load and serve them.
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 5
        assert await session.scalar(select(Customer.customer_key)) == OTHER_KEY
        stones = select(ErasureTombstone.customer_key, ErasureTombstone.erased_at)
        tombstones = dict((await session.execute(stones)).all())
    assert tombstones == {KEY: ERASED_AT, OLD_KEY: ERASED_AT}
    for key in (OTHER_KEY,):
        assert await client.exists(entry_key(key), version_key(key), cache_key(key)) == 3
    [(_, fields)] = await client.xrange(stream)
    assert OTHER_KEY.encode() in fields[FIELD.encode()]
    latest = load_latest(als_dir(models))
    assert list(latest.model.user_ids_) == sorted([OTHER_KEY, "x" * 64])
    assert len(list_versions(als_dir(models))) == 2


async def test_erasing_by_an_alias_key_erases_the_customer_it_points_to(
    store: SqlStore, tmp_path: Path
) -> None:
    """The merged customer's old key reaches the survivor: both keys get tombstones."""
    ids = await seed(store)
    receipt = await erase_customer(
        store.sessions, customer_key=OLD_KEY, actor=Actor.cli(), model_dir=None, now=ERASED_AT
    )
    assert receipt.tables["customers"] == 1
    assert receipt.tables["interactions"] == 5
    assert receipt.redis == "not configured"
    assert await sql_traces(store, ids["jane"]) == []
    async with store.sessions() as session:
        keys = set((await session.scalars(select(ErasureTombstone.customer_key))).all())
    assert keys == {KEY, OLD_KEY}


async def test_erasing_again_is_a_no_op_that_keeps_the_tombstone(
    store: SqlStore, tmp_path: Path
) -> None:
    """The second erasure finds nothing, writes nothing, and leaves the first tombstone
    and the one "erased" consent row per key as they were; both are audited."""
    await seed(store)
    seed_models(tmp_path)
    first = await erase_customer(
        store.sessions, customer_key=KEY, actor=Actor.cli(), model_dir=tmp_path, now=ERASED_AT
    )
    again = await erase_customer(
        store.sessions,
        customer_key=KEY,
        actor=Actor.api(7, "crm"),
        model_dir=tmp_path,
        now=ERASED_AT + timedelta(days=1),
    )
    assert first.found
    assert not again.found
    assert again.outcome == "not_found"
    assert again.sql_rows == again.tombstones == again.artifacts == 0
    async with store.sessions() as session:
        assert (
            await session.scalar(
                select(ErasureTombstone.erased_at).where(ErasureTombstone.customer_key == KEY)
            )
            == ERASED_AT
        )
        markers = await session.scalar(
            select(func.count())
            .select_from(ConsentChange)
            .where(ConsentChange.decision == "erased")
        )
        entries = await list_audit_entries(session, action=ERASE_ACTION)
    assert markers == 2
    assert [
        (e.actor, e.api_key_id, e.api_key_label, e.outcome, e.customer_key) for e in entries
    ] == [
        ("cli", None, None, "erased", KEY),
        ("api", 7, "crm", "not_found", KEY),
    ]
    assert entries[0].detail["tables"]["interactions"] == 5
    assert entries[0].detail["artifacts"] == 2
    # Counts only: no raw id and no other key in the audit detail.
    assert RAW_ID not in json.dumps(entries[0].detail)
    assert OLD_KEY not in json.dumps(entries[0].detail)


async def test_an_unreachable_redis_leaves_the_erasure_incomplete(
    store: SqlStore, tmp_path: Path
) -> None:
    """SQL is erased; the receipt and the audit row say Redis was not reached."""
    ids = await seed(store)
    receipt = await erase_customer(
        store.sessions,
        customer_key=KEY,
        actor=Actor.cli(),
        model_dir=tmp_path,
        redis="redis://127.0.0.1:1/0",
        now=ERASED_AT,
    )
    assert receipt.redis == "failed"
    assert not receipt.complete
    assert receipt.failed == ("redis: ConnectionError",)
    assert receipt.outcome == "incomplete"
    assert await sql_traces(store, ids["jane"]) == []
    async with store.sessions() as session:
        [entry] = await list_audit_entries(session, action=ERASE_ACTION)
    assert entry.outcome == "incomplete"


async def test_old_events_ingested_during_the_erasure_do_not_come_back(
    store: SqlStore,
) -> None:
    """Batches of the customer's old events stored while the erasure runs, and one
    replayed after it, leave no interaction and no customer behind.

    Relies on ingestion dropping events dated at or before the customer's tombstone.
    """
    await seed(store, interactions=400)

    def old_events(round_: int) -> list[dict[str, Any]]:
        return [
            {
                "event_id": f"late-{round_}-{n}",
                "customer": RAW_ID,
                "product": "SKU-1",
                "kind": "view",
                "timestamp": (NOW - timedelta(minutes=n + 1)).isoformat(),
            }
            for n in range(20)
        ]

    done = asyncio.Event()

    async def ingest_until_done() -> int:
        rounds = 0
        while not done.is_set() or rounds < 3:
            async with store.sessions.begin() as session:
                await ingest_events(
                    session, old_events(rounds), secret_key=TEST_SECRET, now=ERASED_AT
                )
            rounds += 1
            await asyncio.sleep(0)
        return rounds

    async def erase() -> None:
        try:
            await erase_customer(
                store.sessions,
                customer_key=KEY,
                actor=Actor.cli(),
                model_dir=None,
                now=ERASED_AT,
                batch_size=50,
            )
        finally:
            done.set()

    rounds, _ = await asyncio.gather(ingest_until_done(), erase())
    assert rounds >= 3
    async with store.sessions.begin() as session:
        replay = await ingest_events(session, old_events(0), secret_key=TEST_SECRET, now=ERASED_AT)
    assert replay.accepted == []
    async with store.sessions() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(Customer).where(Customer.customer_key == KEY)
            )
            == 0
        )
        assert (
            await session.scalar(
                select(func.count())
                .select_from(Interaction)
                .where(Interaction.event_id.like("late-%"))
            )
            == 0
        )
