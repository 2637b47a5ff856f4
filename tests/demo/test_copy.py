"""Seeding through COPY on a real PostgreSQL writes what the portable executemany path
writes elsewhere: the same rows, so the same counts and the same behaviour-group mix."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.demo.generator import GROUP_SHARES, DemoShopConfig, seed_demo_shop
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.models import Customer, CustomerTag, Interaction, Product
from rasa_personalize.store.seeding import copies_rows, load_records, reserve_ids
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
SMALL = DemoShopConfig(customers=300, products=60, interactions=8_000, seed=3)
CHUNKED = replace(SMALL, interactions=3_000, chunk_customers=50)


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[SqlStore]:
    """A migrated, empty store on the session's PostgreSQL database."""
    store = await migrated_store(postgres_url)
    yield store
    await store.dispose()


async def _seed_and_read(store: SqlStore, config: DemoShopConfig) -> dict[str, Any]:
    """Seed, then read back the counts, the group mix and every row by natural keys."""
    async with store.sessions.begin() as session:
        report = await seed_demo_shop(session, config, secret_key=TEST_SECRET, now=NOW)
        copied = copies_rows(session)
    async with store.sessions() as session:
        return {
            "report": report,
            "copied": copied,
            "counts": {
                model.__tablename__: await session.scalar(select(func.count()).select_from(model))
                for model in (Product, Customer, Interaction, CustomerTag)
            },
            "groups": Counter((await session.scalars(select(Customer.synthetic_group))).all()),
            "interactions": await _interactions(session),
            # What the planner believes the table holds (PostgreSQL only).
            "planned_rows": (
                await session.scalar(
                    text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'interactions'")
                )
                if copied
                else None
            ),
        }


async def _interactions(session: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await session.execute(
        select(
            Interaction.event_id,
            Customer.customer_key,
            Product.sku,
            Interaction.kind,
            Interaction.occurred_at,
            Interaction.price,
            Interaction.value,
            Interaction.channel,
        )
        .join(Customer, Customer.id == Interaction.customer_id)
        .outerjoin(Product, Product.id == Interaction.product_id)
        .order_by(Interaction.event_id)
    )
    return [tuple(row) for row in rows]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "config",
    [
        # The in-memory generator: customers, interactions and tags go through COPY.
        SMALL,
        # The chunked generator: COPY with ids reserved from the sequences.
        CHUNKED,
    ],
    ids=["whole", "chunked"],
)
async def test_copy_writes_what_executemany_writes(
    postgres_store: SqlStore, sqlite_store: SqlStore, config: DemoShopConfig
) -> None:
    """COPY on PostgreSQL and executemany on SQLite: equal counts, group mix and rows;
    PostgreSQL's statistics are refreshed after the load."""
    copied = await _seed_and_read(postgres_store, config)
    inserted = await _seed_and_read(sqlite_store, config)

    assert copied["copied"] is True
    assert inserted["copied"] is False
    report = copied["report"]
    assert report == inserted["report"]
    assert (
        copied["counts"]
        == inserted["counts"]
        == {
            "products": config.products,
            "customers": config.customers,
            "interactions": report.interactions,
            "customer_tags": report.tags,
        }
    )
    expected = {name: round(share * config.customers) for name, share in GROUP_SHARES.items()}
    assert copied["groups"] == inserted["groups"] == expected
    assert copied["interactions"] == inserted["interactions"]
    # ANALYZE ran after the load: the planner knows the rows are there.
    assert copied["planned_rows"] == report.interactions


@pytest.mark.postgres
async def test_reserved_ids_are_never_handed_out_again(postgres_store: SqlStore) -> None:
    """Rows loaded with reserved ids, then an ordinary insert: it gets the next id."""
    async with postgres_store.sessions.begin() as session:
        first = await reserve_ids(session, "customers", 3)
        await load_records(
            session,
            "customers",
            ("id", "customer_key", "created_at", "loyalty_tier"),
            [(first + n, f"key-{n}", NOW, "none") for n in range(3)],
        )
        after = await session.scalar(
            insert(Customer)
            .values(customer_key="key-after", created_at=NOW, loyalty_tier="none")
            .returning(Customer.id)
        )
        ids = (await session.scalars(select(Customer.id).order_by(Customer.id))).all()

    assert ids == [first, first + 1, first + 2, first + 3]
    assert after == first + 3


@pytest.mark.parametrize(
    ("table", "columns", "message"),
    [
        # Only the tables the seeders fill.
        ("products", ("sku",), "cannot bulk load table 'products'"),
        # A column the table does not have.
        ("customer_tags", ("customer_id", "colour"), "has no column(s) colour"),
    ],
)
async def test_load_records_refuses_unknown_tables_and_columns(
    sqlite_store: SqlStore, table: str, columns: tuple[str, ...], message: str
) -> None:
    """A clear InvalidInputError before anything is written."""
    async with sqlite_store.sessions() as session:
        with pytest.raises(
            InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            await load_records(session, table, columns, [])
        with pytest.raises(InvalidInputError, match="reserve at least one id"):
            await reserve_ids(session, "customers", 0)
