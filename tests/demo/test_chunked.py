"""The chunked generator: any chunk size gives one shop, with the small shop's catalogue,
groups and behaviour, even at a million-customer shop's ten interactions per customer."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.demo.draws import Draws, pick
from rasa_personalize.demo.generator import (
    CHUNKED_FROM_CUSTOMERS,
    DEMO_CUSTOMERS,
    GROUP_SHARES,
    DemoShopConfig,
    SeedReport,
    seed_demo_shop,
)
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.segments.archetypes import archetype_for
from rasa_personalize.store.models import (
    Customer,
    CustomerProfile,
    CustomerTag,
    Interaction,
    Product,
)
from rasa_personalize.store.records import ProfileMetrics
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
# Ten interactions per customer, as for a million customers and ten million interactions.
SPARSE = DemoShopConfig(customers=600, products=120, interactions=6_000, seed=5, chunk_customers=64)
# Enough interactions for every purchase funnel: nothing is thinned.
DENSE = replace(SPARSE, interactions=20_000)


async def _seed(session: AsyncSession, config: DemoShopConfig) -> SeedReport:
    return await seed_demo_shop(session, config, secret_key=TEST_SECRET, now=NOW)


async def _dump(session: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    """Every generated row by natural keys (database ids differ between runs)."""
    products = await session.execute(
        select(Product.sku, Product.title, Product.category, Product.price).order_by(Product.sku)
    )
    customers = await session.execute(
        select(
            Customer.customer_key,
            Customer.created_at,
            Customer.age,
            Customer.gender,
            Customer.city,
            Customer.loyalty_tier,
            Customer.synthetic_group,
            Customer.synthetic_purchase_probability,
        ).order_by(Customer.customer_key)
    )
    interactions = await session.execute(
        select(
            Interaction.event_id,
            Customer.customer_key,
            Interaction.kind,
            Product.sku,
            Interaction.occurred_at,
            Interaction.price,
            Interaction.quantity,
            Interaction.value,
            Interaction.channel,
            Interaction.device,
        )
        .join(Customer, Customer.id == Interaction.customer_id)
        .outerjoin(Product, Product.id == Interaction.product_id)
        .order_by(Interaction.event_id)
    )
    tags = await session.execute(
        select(Customer.customer_key, CustomerTag.tag, CustomerTag.weight)
        .join(Customer, Customer.id == CustomerTag.customer_id)
        .order_by(Customer.customer_key, CustomerTag.tag)
    )
    return {
        "products": [tuple(row) for row in products],
        "customers": [tuple(row) for row in customers],
        "interactions": [tuple(row) for row in interactions],
        "tags": [tuple(row) for row in tags],
    }


async def _seed_and_roll_back(
    store: SqlStore, config: DemoShopConfig
) -> tuple[SeedReport, dict[str, Any]]:
    async with store.sessions() as session:
        report = await _seed(session, config)
        dump = await _dump(session)
        await session.rollback()
    return report, dump


async def test_any_chunk_size_gives_the_same_shop(sqlite_store: SqlStore) -> None:
    """Chunks of 7, of 64 or one chunk for all: the same rows, event ids included."""
    reports, dumps = zip(
        *[
            await _seed_and_roll_back(sqlite_store, replace(SPARSE, chunk_customers=size))
            for size in (7, 64, SPARSE.customers)
        ],
        strict=True,
    )

    assert dumps[0]["interactions"], "nothing was seeded"
    assert dumps[0] == dumps[1] == dumps[2]
    assert reports[0] == reports[1] == reports[2]
    other_seed = await _seed_and_roll_back(sqlite_store, replace(SPARSE, seed=6))
    assert other_seed[1]["interactions"] != dumps[0]["interactions"]


async def test_catalogue_and_groups_are_the_small_shops(sqlite_store: SqlStore) -> None:
    """The chunked shop has the in-memory shop's products and the same group for every
    customer; both hit the interaction target before the last week's purchases."""
    chunked_report, chunked = await _seed_and_roll_back(sqlite_store, DENSE)
    whole_report, whole = await _seed_and_roll_back(
        sqlite_store, replace(DENSE, chunk_customers=None)
    )

    assert chunked["products"] == whole["products"]
    groups = [(key, group) for key, *_rest, group, _p in chunked["customers"]]
    assert groups == [(key, group) for key, *_rest, group, _p in whole["customers"]]
    assert chunked_report.groups == whole_report.groups
    assert chunked_report.funnel_share == whole_report.funnel_share == 1.0
    for report, dump in ((chunked_report, chunked), (whole_report, whole)):
        # Each of the week's buyers adds a purchase and its view; older purchases left it.
        week = [
            row
            for row in dump["interactions"]
            if row[2] == "purchase" and NOW - row[4] < timedelta(days=7)
        ]
        assert week
        assert report.interactions == len(dump["interactions"])
        assert report.interactions == DENSE.interactions + 2 * len(week)


