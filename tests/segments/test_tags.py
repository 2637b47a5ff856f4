"""Applying tag rules to the store: add, remove, leave other sources alone (both backends)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.segments.tag_rules import load_tag_rules, parse_tag_rules
from rasa_personalize.segments.tags import apply_tag_rules, counted_kinds
from rasa_personalize.store.models import CustomerTag, Product
from rasa_personalize.store.profiles import fold_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import add_customer, add_interactions, add_product
from tests.shops import DAY, NOW, TinyShop, build_tiny_shop

DEMO_RULES = Path(__file__).resolve().parents[2] / "tags.yml"
RULES = parse_tag_rules(
    """
tags:
  - tag: interested_in_running
    when: {count: {kind: view, category: running, within_days: 30, at_least: 2}}
  - tag: premium
    weight: 0.9
    when: {feature: monetary, gte: 100}
  - tag: clicker
    when: {count: {kind: chat_click, at_least: 1}}
""",
    "rules.yml",
)


async def tags_of(session: AsyncSession, shop: TinyShop) -> dict[str, set[tuple[str, str]]]:
    """(tag, source) per customer name."""
    names = {customer_id: name for name, customer_id in shop.customers.items()}
    found: dict[str, set[tuple[str, str]]] = {name: set() for name in shop.customers}
    for customer_id, tag, source in await session.execute(
        select(CustomerTag.customer_id, CustomerTag.tag, CustomerTag.source)
    ):
        found[names[customer_id]].add((tag, source))
    return found


async def test_rules_tag_the_customers_who_qualify(store: SqlStore) -> None:
    """Count and feature rules tag exactly the customers that meet them."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        run = await apply_tag_rules(session, RULES, now=NOW)
        tags = await tags_of(session, shop)
        weight = await session.scalar(
            select(CustomerTag.weight).where(CustomerTag.tag == "premium")
        )
    # ana: 3 running views in 30 days, spent 180, clicked; cleo: 2 recent running views.
    assert tags == {
        "ana": {("interested_in_running", "rule"), ("premium", "rule"), ("clicker", "rule")},
        "ben": set(),
        "cleo": {("interested_in_running", "rule")},
    }
    assert [(o.tag, o.qualifying, o.tagged, o.removed) for o in run.outcomes] == [
        ("interested_in_running", 2, 2, 0),
        ("premium", 1, 1, 0),
        ("clicker", 1, 1, 0),
    ]
    assert weight == 0.9
    assert run.warnings == ()


async def test_tags_that_no_longer_hold_are_removed(store: SqlStore) -> None:
    """A month later the recent views are old: the interest tags go, the others stay."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        await apply_tag_rules(session, RULES, now=NOW)
        later = await apply_tag_rules(session, RULES, now=NOW + 28 * DAY)
        tags = await tags_of(session, shop)
    assert tags["ana"] == {("premium", "rule"), ("clicker", "rule")}
    assert tags["cleo"] == set()
    assert later.outcomes[0].removed == 2


async def test_tags_from_other_sources_are_left_alone(store: SqlStore) -> None:
    """A manual tag on someone who does not qualify stays; a seeded tag of the same name on
    someone who does is neither overwritten nor duplicated."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        session.add_all(
            [
                CustomerTag(customer_id=shop.customers["ben"], tag="premium", source="manual",
                            weight=0.3, updated_at=NOW - DAY),
                CustomerTag(customer_id=shop.customers["cleo"], tag="interested_in_running",
                            source="seed", weight=0.4, updated_at=NOW - DAY),
                CustomerTag(customer_id=shop.customers["cleo"], tag="vip", source="crm",
                            weight=1.0, updated_at=NOW - DAY),
            ]
        )  # fmt: skip
        await session.flush()
        await apply_tag_rules(session, RULES, now=NOW)
        await apply_tag_rules(session, RULES, now=NOW + 28 * DAY)
        tags = await tags_of(session, shop)
        seeded = await session.scalar(
            select(CustomerTag.weight).where(
                CustomerTag.customer_id == shop.customers["cleo"],
                CustomerTag.tag == "interested_in_running",
            )
        )
    assert tags["ben"] == {("premium", "manual")}
    assert tags["cleo"] == {("interested_in_running", "seed"), ("vip", "crm")}
    assert seeded == 0.4


