"""Customer imports on SQLite and PostgreSQL: normalise, dedupe, merge, report, rerun."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from rasa_personalize.events.ingest import ingest_events
from rasa_personalize.events.profiles import parse_profile_update, write_profile
from rasa_personalize.identity import customer_key
from rasa_personalize.imports.contacts import BlindIndex
from rasa_personalize.imports.report import Merge, Rejection
from rasa_personalize.imports.source import ImportFileError
from rasa_personalize.segments.tag_rules import RULE_SOURCE, parse_tag_rules
from rasa_personalize.store.catalogue import record_interactions
from rasa_personalize.store.models import (
    Customer,
    CustomerTag,
    Interaction,
    PrecomputedRecommendations,
    SegmentAssignment,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product
from tests.imports.conftest import (
    MESSY_CUSTOMERS,
    aliases,
    import_file,
    stored_customers,
    table_contents,
    write,
)


def key(external_id: str) -> str:
    return customer_key(TEST_SECRET, external_id)


async def test_messy_file_is_normalised_deduplicated_and_reported(
    store: SqlStore, tmp_path: Path
) -> None:
    """Counts, merges and rejections of the messy file, and what ends up stored."""
    report = await import_file(store, write(tmp_path, "c.csv", MESSY_CUSTOMERS))

    assert (report.read, report.inserted, report.updated, report.unchanged) == (8, 3, 0, 0)
    assert (report.merged_exact, report.merged_fuzzy, report.duplicates) == (1, 1, 1)
    assert report.rejections == (
        Rejection(6, "email", "is not a valid e-mail address"),
        Rejection(7, "age", "is not between 0 and 149"),
    )
    assert report.rejected == 2
    # c-003 has Bob's e-mail in capitals; c-004 is Anna with a typo in e-mail and phone.
    assert [(m.line, m.into_line, m.match) for m in report.merges] == [
        (4, 3, "exact"),
        (5, 2, "fuzzy"),
    ]
    customers = await stored_customers(store)
    by_key = {values.pop("key"): values for values in customers.values()}
    assert by_key == {
        key("c-001"): {
            "name": "Anna Müller", "email": "anna.mueller@example.com", "phone": "+4930901820",
            "age": 35, "gender": "female", "country": "DE", "city": "Berlin",
            # Gold from its own row; the earliest signup of the two Annas.
            "loyalty_tier": "gold", "created_at": "2024-02-01",
        },
        key("c-002"): {
            "name": "Bob Smith", "email": "bob@example.com", "phone": "+14155552671",
            "age": 41, "gender": "male", "country": "US", "city": "New York",
            "loyalty_tier": "silver", "created_at": "2024-03-04",  # 03/04 read month first
        },
        key("c-007"): {
            "name": "Eve Adams", "email": "eve@example.net", "phone": "+14155550199",
            "age": 29, "gender": "female", "country": "GB", "city": "London",
            "loyalty_tier": "platinum", "created_at": "2023-12-31",
        },
    }  # fmt: skip
    ids = {values["key"]: cid for cid, values in (await stored_customers(store)).items()}
    assert await aliases(store) == {
        key("c-003"): (ids[key("c-002")], "exact"),
        key("c-004"): (ids[key("c-001")], "fuzzy"),
    }


async def test_rerun_changes_nothing(store: SqlStore, tmp_path: Path) -> None:
    """The same file again: nothing inserted or merged, and every table as it was."""
    path = write(tmp_path, "c.csv", MESSY_CUSTOMERS)
    first = await import_file(store, path)
    before = await table_contents(store)

    again = await import_file(store, path)

    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert (again.merged_exact, again.merged_fuzzy, again.merges) == (0, 0, ())
    # Every row read is counted once: the rows merged by the first run are "merged before".
    assert again.read == (
        again.unchanged + again.already_merged + again.duplicates + again.rejected
    )
    assert again.already_merged == first.merged_exact + first.merged_fuzzy
    assert await table_contents(store) == before


async def test_dayfirst_reads_slashed_dates_day_first(store: SqlStore, tmp_path: Path) -> None:
    """--dayfirst turns Bob's 03/04/2024 into 3 April (min with c-003's 1 April: 1 April)."""
    await import_file(store, write(tmp_path, "c.csv", MESSY_CUSTOMERS), dayfirst=True)
    dates = {v["key"]: v["created_at"] for v in (await stored_customers(store)).values()}
    assert dates[key("c-002")] == "2024-04-01"


@pytest.mark.parametrize(
    "threshold",
    [
        0,  # fuzzy matching off
        99,  # on, but stricter than the Annas' similarity
    ],
)
async def test_fuzzy_threshold_off_or_strict_keeps_lookalikes_apart(
    store: SqlStore, tmp_path: Path, threshold: float
) -> None:
    """Without a fuzzy match the two Annas stay two customers; exact matches still merge."""
    report = await import_file(
        store, write(tmp_path, "c.csv", MESSY_CUSTOMERS), fuzzy_threshold=threshold
    )
    assert (report.inserted, report.merged_exact, report.merged_fuzzy) == (4, 1, 0)
    assert set(await aliases(store)) == {key("c-003")}


async def test_within_file_phone_duplicates_merge_exactly(store: SqlStore, tmp_path: Path) -> None:
    """Two ids with the same phone written differently are one customer."""
    path = write(
        tmp_path,
        "c.csv",
        "customer,name,phone\nx-1,Kim Lee,+1 (415) 555-0123\nx-2,K. Lee,415.555.0123\n",
    )
    report = await import_file(store, path)
    assert (report.inserted, report.merged_exact) == (1, 1)
    assert [m.into_line for m in report.merges] == [2]


async def test_contacts_are_encrypted_with_blind_indexes(store: SqlStore, tmp_path: Path) -> None:
    """No plaintext contact in any column; the indexes are the keyed hashes."""
    await import_file(store, write(tmp_path, "c.csv", MESSY_CUSTOMERS))
    async with store.sessions() as session:
        raw = (await session.execute(text("SELECT * FROM customers"))).all()
        indexes = (
            await session.execute(
                select(Customer.email_index, Customer.phone_index).where(
                    Customer.customer_key == key("c-007")
                )
            )
        ).one()
    dump = json.dumps([list(map(str, row)) for row in raw])
    for plaintext in ("eve@example.net", "Eve Adams", "+14155550199", "c-007", "Müller"):
        assert plaintext not in dump
    blind = BlindIndex(TEST_SECRET)
    assert tuple(indexes) == (blind("email", "eve@example.net"), blind("phone", "+14155550199"))


async def test_bad_header_writes_nothing(store: SqlStore, tmp_path: Path) -> None:
    """An unknown column is named with file and line 1, before any row is written."""
    path = write(tmp_path, "c.csv", "customer,name,favourite colour\nc-1,Ann,blue\n")
    with pytest.raises(ImportFileError) as error:
        await import_file(store, path)
    assert str(error.value).endswith(
        "c.csv: line 1: unknown column 'favourite colour' (known: age, city, country, "
        "created_at, customer, email, gender, loyalty_tier, name, phone)"
    )
    missing = write(tmp_path, "m.csv", "name,email\nAnn,ann@example.com\n")
    with pytest.raises(ImportFileError, match="line 1: missing column 'customer'"):
        await import_file(store, missing)
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)) == 0


async def test_rejections_name_line_and_field_never_personal_data(
    store: SqlStore, tmp_path: Path
) -> None:
    """Every rejected row is listed by line and field; the report quotes no cell."""
    path = write(
        tmp_path,
        "c.csv",
        "customer,name,email,phone,country,loyalty_tier,created_at\n"
        ",Nameless Person,,,,,\n"
        "r-2,Ann Ray,ann@@example.com,,,,\n"
        "r-3,Bo Ek,,+1 555,,,\n"
        "r-4,Cy Fu,,,Atlantis,,\n"
        "r-5,Di Go,,,,diamond,\n"
        "r-6,Ed Ha,,,,,2999-01-01\n"
        "r-7,Flo Ip\n",
    )
    report = await import_file(store, path)
    assert [(r.line, r.field) for r in report.rejections] == [
        (2, "customer"), (3, "email"), (4, "phone"), (5, "country"), (6, "loyalty_tier"),
        (7, "created_at"), (8, "row"),
    ]  # fmt: skip
    assert report.rejections[-1].reason == "has 2 cells, the header has 7"
    document = json.dumps(report.to_document())
    for personal in ("Nameless", "ann@@", "555", "Atlantis", "r-2", "Flo"):
        assert personal not in document
    assert report.inserted == 0


async def seed_history(store: SqlStore) -> None:
    """crm-9 imported with contacts; shop-77 known only from events, with tags and more."""
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        await add_product(session, "SKU-2", "socks", price=10.0)
        await ingest_events(
            session,
            [
                {"event_id": "e1", "customer": "crm-9", "product": "SKU-1", "kind": "view",
                 "timestamp": "2026-05-01T10:00:00Z"},
                {"event_id": "e2", "customer": "shop-77", "product": "SKU-2", "kind": "purchase",
                 "price": 10.0, "timestamp": "2026-05-02T10:00:00Z"},
                {"event_id": "e3", "customer": "shop-77", "product": "SKU-1", "kind": "cart",
                 "timestamp": "2026-05-03T10:00:00Z"},
            ],
            secret_key=TEST_SECRET,
            now=NOW,
        )  # fmt: skip
        ids = dict((await session.execute(select(Customer.customer_key, Customer.id))).all())
        crm, shop = ids[key("crm-9")], ids[key("shop-77")]
        session.add_all(
            [
                CustomerTag(customer_id=crm, tag="runner", source="rules", weight=2.0),
                CustomerTag(customer_id=shop, tag="runner", source="manual", weight=9.0),
                CustomerTag(customer_id=shop, tag="bargain_hunter", source="rules", weight=1.0),
                SegmentAssignment(customer_id=shop, segment="price_sensitive", method="kmeans",
                                  model_version="m1", score=0.5, assigned_at=NOW),
                PrecomputedRecommendations(customer_id=shop, items=[["SKU-1", 1.0]],
                                           model_version="m1", computed_at=NOW),
            ]
        )  # fmt: skip


async def test_store_duplicate_is_merged_keeping_its_history(
    store: SqlStore, tmp_path: Path
) -> None:
    """shop-77 (matched by e-mail) folds into the older crm-9 with its events and tags."""
    await seed_history(store)
    first = "customer,name,email,created_at\ncrm-9,Anna Müller,anna@example.com,2020-01-01\n"
    assert (await import_file(store, write(tmp_path, "a.csv", first))).updated == 1
    second = write(
        tmp_path, "b.csv", "customer,name,email\nshop-77,ANNA MUELLER,Anna@Example.com\n"
    )

    report = await import_file(store, second)

    assert (report.inserted, report.updated, report.merged_exact) == (0, 0, 1)
    assert report.merges == (Merge(2, None, "exact", 100),)  # into a stored customer
    async with store.sessions() as session:
        customers = (await session.execute(select(Customer.customer_key, Customer.id))).all()
        assert [k for k, _ in customers] == [key("crm-9")]
        survivor = customers[0][1]
        owners = await session.execute(select(Interaction.event_id, Interaction.customer_id))
        assert sorted(owners.all()) == [("e1", survivor), ("e2", survivor), ("e3", survivor)]
        tags = await session.execute(
            select(CustomerTag.tag, CustomerTag.source, CustomerTag.customer_id)
        )
        # The survivor's own "runner" wins; the duplicate's other tag moves over.
        assert sorted(tags.all()) == [
            ("bargain_hunter", "rules", survivor),
            ("runner", "rules", survivor),
        ]
        for derived in (SegmentAssignment, PrecomputedRecommendations):
            assert await session.scalar(select(func.count()).select_from(derived)) == 0
    assert await aliases(store) == {key("shop-77"): (survivor, "exact")}

    snapshot = await store.load_snapshot(key("shop-77"))
    assert snapshot is not None
    assert snapshot.customer_id == survivor
    assert snapshot.metrics.interaction_count == 3
    assert snapshot.metrics.purchase_count == 1

    before = await table_contents(store)
    assert (await import_file(store, second)).unchanged == 1
    assert await table_contents(store) == before


async def test_old_key_reaches_the_survivor_everywhere(store: SqlStore, tmp_path: Path) -> None:
    """Events, chat clicks and profile writes under a merged id land on the survivor."""
    await seed_history(store)
    await import_file(
        store,
        write(
            tmp_path,
            "a.csv",
            "customer,name,email,created_at\n"
            "crm-9,Anna Müller,anna@example.com,2020-01-01\n"
            "shop-77,Anna Mueller,anna@example.com,\n",
        ),
    )
    async with store.sessions.begin() as session:
        result = await ingest_events(
            session,
            [{"event_id": "e4", "customer": "shop-77", "product": "SKU-1", "kind": "view",
              "timestamp": "2026-05-04T10:00:00Z"}],
            secret_key=TEST_SECRET,
            now=NOW,
        )  # fmt: skip
        assert result.accepted == ["e4"]
        await record_interactions(
            session,
            key("shop-77"),
            [("chat-1", "SKU-2", "chat_click", None)],
            channel="web",
            occurred_at=NOW - timedelta(hours=1),
        )
        created = await write_profile(
            session, key("shop-77"), parse_profile_update({"loyalty_tier": "gold"})
        )
        assert created is False
    async with store.sessions() as session:
        customers = (await session.execute(select(Customer.id, Customer.loyalty_tier))).all()
        assert len(customers) == 1
        survivor, tier = customers[0]
        owners = await session.execute(select(Interaction.customer_id).distinct())
        assert owners.scalars().all() == [survivor]
    assert tier == "gold"
    snapshot = await store.load_snapshot(key("shop-77"))
    assert snapshot is not None
    assert snapshot.loyalty_tier == "gold"
    assert snapshot.metrics.interaction_count == 4  # e1-e4; chat clicks are not refreshed here


FIELD_RULES = parse_tag_rules(
    """