async def test_groups_survive_ten_interactions_per_customer(sqlite_store: SqlStore) -> None:
    """At 10 interactions per customer funnels thin out, purchases stay: the archetype
    rule gives back >= 95 % of every group, and the group mix is exact."""
    async with sqlite_store.sessions.begin() as session:
        report = await _seed(session, SPARSE)
        await rebuild_profile_metrics(session, now=NOW)
    async with sqlite_store.sessions() as session:
        rows = (
            await session.execute(
                select(
                    Customer.synthetic_group, Customer.loyalty_tier, CustomerProfile.metrics
                ).outerjoin(CustomerProfile, CustomerProfile.customer_id == Customer.id)
            )
        ).all()
        written = await session.scalar(select(func.count()).select_from(Interaction))

    assert 0.2 < report.funnel_share < 0.6
    assert written == report.interactions
    assert SPARSE.interactions <= report.interactions <= SPARSE.interactions * 1.1
    expected = {name: round(share * SPARSE.customers) for name, share in GROUP_SHARES.items()}
    assert dict(report.groups) == expected
    assert Counter(group for group, _, _ in rows) == expected
    for group in GROUP_SHARES:
        found = [
            archetype_for(ProfileMetrics.from_document(doc) if doc else ProfileMetrics(), tier, NOW)
            for truth, tier, doc in rows
            if truth == group
        ]
        assert found.count(group) >= 0.95 * len(found), group


async def test_named_customers_and_tags(sqlite_store: SqlStore) -> None:
    """The named customers keep their groups and tastes; the top 10 % spenders are
    premium; interest tags mark >= 3 views of a category in 30 days."""
    _, dump = await _seed_and_roll_back(sqlite_store, DENSE)

    groups = {key: group for key, *_rest, group, _p in dump["customers"]}
    for name, group in DEMO_CUSTOMERS.items():
        assert groups[customer_key(TEST_SECRET, name)] == group
    tags = {(key, tag): weight for key, tag, weight in dump["tags"]}
    assert (customer_key(TEST_SECRET, "demo-bargain"), "interested_in_running") in tags
    premium = {key for key, tag in tags if tag == "premium"}
    assert len(premium) == math.ceil(0.1 * DENSE.customers)
    spend: Counter[str] = Counter()
    views: Counter[tuple[str, str]] = Counter()
    category = {sku: name for sku, _title, name, _price in dump["products"]}
    for _id, key, kind, sku, occurred_at, price, quantity, *_rest in dump["interactions"]:
        if kind == "purchase":
            spend[key] += price * quantity
        if kind == "view" and sku is not None and NOW - occurred_at <= timedelta(days=30):
            views[(key, category[sku])] += 1
    assert min(spend[key] for key in premium) >= max(
        amount for key, amount in spend.items() if key not in premium
    )
    interest = {k: w for k, w in tags.items() if k[1].startswith("interested_in_")}
    assert interest == pytest.approx(
        {
            (key, f"interested_in_{name}"): min(1.0, n / 10)
            for (key, name), n in views.items()
            if n >= 3
        }
    )


async def test_too_few_interactions_are_refused_before_writing(sqlite_store: SqlStore) -> None:
    """Fewer interactions than the purchases and closing sessions need: nothing written."""
    async with sqlite_store.sessions() as session:
        with pytest.raises(InvalidInputError, match="interactions=1200 is too few for 600"):
            await _seed(session, replace(SPARSE, interactions=1_200))
        assert await session.scalar(select(func.count()).select_from(Product)) == 0


def test_large_shops_are_chunked_by_default() -> None:
    """Chunked from CHUNKED_FROM_CUSTOMERS customers on, unless a chunk size is given."""
    assert DemoShopConfig().chunk_size() is None
    assert DemoShopConfig(customers=CHUNKED_FROM_CUSTOMERS).chunk_size() == 20_000
    assert DemoShopConfig(chunk_customers=50).chunk_size() == 50


def test_draws_are_addressed_and_uniform() -> None:
    """A draw depends on its address only; uniforms cover [0, 1) evenly; integer draws
    stay inside their inclusive bounds; inverse-CDF picks follow their shares."""
    draws = Draws(3)
    customers = np.arange(200_000)
    uniform = draws.uniform(1, customers, 4)

    assert np.array_equal(uniform[5_000:6_000], draws.uniform(1, customers[5_000:6_000], 4))
    assert not np.array_equal(uniform, draws.uniform(2, customers, 4))
    assert not np.array_equal(uniform, Draws(4).uniform(1, customers, 4))
    assert uniform.min() >= 0.0
    assert uniform.max() < 1.0
    assert np.histogram(uniform, bins=10, range=(0, 1))[0] == pytest.approx([20_000] * 10, rel=0.03)
    integers = draws.integers(2, customers, 0, 3, 5)
    assert set(np.unique(integers).tolist()) == {3, 4, 5}
    shares = np.bincount(pick(np.array([0.2, 0.7, 1.0]), uniform)) / len(uniform)
    assert shares == pytest.approx([0.2, 0.5, 0.3], abs=0.01)
    normal = draws.normal(5, customers)
    assert abs(normal.mean()) < 0.01
    assert normal.std() == pytest.approx(1.0, abs=0.01)


def test_seed_demo_command_in_chunks_without_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`seed-demo --chunk-customers N --no-profiles` at ten interactions per customer:
    the shop is written, the thinned funnels are reported, no profile is computed."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0

    result = runner.invoke(
        app,
        [
            "seed-demo", "--customers", "200", "--products", "40", "--interactions", "2000",
            "--chunk-customers", "64", "--no-profiles",
        ],
    )  # fmt: skip
    stats = runner.invoke(app, ["stats", "--json"])

    assert result.exit_code == 0, result.output
    assert "Seeded 200 customers, 40 products" in result.output
    assert "of purchases come with their product view" in result.output
    assert "Profile metrics not computed" in result.output
    counts = json.loads(stats.stdout.strip().splitlines()[-1])
    assert counts["customers"] == 200
    assert counts["interactions"] >= 2000