async def test_rule_tags_of_a_deleted_rule_are_removed(sqlite_store: SqlStore) -> None:
    """Dropping a rule from the file drops the tags it gave, at the next run."""
    fewer = parse_tag_rules(
        "tags:\n  - tag: clicker\n    when: {count: {kind: chat_click, at_least: 1}}\n"
    )
    async with sqlite_store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        await apply_tag_rules(session, RULES, now=NOW)
        run = await apply_tag_rules(session, fewer, now=NOW)
        tags = await tags_of(session, shop)
    assert tags["ana"] == {("clicker", "rule")}
    assert tags["cleo"] == set()
    assert run.removed_orphans == 3  # ana's interest and premium tags, cleo's interest tag


async def test_only_the_given_customers_are_touched(sqlite_store: SqlStore) -> None:
    """Ingestion re-tags just the customers with new interactions."""
    async with sqlite_store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        run = await apply_tag_rules(session, RULES, [shop.customers["cleo"]], now=NOW)
        tags = await tags_of(session, shop)
        # Later, only ana is re-tagged: cleo's (now stale) tag stays until cleo is re-tagged.
        await apply_tag_rules(session, RULES, [shop.customers["ana"]], now=NOW + 28 * DAY)
        later = await tags_of(session, shop)
        nobody = await apply_tag_rules(session, RULES, [], now=NOW)
    assert tags == {"ana": set(), "ben": set(), "cleo": {("interested_in_running", "rule")}}
    assert run.tagged == 1
    assert later["cleo"] == {("interested_in_running", "rule")}
    assert later["ana"] == {("premium", "rule"), ("clicker", "rule")}
    assert nobody.outcomes == ()


async def test_a_category_missing_from_the_catalogue_is_a_warning(sqlite_store: SqlStore) -> None:
    """A misspelt category cannot be caught by the file alone: the run warns, with a hint."""
    rules = parse_tag_rules(
        "tags:\n  - tag: runner\n    when: {count: {kind: view, category: runing, at_least: 1}}\n",
        "tags.yml",
    )
    async with sqlite_store.sessions.begin() as session:
        await build_tiny_shop(session)
        run = await apply_tag_rules(session, rules, now=NOW)
    assert [str(w) for w in run.warnings] == [
        "tags.yml:2: tag 'runner': no category 'runing' in the catalogue "
        "(did you mean 'running'?); the rule cannot match"
    ]
    assert run.tagged == 0


async def test_the_demo_tag_rules_run_on_the_demo_shop(demo_store: SqlStore) -> None:
    """tags.yml against the seeded shop: interest tags from recent views, top spenders premium."""
    rules = load_tag_rules(DEMO_RULES)
    async with demo_store.sessions.begin() as session:
        seeded_runners = await session.scalar(
            select(func.count()).where(
                CustomerTag.tag == "interested_in_running", CustomerTag.source == "seed"
            )
        )
        run = await apply_tag_rules(session, rules, now=NOW)
        again = await apply_tag_rules(session, rules, now=NOW)
    outcomes = {outcome.tag: outcome for outcome in run.outcomes}
    assert run.warnings == ()
    # The generator seeded premium for the top 10 % of spenders (source "seed"): everyone
    # over 1500 is among them, so the rule qualifies them but adds no rows of its own.
    assert 100 <= outcomes["premium"].qualifying <= 200
    assert outcomes["premium"].tagged == 0
    # Nobody seeded bargain hunters: the rule tags them, mostly the 400 price-sensitive.
    assert outcomes["bargain_hunter"].tagged == outcomes["bargain_hunter"].qualifying >= 350
    # The seed's interest tags follow the same 3-views-in-30-days rule: the SQL finds
    # exactly the customers the generator tagged, so there is nothing left to add.
    assert outcomes["interested_in_running"].qualifying == seeded_runners > 0
    assert outcomes["interested_in_running"].tagged == 0
    assert again.removed == 0
    assert [o.tagged for o in again.outcomes] == [o.tagged for o in run.outcomes]


