"""The synthetic demo shop: deterministic, realistic in size, and true to the archetype rule."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.demo.generator import (
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
from rasa_personalize.store.repository import load_customer_snapshot, rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
SMALL = DemoShopConfig(customers=120, products=40, interactions=3_000, seed=7)
MEDIUM = DemoShopConfig(customers=400, products=80, interactions=10_000, seed=11)


def _as_utc(value: object) -> datetime:
    # Aggregates may come back as strings on SQLite.
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


async def _seed(session: AsyncSession, config: DemoShopConfig, **options: Any) -> SeedReport:
    return await seed_demo_shop(session, config, secret_key=TEST_SECRET, now=NOW, **options)


async def _dump(session: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    """Every generated row, by natural keys only (database ids may differ between runs)."""
    products = await session.execute(
        select(
            Product.sku,
            Product.title,
            Product.description,
            Product.category,
            Product.brand,
            Product.price,
            Product.in_stock,
            Product.attributes,
        ).order_by(Product.sku)
    )
    customers = await session.execute(
        select(
            Customer.customer_key,
            Customer.created_at,
            Customer.age,
            Customer.gender,
            Customer.country,
            Customer.city,
            Customer.loyalty_tier,
            Customer.synthetic_group,
        ).order_by(Customer.customer_key)
    )
    interactions = await session.execute(
        select(
            Customer.customer_key,
            Interaction.kind,
            Product.sku,
            Interaction.occurred_at,
            Interaction.event_id,
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
        select(Customer.customer_key, CustomerTag.tag, CustomerTag.source, CustomerTag.weight)
        .join(Customer, Customer.id == CustomerTag.customer_id)
        .order_by(Customer.customer_key, CustomerTag.tag)
    )
    return {
        "products": [tuple(row) for row in products],
        "customers": [tuple(row) for row in customers],
        "interactions": [tuple(row) for row in interactions],
        "tags": [tuple(row) for row in tags],
    }


async def _seed_and_roll_back(store: SqlStore, config: DemoShopConfig) -> dict[str, Any]:
    # Rolling back leaves the store empty again, so one store serves several seeds.
    async with store.sessions() as session:
        await _seed(session, config)
        dump = await _dump(session)
        await session.rollback()
    return dump


async def _archetypes(session: AsyncSession) -> list[tuple[str, str]]:
    """(true group, archetype from the rebuilt metrics) per customer."""
    rows = await session.execute(
        select(Customer.synthetic_group, Customer.loyalty_tier, CustomerProfile.metrics).outerjoin(
            CustomerProfile, CustomerProfile.customer_id == Customer.id
        )
    )
    pairs = []
    for group, tier, document in rows:
        metrics = ProfileMetrics.from_document(document) if document else ProfileMetrics()
        pairs.append((group, archetype_for(metrics, tier, NOW)))
    return pairs


async def test_same_seed_and_now_give_identical_rows(sqlite_store: SqlStore) -> None:
    """Seeding twice with one seed and one `now` writes the same rows; another seed does not."""
    first = await _seed_and_roll_back(sqlite_store, SMALL)
    second = await _seed_and_roll_back(sqlite_store, SMALL)
    other = await _seed_and_roll_back(sqlite_store, replace(SMALL, seed=8))

    assert first["interactions"], "nothing was seeded"
    assert first == second
    assert first["products"] != other["products"]
    assert first["interactions"] != other["interactions"]


async def test_default_config_is_full_size_and_inside_the_window(sqlite_store: SqlStore) -> None:
    """The default shop: 2,000 customers, 300 products, ~50k interactions in the last 180 days."""
    config = DemoShopConfig()
    async with sqlite_store.sessions.begin() as session:
        report = await _seed(session, config)

    assert report.customers == 2000
    assert report.products == 300
    assert abs(report.interactions - 50_000) <= 0.15 * 50_000
    assert sum(report.groups.values()) == 2000
    for group, share in GROUP_SHARES.items():
        assert report.groups[group] == pytest.approx(share * 2000, abs=2)
    async with sqlite_store.sessions() as session:
        counts = (
            await session.execute(
                select(
                    func.count(),
                    func.count(func.distinct(Interaction.event_id)),
                    func.min(Interaction.occurred_at),
                    func.max(Interaction.occurred_at),
                )
            )
        ).one()
        customers = await session.scalar(select(func.count()).select_from(Customer))
        products = (await session.execute(select(Product.sku, Product.category))).all()
        tags = await session.scalar(select(func.count()).select_from(CustomerTag))

    assert customers == report.customers
    assert counts[0] == counts[1] == report.interactions
    assert tags == report.tags
    oldest, newest = _as_utc(counts[2]), _as_utc(counts[3])
    assert NOW - timedelta(days=config.days) <= oldest < newest <= NOW
    assert len(products) == 300
    assert len({sku for sku, _ in products}) == 300
    assert len({category for _, category in products}) == 10


async def test_catalogue_looks_like_a_shop(sqlite_store: SqlStore) -> None:
    """Products have brand titles, SKUs per category, sensible prices, ~90 % in stock."""
    async with sqlite_store.sessions.begin() as session:
        await _seed(session, MEDIUM)
        rows = (await session.execute(select(Product))).scalars().all()

    prices: dict[str, list[float]] = defaultdict(list)
    for product in rows:
        assert re.fullmatch(r"SKU-[A-Z]{3}-\d{4}", product.sku)
        assert product.brand is not None
        assert product.title.startswith(product.brand)
        assert product.description.endswith(".")
        assert product.price > 0
        prices[product.category].append(product.price)
    assert len(prices) == 10
    # Books are cheap, electronics dear.
    assert statistics.median(prices["books"]) < 30 < 80 < statistics.median(prices["electronics"])
    assert 0.8 <= sum(p.in_stock for p in rows) / len(rows) <= 0.98
    # Footwear and clothes carry a colour and sizes.
    shoes = [p for p in rows if p.title.endswith("Running Shoes")]
    assert shoes
    assert all({"color", "sizes"} <= p.attributes.keys() for p in shoes)


async def test_smallest_catalogue_has_the_eight_core_categories(sqlite_store: SqlStore) -> None:
    """With 8 products every one of the first 8 categories still gets a product."""
    config = DemoShopConfig(customers=10, products=8, interactions=400)
    async with sqlite_store.sessions.begin() as session:
        report = await _seed(session, config)
        categories = (await session.scalars(select(Product.category))).all()

    assert report.products == 8
    assert sorted(categories) == sorted(
        ["electronics", "running", "outdoor", "home", "kitchen", "books", "beauty", "fashion"]
    )
    assert all(count >= 1 for count in report.groups.values())


async def test_named_customers_exist_under_their_keys(sqlite_store: SqlStore) -> None:
    """demo-bargain, demo-loyal, demo-new and demo-lapsed are stored by HMAC key only."""
    async with sqlite_store.sessions.begin() as session:
        await _seed(session, SMALL)
        await rebuild_profile_metrics(session, now=NOW)
    async with sqlite_store.sessions() as session:
        snapshots = {
            name: await load_customer_snapshot(session, customer_key(TEST_SECRET, name))
            for name in DEMO_CUSTOMERS
        }
        query = select(Customer.customer_key, Customer.synthetic_group)
        groups = dict((await session.execute(query)).all())

    for name, group in DEMO_CUSTOMERS.items():
        snapshot = snapshots[name]
        assert snapshot is not None, name
        assert groups[customer_key(TEST_SECRET, name)] == group
        assert archetype_for(snapshot.metrics, snapshot.loyalty_tier, NOW) == group, name
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in groups)

    bargain, loyal = snapshots["demo-bargain"], snapshots["demo-loyal"]
    new, lapsed = snapshots["demo-new"], snapshots["demo-lapsed"]
    assert bargain is not None
    assert loyal is not None
    assert new is not None
    assert lapsed is not None
    assert bargain.loyalty_tier == "none"
    assert bargain.metrics.favorite_category == "running"
    assert bargain.metrics.purchase_count >= 8
    assert bargain.metrics.discounted_purchase_share >= 0.6
    assert loyal.loyalty_tier == "gold"
    assert loyal.metrics.favorite_category == "electronics"
    assert loyal.metrics.purchase_count >= 8
    assert loyal.metrics.discounted_purchase_share == 0.0
    assert new.metrics.interaction_count == 0
    assert NOW - timedelta(days=14) <= new.created_at < NOW
    assert lapsed.metrics.favorite_category == "outdoor"
    assert lapsed.metrics.last_seen_at is not None
    assert NOW - lapsed.metrics.last_seen_at > timedelta(days=90)


async def test_rebuilt_metrics_give_back_the_true_group(store: SqlStore) -> None:
    """After rebuild_profile_metrics the archetype rule recovers >= 95 % of true groups."""
    async with store.sessions.begin() as session:
        report = await _seed(session, MEDIUM)
        await rebuild_profile_metrics(session, now=NOW)
    async with store.sessions() as session:
        pairs = await _archetypes(session)

    assert len(pairs) == report.customers
    agreeing = Counter(truth for truth, found in pairs if truth == found)
    total = Counter(truth for truth, _ in pairs)
    assert sum(agreeing.values()) >= 0.95 * len(pairs)
    for group in GROUP_SHARES:
        assert agreeing[group] >= 0.9 * total[group], group


async def test_customers_sign_up_before_their_first_interaction(sqlite_store: SqlStore) -> None:
    """created_at precedes every interaction; new visitors joined in the last 14 days."""
    async with sqlite_store.sessions.begin() as session:
        await _seed(session, SMALL)
        query = select(Interaction.customer_id, func.min(Interaction.occurred_at)).group_by(
            Interaction.customer_id
        )
        first_seen = dict((await session.execute(query)).all())
        customers = (await session.scalars(select(Customer))).all()

    for customer in customers:
        if customer.synthetic_group == "new_visitor":
            assert customer.id not in first_seen
            assert NOW - timedelta(days=14) <= customer.created_at < NOW
        else:
            assert customer.created_at < _as_utc(first_seen[customer.id])
        assert customer.age is not None
        assert 18 <= customer.age <= 80
        assert customer.city
        assert customer.country
        assert customer.gender


async def test_tags_follow_recent_views_and_spend(sqlite_store: SqlStore) -> None:
    """interested_in_<category> marks >= 3 views in 30 days; premium the top 10 % spenders."""
    async with sqlite_store.sessions.begin() as session:
        report = await _seed(session, MEDIUM)
        dump = await _dump(session)
        query = select(Product.sku, Product.category)
        categories = dict((await session.execute(query)).all())

    views: Counter[tuple[str, str]] = Counter()
    spend: Counter[str] = Counter()
    for key, kind, sku, occurred_at, *_rest in dump["interactions"]:
        price, quantity = _rest[1], _rest[2]
        if kind == "view" and sku is not None and NOW - occurred_at <= timedelta(days=30):
            views[(key, categories[sku])] += 1
        if kind == "purchase":
            spend[key] += price * quantity
    tags = {(key, tag): (source, weight) for key, tag, source, weight in dump["tags"]}

    expected_interest = {
        (key, f"interested_in_{category}"): min(1.0, n / 10)
        for (key, category), n in views.items()
        if n >= 3
    }
    interest = {k: w for k, (_, w) in tags.items() if k[1].startswith("interested_in_")}
    assert interest == pytest.approx(expected_interest)
    assert {source for source, _ in tags.values()} == {"seed"}
    premium = {key for key, tag in tags if tag == "premium"}
    assert len(premium) == math.ceil(0.1 * report.customers)
    assert min(spend[key] for key in premium) >= max(
        amount for key, amount in spend.items() if key not in premium
    )
    bargain = customer_key(TEST_SECRET, "demo-bargain")
    assert (bargain, "interested_in_running") in tags


async def test_progress_reports_every_stage_to_completion(sqlite_store: SqlStore) -> None:
    """progress(stage, done, total) runs through products, customers, interactions, tags."""
    calls: list[tuple[str, int, int]] = []
    async with sqlite_store.sessions.begin() as session:
        report = await _seed(
            session, SMALL, progress=lambda stage, done, total: calls.append((stage, done, total))
        )

    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["products", "customers", "interactions", "tags"]
    finals = {stage: (done, total) for stage, done, total in calls}
    assert finals == {
        "products": (report.products, report.products),
        "customers": (report.customers, report.customers),
        "interactions": (report.interactions, report.interactions),
        "tags": (report.tags, report.tags),
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Too few customers for six groups plus the four named ones.
        ({"customers": 9}, "customers must be at least 10"),
        # Fewer products than core categories.
        ({"products": 7}, "products must be at least 8"),
        # Nothing to generate.
        ({"interactions": 0}, "interactions must be positive"),
        # Far fewer interactions than the groups' behaviour needs.
        ({"interactions": 50}, "interactions=50 is too few"),
        # No room for history older than 100 days.
        ({"days": 90}, "days must be at least 120"),
        # numpy seeds are non-negative.
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
async def test_bad_config_is_refused_before_writing(
    sqlite_store: SqlStore, changes: dict[str, int], message: str
) -> None:
    """An impossible config raises InvalidInputError naming the field, and writes nothing."""
    config = replace(SMALL, **changes)
    async with sqlite_store.sessions() as session:
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            await _seed(session, config)
        assert await session.scalar(select(func.count()).select_from(Product)) == 0


async def test_naive_now_is_refused(sqlite_store: SqlStore) -> None:
    """`now` must be timezone-aware, like every time in the store."""
    async with sqlite_store.sessions() as session:
        with pytest.raises(InvalidInputError, match="timezone-aware"):
            await seed_demo_shop(
                session, SMALL, secret_key=TEST_SECRET, now=NOW.replace(tzinfo=None)
            )


async def test_non_empty_store_is_refused(sqlite_store: SqlStore) -> None:
    """Seeding on top of existing customers or products raises InvalidInputError."""
    async with sqlite_store.sessions.begin() as session:
        await _seed(session, SMALL)
    async with sqlite_store.sessions() as session:
        with pytest.raises(InvalidInputError, match="already holds customers"):
            await _seed(session, SMALL)


async def test_the_last_week_follows_the_true_purchase_probability(sqlite_store: SqlStore) -> None:
    """Each customer has a true probability of buying in the last week; lapsed customers
    and new visitors have 0; only customers with a chance buy there, each viewing the
    product earlier in the week; and the buyers' share matches the mean probability."""
    async with sqlite_store.sessions.begin() as session:
        report = await _seed(session, MEDIUM)
        customers = (
            await session.execute(
                select(
                    Customer.id, Customer.synthetic_group, Customer.synthetic_purchase_probability
                )
            )
        ).all()
        week = (
            await session.execute(
                select(Interaction.customer_id, Interaction.kind, Interaction.product_id).where(
                    Interaction.occurred_at >= NOW - timedelta(days=7)
                )
            )
        ).all()

    probability = {customer_id: p for customer_id, _, p in customers}
    assert len(probability) == report.customers
    assert all(p is not None and 0.0 <= p <= 1.0 for p in probability.values())
    for _, group, p in customers:
        if group in ("at_risk", "new_visitor"):
            assert p == 0.0, group
    buyers = {customer for customer, kind, _ in week if kind == "purchase"}
    assert buyers
    assert all(probability[customer] > 0 for customer in buyers)
    viewed = {(customer, product) for customer, kind, product in week if kind == "view"}
    bought = {(customer, product) for customer, kind, product in week if kind == "purchase"}
    assert bought <= viewed
    expected = sum(probability.values())
    # Binomial: the count of buyers stays within four standard deviations of its mean.
    spread = math.sqrt(sum(p * (1 - p) for p in probability.values()))
    assert abs(len(buyers) - expected) <= 4 * spread
