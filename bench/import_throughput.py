"""Import throughput: `personalize import customers|interactions` vs plain executemany.

Writes a messy customers CSV (with about 6% duplicates: the same e-mail in other case,
the same phone in another format, and fuzzy look-alikes with typos) and an interactions
CSV for them, then times on a fresh store:

- customers: the import (normalise, blind-index and fuzzy dedupe, encrypt, merge) and
  its rerun, against a baseline that inserts the same number of customer rows with one
  plain ``executemany`` (keys precomputed; no normalisation, no dedupe, no encryption);
- interactions: the import (normalise, validate, ingest in chunks of 1,000 with metrics
  refresh) and its rerun, against a baseline that inserts the same rows, ids resolved,
  with one ``executemany`` per chunk of 1,000.

Both imports re-apply the tag rules of ``--tags`` (the demo's ``tags.yml`` by default), as
the CLI does with ``PERSONALIZE_TAGS_PATH``.

Prints seconds, rows/s, the median and p99 time per chunk of 1,000 interactions, and the
ratio to the baseline. Never asserts.

    python bench/import_throughput.py [--customers 20000] [--interactions 100000]
                                      [--rounds 1] [--database-url postgresql://...]
                                      [--tags tags.yml]

PostgreSQL: ``--database-url`` names a server; the bench creates a scratch database on
it and drops it at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from harness import add_database_url_option, percentile, run_on_scratch, tag_rules_or_exit
from rasa_personalize.identity import customer_key
from rasa_personalize.imports.contacts import ContactCipher
from rasa_personalize.imports.customers import CustomerImportOptions, import_customers
from rasa_personalize.imports.interactions import InteractionImportOptions, import_interactions
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.sql_store import SqlStore

SECRET = "bench-secret-key-0123456789abcdef"
CIPHER = ContactCipher({"bench": bytes(range(32))}, "bench")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
FIRST = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Eva",
    "Felix",
    "Greta",
    "Hugo",
    "Ida",
    "Jonas",
    "Klara",
    "Lukas",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sven",
    "Tina",
    "Umut",
)
LAST = (
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
)
KINDS = ("view", "view", "view", "search", "cart", "purchase", "chat_click")


def typo(text_: str, rng: random.Random) -> str:
    """One swapped pair of neighbouring letters."""
    i = rng.randrange(1, len(text_) - 2)
    return text_[:i] + text_[i + 1] + text_[i] + text_[i + 2 :]


def customer_rows(count: int, seed: int) -> list[list[str]]:
    """Customers, about 2% exact and 4% fuzzy duplicates of earlier ones, messily written."""
    rng = random.Random(seed)
    rows: list[list[str]] = []
    people: list[tuple[str, str, str]] = []
    for n in range(count):
        roll = rng.random()
        if people and roll < 0.02:  # the same e-mail, other case and spacing
            name, email, phone = rng.choice(people)
            row = [f"dup-{n}", name.upper(), f"  {email.upper()} ", "", "", "", "", "", "", ""]
        elif people and roll < 0.06:  # a look-alike: typo in the name and the e-mail
            name, email, phone = rng.choice(people)
            local, domain = email.split("@")
            row = [f"fz-{n}", typo(name, rng), f"{typo(local, rng)}@{domain}", "", "", "",
                   "", "", "", ""]  # fmt: skip
        else:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            # A random suffix, as real addresses have: a running number would make
            # namesakes' addresses near-identical and (rightly) fuzzy-match them.
            local = name.lower().replace(" ", ".").replace("ü", "ue")
            email = f"{local}{rng.randrange(10**6)}@example.com"
            phone = f"+1 415 {rng.randrange(200, 999)} {rng.randrange(1000, 9999)}"
            people.append((name, email, phone))
            signup = START - timedelta(days=rng.randrange(1, 2000))
            row = [
                f"c-{n}", name, email, phone, str(rng.randrange(18, 80)),
                rng.choice(("F", "m", "female", "Male", "")),
                rng.choice(("de", "US", "Germany")), rng.choice(("berlin", "NEW YORK", "Paris")),
                rng.choice(("gold", "Silver", "none", "")), signup.strftime("%d.%m.%Y"),
            ]  # fmt: skip
        rows.append(row)
    return rows


def write_customers(path: Path, rows: list[list[str]]) -> None:
    header = "Customer ID;Name;E-Mail;Phone;Age;Gender;Country;City;Tier;Signup Date"
    path.write_text(header + "\n" + "\n".join(";".join(r) for r in rows) + "\n", "utf-8")


def interaction_rows(count: int, customers: list[str], products: int, seed: int) -> list[str]:
    """Events without ids for half of them (ids generated from content), messy kinds."""
    rng = random.Random(seed)
    lines = []
    for n in range(count):
        kind = rng.choice(KINDS)
        moment = START + timedelta(seconds=n * 60)
        event_id = f"ev-{n}" if n % 2 else ""
        sku = "" if kind == "search" else f"SKU-{rng.randrange(products):04d}"
        category = "Running Shoes" if kind == "search" else ""
        price = "19,90" if kind == "purchase" else ""
        kind = {"cart": "add_to_cart", "view": "Page View"}.get(kind, kind)
        lines.append(f"{event_id},{rng.choice(customers)},{sku},{kind},"
                     f"{moment.isoformat()},web,mobile,{category},,1,\"{price}\"")  # fmt: skip
    return lines


def write_interactions(path: Path, lines: list[str]) -> None:
    header = "event_id,customer,product,kind,timestamp,channel,device,category,value,quantity,price"
    path.write_text(header + "\n" + "\n".join(lines) + "\n", "utf-8")


async def open_store(database_url: str) -> SqlStore:
    """The store with the schema at head, emptied of what an earlier round left."""
    store = SqlStore(database_url, StoreTimeouts(connect_s=10.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
        if (await connection.execute(text("SELECT count(*) FROM products"))).scalar():
            raise SystemExit("the bench needs an empty store: use a scratch database")
    return store


async def empty(store: SqlStore) -> None:
    async with store.engine.begin() as connection:
        for table in ("customer_tags", "customer_profiles", "interactions", "customer_aliases",
                      "customers", "products"):  # fmt: skip
            await connection.execute(text(f"DELETE FROM {table}"))  # fixed table names


async def seed_products(store: SqlStore, products: int) -> None:
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Product),
            [{"sku": f"SKU-{n:04d}", "title": f"P{n}", "description": "", "category": "shoes",
              "brand": None, "price": 25.0, "in_stock": True, "attributes": {}}
             for n in range(products)],
        )  # fmt: skip


async def timed_customers(store: SqlStore, path: Path, rules: TagRules | None) -> tuple[float, Any]:
    started = time.perf_counter()
    async with store.sessions.begin() as session:
        report = await import_customers(
            session, path, secret_key=SECRET, cipher=CIPHER,
            options=CustomerImportOptions(fuzzy_threshold=90), now=NOW, tag_rules=rules,
        )  # fmt: skip
    return time.perf_counter() - started, report


async def timed_interactions(
    store: SqlStore, path: Path, rules: TagRules | None
) -> tuple[float, Any, list[float]]:
    marks: list[float] = []
    started = time.perf_counter()
    report = await import_interactions(
        store.sessions, path, secret_key=SECRET, options=InteractionImportOptions(), now=NOW,
        progress=lambda stage, done, total: marks.append(time.perf_counter()), tag_rules=rules,
    )  # fmt: skip
    chunks = [(b - a) * 1000 for a, b in zip([started, *marks], marks, strict=False)]
    return time.perf_counter() - started, report, chunks[:-1] or chunks


async def baseline_customers(store: SqlStore, rows: list[list[str]]) -> float:
    started = time.perf_counter()
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Customer),
            [{"customer_key": customer_key(SECRET, r[0]), "created_at": START,
              "loyalty_tier": "none"} for r in rows],
        )  # fmt: skip
    return time.perf_counter() - started


async def baseline_interactions(store: SqlStore, lines: list[str]) -> float:
    async with store.sessions() as session:
        keys = dict((await session.execute(select(Customer.customer_key, Customer.id))).all())
        skus = dict((await session.execute(select(Product.sku, Product.id))).all())
    rows = []
    for n, line in enumerate(lines):
        cells = line.split(",")
        rows.append({
            "event_id": f"base-{n}", "customer_id": keys[customer_key(SECRET, cells[1])],
            "product_id": skus.get(cells[2]), "kind": "view", "value": None, "quantity": 1,
            "price": None, "channel": "web", "device": "mobile",
            "occurred_at": datetime.fromisoformat(cells[4]),
        })  # fmt: skip
    started = time.perf_counter()
    for start in range(0, len(rows), 1_000):
        async with store.sessions.begin() as session:
            await session.execute(insert(Interaction), rows[start : start + 1_000])
    return time.perf_counter() - started


async def run(
    args: argparse.Namespace, database_url: str, workdir: Path, rules: TagRules | None
) -> None:
    store = await open_store(database_url)
    rows = customer_rows(args.customers, seed=7)
    customers_csv = workdir / "customers.csv"
    write_customers(customers_csv, rows)
    ids = [r[0] for r in rows]
    lines = interaction_rows(args.interactions, ids, args.products, seed=8)
    interactions_csv = workdir / "interactions.csv"
    write_interactions(interactions_csv, lines)
    figures: dict[str, list[float]] = {name: [] for name in (
        "customers", "customers_rerun", "customers_base", "interactions", "interactions_rerun",
        "interactions_base")}  # fmt: skip
    chunk_ms: list[float] = []
    report_c = report_i = None
    try:
        for _ in range(args.rounds):
            await empty(store)
            await seed_products(store, args.products)
            seconds, report_c = await timed_customers(store, customers_csv, rules)
            figures["customers"].append(seconds)
            figures["customers_rerun"].append(
                (await timed_customers(store, customers_csv, rules))[0]
            )
            seconds, report_i, chunks = await timed_interactions(store, interactions_csv, rules)
            figures["interactions"].append(seconds)
            chunk_ms += chunks
            figures["interactions_rerun"].append(
                (await timed_interactions(store, interactions_csv, rules))[0]
            )
            # Baselines on the same store: fresh customer rows, then the same events.
            await empty(store)
            await seed_products(store, args.products)
            figures["customers_base"].append(await baseline_customers(store, rows))
            figures["interactions_base"].append(await baseline_interactions(store, lines))
    finally:
        await store.dispose()
    assert report_c is not None
    assert report_i is not None
    median = {name: statistics.median(values) for name, values in figures.items()}
    print(
        f"store: {database_url.split('://', 1)[0]}, rounds: {args.rounds} (medians), "
        f"tag rules: {args.tags or 'none'}"
    )
    print(
        f"customers: {args.customers:,} rows -> {report_c.inserted:,} inserted, "
        f"{report_c.merged_exact:,} exact + {report_c.merged_fuzzy:,} fuzzy merges, "
        f"{report_c.rejected:,} rejected"
    )
    print(
        f"  import {median['customers']:.2f} s "
        f"({args.customers / median['customers']:,.0f} rows/s); "
        f"rerun {median['customers_rerun']:.2f} s; baseline executemany "
        f"{median['customers_base']:.2f} s; import / baseline "
        f"{median['customers'] / median['customers_base']:.1f}x"
    )  # fmt: skip
    print(
        f"interactions: {args.interactions:,} rows -> {report_i.inserted:,} inserted, "
        f"{report_i.duplicates:,} duplicates, {report_i.rejected:,} rejected"
    )
    print(
        f"  import {median['interactions']:.2f} s "
        f"({args.interactions / median['interactions']:,.0f} rows/s); per chunk of 1,000: "
        f"median {statistics.median(chunk_ms):.0f} ms, p99 {percentile(chunk_ms, 99):.0f} ms; "
        f"rerun {median['interactions_rerun']:.2f} s; baseline executemany "
        f"{median['interactions_base']:.2f} s; import / baseline "
        f"{median['interactions'] / median['interactions_base']:.1f}x"
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    add_database_url_option(parser)
    parser.add_argument(
        "--tags",
        default=str(Path(__file__).resolve().parents[1] / "tags.yml"),
        help="tag rules both imports re-apply, as the CLI does (default: the demo's tags.yml; "
        "'' for none)",
    )
    args = parser.parse_args()
    rules = tag_rules_or_exit(args.tags) if args.tags else None
    with tempfile.TemporaryDirectory() as workdir:  # the CSV files
        run_on_scratch(
            args.database_url, lambda database_url: run(args, database_url, Path(workdir), rules)
        )


if __name__ == "__main__":
    main()