MIXED_RULES = parse_tag_rules(
    """
tags:
  - tag: runner
    when: {count: {kind: view, category: running, within_days: 30, at_least: 2}}
  - tag: hiker
    when: {count: {kind: view, category: outdoor, at_least: 3}}
  - tag: buyer
    weight: 0.5
    when: {count: {kind: purchase, at_least: 1}}
  - tag: recent_carts
    when: {count: {kind: cart, within_days: 10, at_least: 2}}
  - tag: clicker
    when: {count: {kind: chat_click, at_least: 1}}
  - tag: premium
    when: {feature: monetary, gte: 150}
""",
    "rules.yml",
)


async def rule_rows(session: AsyncSession) -> set[tuple[int, str, str, float]]:
    rows = await session.execute(
        select(CustomerTag.customer_id, CustomerTag.tag, CustomerTag.source, CustomerTag.weight)
    )
    return {tuple(row) for row in rows}  # type: ignore[misc]


async def four_products(session: AsyncSession) -> list[Product]:
    """Two running products, an outdoor and a kitchen one, at different prices."""
    return [
        await add_product(session, f"P-{n}", category, price=20.0 + 10 * n)
        for n, category in enumerate(("running", "outdoor", "kitchen", "running"))
    ]


async def test_runs_for_some_customers_tag_exactly_as_runs_for_everyone(store: SqlStore) -> None:
    """Ingestion's scoped runs (one aggregate pass for all count rules) give the same tags,
    weights and removals as the set-based run over everyone, and leave other sources be."""
    rng = random.Random(7)
    async with store.sessions.begin() as session:
        products = await four_products(session)
        customers = [await add_customer(session, f"mixed-{n}") for n in range(40)]
        for customer in customers:
            for _ in range(rng.randint(0, 6)):
                await add_interactions(
                    session, customer, rng.choice(products),
                    rng.choice(("view", "view", "cart", "purchase", "chat_click", "shown")),
                    rng.randint(1, 3), days_ago=rng.uniform(0.5, 60),
                )  # fmt: skip
        # Tags from elsewhere, some with a rule's name, and a stale rule tag.
        session.add_all(
            [
                CustomerTag(customer_id=customers[0].id, tag="runner", source="crm", weight=2.0),
                CustomerTag(customer_id=customers[1].id, tag="vip", source="manual", weight=1.0),
                CustomerTag(customer_id=customers[2].id, tag="buyer", source="rule", weight=0.1),
                CustomerTag(customer_id=customers[3].id, tag="retired", source="rule", weight=1.0),
            ]
        )  # fmt: skip
        await session.flush()
        ids = [customer.id for customer in customers]
        before = await rule_rows(session)

        everyone = await apply_tag_rules(session, MIXED_RULES, now=NOW)
        expected = await rule_rows(session)
        later = await apply_tag_rules(session, MIXED_RULES, now=NOW + 20 * DAY)
        expected_later = await rule_rows(session)

        await session.execute(delete(CustomerTag))
        session.add_all(
            [CustomerTag(customer_id=c, tag=t, source=s, weight=w) for c, t, s, w in before]
        )
        await session.flush()
        halves = [await apply_tag_rules(session, MIXED_RULES, part, now=NOW)
                  for part in (ids[:15], ids[15:])]  # fmt: skip
        scoped = await rule_rows(session)
        scoped_later = await apply_tag_rules(session, MIXED_RULES, ids, now=NOW + 20 * DAY)
        scoped_rows_later = await rule_rows(session)

    assert scoped == expected
    assert scoped_rows_later == expected_later
    assert expected != expected_later  # the windows moved: something was removed
    assert (customers[0].id, "runner", "crm", 2.0) in scoped  # never taken over
    assert (customers[2].id, "buyer", "rule", 0.1) not in scoped  # stale weight rewritten
    assert not any(tag == "retired" for _, tag, _, _ in scoped)  # no rule gives it any more
    assert everyone.removed_orphans == sum(h.removed_orphans for h in halves) == 1
    by_tag = {o.tag: o for o in everyone.outcomes}
    scoped_by_tag = {o.tag: o for o in halves[0].outcomes}
    for tag, outcome in {o.tag: o for o in halves[1].outcomes}.items():
        first = scoped_by_tag[tag]
        assert first.qualifying + outcome.qualifying == by_tag[tag].qualifying, tag
    assert {o.tag: o.removed for o in scoped_later.outcomes} == {
        o.tag: o.removed for o in later.outcomes
    }