tags:
  - tag: vip
    when: {feature: loyalty_tier, gte: 2}
  - tag: over_forty
    when: {feature: age, gte: 40}
""",
    "tags.yml",
)


async def rule_tags(store: SqlStore) -> dict[str, set[str]]:
    """Rule tags by customer key."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(Customer.customer_key, CustomerTag.tag)
            .join(CustomerTag, CustomerTag.customer_id == Customer.id)
            .where(CustomerTag.source == RULE_SOURCE)
        )
        found: dict[str, set[str]] = {}
        for customer, tag in rows:
            found.setdefault(customer, set()).add(tag)
        return found


async def test_rule_tags_follow_the_imported_fields(store: SqlStore, tmp_path: Path) -> None:
    """Tier and age from the file tag customers; a later downgrade drops only that tag."""
    await import_file(store, write(tmp_path, "c.csv", MESSY_CUSTOMERS), tag_rules=FIELD_RULES)
    assert await rule_tags(store) == {
        key("c-001"): {"vip"},  # gold
        key("c-002"): {"over_forty"},  # 41
        key("c-007"): {"vip"},  # platinum
    }

    downgrade = write(tmp_path, "d.csv", "customer,tier\nc-001,silver\n")
    report = await import_file(store, downgrade, tag_rules=FIELD_RULES)

    assert report.updated == 1
    assert await rule_tags(store) == {key("c-002"): {"over_forty"}, key("c-007"): {"vip"}}
    before = await table_contents(store)
    assert (await import_file(store, downgrade, tag_rules=FIELD_RULES)).unchanged == 1
    assert await table_contents(store) == before


async def test_merge_survivor_is_tagged_by_the_history_it_received(
    store: SqlStore, tmp_path: Path
) -> None:
    """crm-9 gets `buyer` from the purchase of shop-77, which was merged into it."""
    await seed_history(store)
    rules = parse_tag_rules(
        "tags:\n  - tag: buyer\n    when: {count: {kind: purchase, at_least: 1}}\n", "tags.yml"
    )
    first = "customer,name,email,created_at\ncrm-9,Anna Müller,anna@example.com,2020-01-01\n"
    await import_file(store, write(tmp_path, "a.csv", first), tag_rules=rules)
    assert await rule_tags(store) == {}  # crm-9 only viewed

    second = "customer,name,email\nshop-77,ANNA MUELLER,Anna@Example.com\n"
    await import_file(store, write(tmp_path, "b.csv", second), tag_rules=rules)

    assert await rule_tags(store) == {key("crm-9"): {"buyer"}}