async def test_count_rules_answered_from_running_totals_tag_as_the_interactions_do(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's refresh: the count rules' newest times kept in the running totals give
    the tags that counting the interactions gives, now and as the windows move on, and no
    interaction is counted in the store for them. A time exactly at a window's start
    counts, as in SQL."""
    rng = random.Random(11)
    async with store.sessions.begin() as session:
        products = await four_products(session)
        customers = [await add_customer(session, f"folded-{n}") for n in range(40)]
        for customer in customers:
            # Times on and beside the windows' starts (10 and 30 days).
            picks = {
                (rng.randrange(len(products)),
                 rng.choice(("view", "view", "cart", "purchase", "chat_click", "shown")),
                 rng.choice((0.5, 9.0, 10.0, 29.0, 30.0, 45.0)))
                for _ in range(rng.randint(0, 6))
            }  # fmt: skip
            for product, kind, days_ago in sorted(picks):
                await add_interactions(
                    session, customer, products[product], kind, rng.randint(1, 3),
                    days_ago=days_ago,
                )  # fmt: skip
        ids = [customer.id for customer in customers]
        expected = {}
        for moment in (NOW, NOW + 1 * DAY, NOW + 20 * DAY):
            await apply_tag_rules(session, MIXED_RULES, ids, now=moment)
            expected[moment] = await rule_rows(session)
        await session.execute(delete(CustomerTag))
        counted = counted_kinds(MIXED_RULES)
        folded = await fold_profile_metrics(session, ids, now=NOW, counted=counted)

        async def no_counting(*args: object, **kwargs: object) -> None:
            raise AssertionError("a count rule was counted in the store")

        monkeypatch.setattr("rasa_personalize.segments.tags.count_holders", no_counting)
        found = {}
        for moment in expected:
            await apply_tag_rules(session, MIXED_RULES, ids, now=moment, totals=folded.totals)
            found[moment] = await rule_rows(session)

    assert [(c.kind, c.category, c.keep) for c in counted] == [
        ("cart", None, 2), ("chat_click", None, 1), ("purchase", None, 1),
        ("view", "outdoor", 3), ("view", "running", 2),
    ]  # fmt: skip
    assert found == expected
    assert expected[NOW] != expected[NOW + 1 * DAY] != expected[NOW + 20 * DAY]


async def test_a_count_rule_beyond_what_totals_keep_is_counted_in_the_store(
    sqlite_store: SqlStore,
) -> None:
    rules = parse_tag_rules(
        "tags:\n  - tag: fan\n    when: {count: {kind: view, at_least: 21}}\n", "rules.yml"
    )
    assert counted_kinds(rules) == ()
    async with sqlite_store.sessions.begin() as session:
        product = await add_product(session, "P-1", "running")
        fan, other = await add_customer(session, "fan"), await add_customer(session, "other")
        await add_interactions(session, fan, product, "view", 21)
        await add_interactions(session, other, product, "view", 20)
        folded = await fold_profile_metrics(session, [fan.id, other.id], now=NOW)
        await apply_tag_rules(session, rules, [fan.id, other.id], now=NOW, totals=folded.totals)
        assert {row[:2] for row in await rule_rows(session)} == {(fan.id, "fan")}
