"""The export document: every part of one customer's data, interactions in batches,
aliases followed, contacts decrypted or explained, and every export audited."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from rasa_personalize.identity import customer_key
from rasa_personalize.imports.contacts import ContactCipher
from rasa_personalize.privacy.audit import Actor
from rasa_personalize.privacy.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    CustomerNotFoundError,
    export_chunks,
    export_document,
)
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import (
    AuditEntry,
    ConsentChange,
    ConsentState,
    CustomerAlias,
    CustomerProfile,
    ExperimentExposure,
    Interaction,
    OfferExposure,
    PrecomputedRecommendations,
    PropensityScore,
    SegmentAssignment,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_product

RAW_ID = "jane.doe@example.com"
OLD_ID = "crm-0042"
OTHER_ID = "someone.else@example.com"
KEY = customer_key(TEST_SECRET, RAW_ID)
OLD_KEY = customer_key(TEST_SECRET, OLD_ID)
CIPHER = ContactCipher({"k1": bytes(range(32))}, "k1")
EXPORTED_AT = NOW + timedelta(days=1)


def at(hours: float) -> str:
    """NOW - hours, as the document writes it."""
    return (NOW - timedelta(hours=hours)).isoformat()


async def seed_jane(store: SqlStore, *, with_contacts: bool = True) -> None:
    """Jane with one of everything, plus a customer merged into her, and a stranger."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=100.0)
        await add_product(session, "SKU-2", "socks", price=5.0)
        jane = await add_customer(
            session, RAW_ID, tier="gold", tags=("premium",), segment="loyal", age=41, city="Berlin"
        )
        if with_contacts:
            jane.name_encrypted = CIPHER.encrypt("name", "Jane Doe")
            jane.email_encrypted = CIPHER.encrypt("email", RAW_ID)
        stranger = await add_customer(session, OTHER_ID)
        session.add_all(
            [
                CustomerProfile(
                    customer_id=jane.id,
                    attributes={"newsletter": True},
                    metrics={"purchase_count": 1},
                    version=3,
                    updated_at=NOW,
                ),
                SegmentAssignment(
                    customer_id=jane.id,
                    segment="cluster_2",
                    method="rfm",
                    model_version="rfm-1",
                    score=None,
                    assigned_at=NOW - timedelta(days=2),
                ),
                PrecomputedRecommendations(
                    customer_id=jane.id,
                    items=[["SKU-2", 0.75], ["SKU-1", 0.5]],
                    model_version="als-9",
                    computed_at=NOW,
                ),
                PropensityScore(
                    customer_id=jane.id,
                    target="purchase_7d",
                    score=0.31,
                    model_version="p-7",
                    scored_at=NOW,
                ),
                # The stranger's score stays out of Jane's export.
                PropensityScore(
                    customer_id=stranger.id,
                    target="purchase_7d",
                    score=0.9,
                    model_version="p-7",
                    scored_at=NOW,
                ),
                CustomerAlias(alias_key=OLD_KEY, customer_id=jane.id, match="exact", merged_at=NOW),
                # Shown an arm under her own key, and another under the merged one.
                ExperimentExposure(
                    experiment="bigger_discount", customer_key=KEY, arm="twenty", exposed_at=NOW
                ),
                ExperimentExposure(
                    experiment="greeting_words",
                    customer_key=OLD_KEY,
                    arm="control",
                    exposed_at=NOW - timedelta(days=4),
                ),
                # Offers shown under her own key, and one under the merged key.
                OfferExposure(
                    customer_key=KEY,
                    offer="discount_10",
                    shown_on=NOW.date(),
                    segment="at_risk",
                    shown_at=NOW,
                ),
                OfferExposure(
                    customer_key=OLD_KEY,
                    offer="bundle",
                    shown_on=(NOW - timedelta(days=2)).date(),
                    segment="frequent_buyer",
                    shown_at=NOW - timedelta(days=2),
                ),
                # The stranger's offer stays out of Jane's export.
                OfferExposure(
                    customer_key=customer_key(TEST_SECRET, OTHER_ID),
                    offer="bundle",
                    shown_on=NOW.date(),
                    segment="browser",
                    shown_at=NOW,
                ),
                ConsentState(
                    customer_key=KEY,
                    purpose="personalization",
                    granted=True,
                    source="chat",
                    policy_version="v2",
                    updated_at=NOW,
                ),
                ConsentChange(
                    customer_key=KEY,
                    purpose="personalization",
                    decision="granted",
                    source="chat",
                    policy_version="v2",
                    recorded_at=NOW,
                ),
                # Answered under the merged customer's key, before the merge.
                ConsentChange(
                    customer_key=OLD_KEY,
                    purpose="marketing",
                    decision="denied",
                    source="import",
                    policy_version=None,
                    recorded_at=NOW - timedelta(days=3),
                ),
            ]
        )
        # Seven interactions: two in the same instant (the batch boundary must not skip
        # or repeat either), one product-less, inserted out of time order.
        rows: list[dict[str, Any]] = [
            {"hours": 5, "kind": "view", "product_id": shoes.id},
            {"hours": 1, "kind": "purchase", "product_id": shoes.id, "price": 90.0},
            {"hours": 4, "kind": "cart", "product_id": shoes.id, "quantity": 2},
            {"hours": 3, "kind": "view", "product_id": shoes.id, "device": "mobile"},
            {"hours": 3, "kind": "view", "product_id": shoes.id, "device": "tablet"},
            {"hours": 2, "kind": "category_asked", "category": "socks", "channel": "chat"},
            {"hours": 0.5, "kind": "rating", "product_id": shoes.id, "value": 4.0},
        ]
        for n, row in enumerate(rows):
            session.add(
                Interaction(
                    event_id=f"jane-{n}",
                    customer_id=jane.id,
                    product_id=row.get("product_id"),
                    kind=row["kind"],
                    value=row.get("value"),
                    quantity=row.get("quantity", 1),
                    price=row.get("price"),
                    channel=row.get("channel", "web"),
                    device=row.get("device", "desktop"),
                    location="Berlin" if n == 0 else None,
                    category=row.get("category"),
                    occurred_at=NOW - timedelta(hours=row["hours"]),
                )
            )
        session.add(
            Interaction(
                event_id="stranger-0",
                customer_id=stranger.id,
                product_id=shoes.id,
                kind="view",
                occurred_at=NOW,
            )
        )


async def export(store: SqlStore, key: str = KEY, **options: Any) -> dict[str, Any]:
    options.setdefault("cipher", CIPHER)
    options.setdefault("actor", Actor.cli())
    return await export_document(store.sessions, key, now=EXPORTED_AT, **options)


async def test_document_holds_everything_about_the_customer(store: SqlStore) -> None:
    """Every part, with its values; nothing of the other customer."""
    await seed_jane(store)
    document = await export(store)
    assert list(document) == [
        "format",
        "version",
        "exported_at",
        "customer",
        "profile",
        "contacts",
        "consent",
        "tags",
        "segments",
        "recommendations",
        "aliases",
        "experiments",
        "propensity",
        "offers",
        "interaction_count",
        "interactions",
    ]
    assert (document["format"], document["version"]) == (EXPORT_FORMAT, EXPORT_VERSION)
    assert document["exported_at"] == EXPORTED_AT.isoformat()
    assert document["customer"] == {
        "customer_key": KEY,
        "created_at": (NOW - timedelta(days=365)).isoformat(),
    }
    assert document["profile"] == {
        "loyalty_tier": "gold",
        "demographics": {"age": 41, "gender": None, "country": None, "city": "Berlin"},
        "attributes": {"newsletter": True},
        "metrics": {"purchase_count": 1},
        "profile_version": 3,
        "updated_at": NOW.isoformat(),
    }
    assert document["contacts"] == {
        "status": "decrypted",
        "name": "Jane Doe",
        "email": RAW_ID,
        "phone": None,
        "problems": [],
    }
    assert document["consent"] == [
        {
            "customer_key": KEY,
            "states": [
                {
                    "purpose": "personalization",
                    "granted": True,
                    "source": "chat",
                    "policy_version": "v2",
                    "updated_at": NOW.isoformat(),
                }
            ],
            "history": [
                {
                    "purpose": "personalization",
                    "decision": "granted",
                    "source": "chat",
                    "policy_version": "v2",
                    "recorded_at": NOW.isoformat(),
                }
            ],
        },
        {
            "customer_key": OLD_KEY,
            "states": [],
            "history": [
                {
                    "purpose": "marketing",
                    "decision": "denied",
                    "source": "import",
                    "policy_version": None,
                    "recorded_at": (NOW - timedelta(days=3)).isoformat(),
                }
            ],
        },
    ]
    [tag] = document["tags"]
    assert (tag["tag"], tag["source"], tag["weight"]) == ("premium", "test", 1.0)
    assert [(s["segment"], s["method"], s["model_version"], s["score"]) for s in
            document["segments"]] == [("cluster_2", "rfm", "rfm-1", None),
                                      ("loyal", "kmeans", "test-1", 0.9)]  # fmt: skip
    assert document["recommendations"] == {
        "model_version": "als-9",
        "computed_at": NOW.isoformat(),
        "items": [{"sku": "SKU-2", "score": 0.75}, {"sku": "SKU-1", "score": 0.5}],
    }
    assert document["aliases"] == [
        {"customer_key": OLD_KEY, "match": "exact", "merged_at": NOW.isoformat()}
    ]
    assert document["propensity"] == [
        {
            "target": "purchase_7d",
            "score": 0.31,
            "model_version": "p-7",
            "scored_at": NOW.isoformat(),
        }
    ]
    assert document["experiments"] == [
        {
            "experiment": "greeting_words",
            "arm": "control",
            "customer_key": OLD_KEY,
            "exposed_at": (NOW - timedelta(days=4)).isoformat(),
        },
        {
            "experiment": "bigger_discount",
            "arm": "twenty",
            "customer_key": KEY,
            "exposed_at": NOW.isoformat(),
        },
    ]
    assert document["offers"] == [
        {
            "offer": "bundle",
            "segment": "frequent_buyer",
            "customer_key": OLD_KEY,
            "shown_at": (NOW - timedelta(days=2)).isoformat(),
        },
        {
            "offer": "discount_10",
            "segment": "at_risk",
            "customer_key": KEY,
            "shown_at": NOW.isoformat(),
        },
    ]
    assert document["interaction_count"] == 7
    interactions = document["interactions"]
    assert [(i["kind"], i["occurred_at"]) for i in interactions] == [
        ("view", at(5)),
        ("cart", at(4)),
        ("view", at(3)),
        ("view", at(3)),
        ("category_asked", at(2)),
        ("purchase", at(1)),
        ("rating", at(0.5)),
    ]
    assert interactions[0] == {
        "sku": "SKU-1",
        "kind": "view",
        "value": None,
        "quantity": 1,
        "price": None,
        "occurred_at": at(5),
        "channel": "web",
        "device": "desktop",
        "location": "Berlin",
        "category": None,
    }
    assert interactions[1]["quantity"] == 2
    assert sorted(i["device"] for i in interactions[2:4]) == ["mobile", "tablet"]
    assert (interactions[4]["sku"], interactions[4]["category"], interactions[4]["channel"]) == (
        None,
        "socks",
        "chat",
    )
    assert interactions[5]["price"] == 90.0
    assert interactions[6]["value"] == 4.0


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 1_000])
async def test_batches_change_nothing(sqlite_store: SqlStore, batch_size: int) -> None:
    """Any batch size gives the same document, as one valid JSON text."""
    await seed_jane(sqlite_store)
    whole = await export(sqlite_store)
    pieces = [
        piece
        async for piece in export_chunks(
            sqlite_store.sessions,
            KEY,
            cipher=CIPHER,
            actor=Actor.cli(),
            now=EXPORTED_AT,
            batch_size=batch_size,
        )
    ]
    # The head, one piece per batch (an exact multiple ends with an empty batch read,
    # which yields nothing), then the closing.
    assert len(pieces) == 2 + -(-7 // batch_size)
    assert json.loads("".join(pieces)) == whole


async def test_an_alias_key_reaches_the_merged_customer(store: SqlStore) -> None:
    """The old id of a merged customer exports the survivor, audited under the survivor's
    key."""
    await seed_jane(store)
    document = await export(store, OLD_KEY)
    assert document["customer"]["customer_key"] == KEY
    assert document["interaction_count"] == 7
    async with store.sessions() as session:
        [entry] = await list_audit_entries(session)
    assert (entry.action, entry.outcome, entry.customer_key) == ("privacy.export", "ok", KEY)


async def test_unknown_customer_is_not_found_and_audited(store: SqlStore) -> None:
    """No document; the error does not repeat the id; the audit row says not_found."""
    await seed_jane(store)
    unknown = customer_key(TEST_SECRET, "nobody@example.com")
    with pytest.raises(CustomerNotFoundError) as raised:
        await export(store, unknown)
    assert "nobody" not in str(raised.value)
    async with store.sessions() as session:
        [entry] = await list_audit_entries(session)
    assert (entry.actor, entry.action, entry.outcome, entry.customer_key) == (
        "cli",
        "privacy.export",
        "not_found",
        unknown,
    )
    assert entry.detail == {}


async def test_no_raw_id_in_the_audit_table(store: SqlStore) -> None:
    """After exports found and not found, by the CLI and the API, no column of any audit
    row holds a raw customer id or a contact: only keys."""
    await seed_jane(store)
    await export(store)
    await export(store, OLD_KEY, actor=Actor.api(5, "support desk"))
    with pytest.raises(CustomerNotFoundError):
        await export(store, customer_key(TEST_SECRET, OTHER_ID + ".unknown"))
    async with store.sessions() as session:
        rows = (await session.scalars(select(AuditEntry))).all()
    assert len(rows) == 3
    dumped = json.dumps(
        [
            [row.actor, row.api_key_id, row.api_key_label, row.action, row.customer_key,
             row.outcome, row.detail, row.occurred_at.isoformat()]
            for row in rows
        ]
    )  # fmt: skip
    for private in (RAW_ID, OLD_ID, OTHER_ID, "jane", "Jane Doe", "crm-"):
        assert private not in dumped
    assert {row.customer_key for row in rows} == {
        KEY,
        customer_key(TEST_SECRET, OTHER_ID + ".unknown"),
    }
    ok = [row for row in rows if row.outcome == "ok"]
    assert [row.detail for row in ok] == [
        {"interactions": 7, "aliases": 1, "contacts": "decrypted"}
    ] * 2
    assert [(row.actor, row.api_key_id, row.api_key_label) for row in ok] == [
        ("cli", None, None),
        ("api", 5, "support desk"),
    ]


async def test_contacts_under_an_unknown_key_are_explained(sqlite_store: SqlStore) -> None:
    """A key that does not open the contacts: the document says which fields and which key
    id, and carries no ciphertext or plaintext."""
    await seed_jane(sqlite_store)
    other = ContactCipher({"k2": bytes(range(1, 33))}, "k2")
    contacts = (await export(sqlite_store, cipher=other))["contacts"]
    assert (contacts["status"], contacts["name"], contacts["email"]) == (
        "not_decrypted",
        None,
        None,
    )
    assert len(contacts["problems"]) == 2
    assert all("'k1'" in problem and "not configured" in problem for problem in
               contacts["problems"])  # fmt: skip
    assert RAW_ID not in json.dumps(contacts)


async def test_contacts_without_a_cipher_are_explained(sqlite_store: SqlStore) -> None:
    """No cipher at all: the document says no contact key is configured."""
    await seed_jane(sqlite_store)
    contacts = (await export(sqlite_store, cipher=None))["contacts"]
    assert contacts["status"] == "not_decrypted"
    assert [p.split(":")[0] for p in contacts["problems"]] == ["name", "email"]
    assert "no contact key is configured" in contacts["problems"][0]


async def test_no_contacts_stored(sqlite_store: SqlStore) -> None:
    """Nothing stored: status none, no problems."""
    await seed_jane(sqlite_store, with_contacts=False)
    contacts = (await export(sqlite_store))["contacts"]
    assert contacts == {
        "status": "none",
        "name": None,
        "email": None,
        "phone": None,
        "problems": [],
    }


async def test_a_bare_customer_exports_empty_parts(sqlite_store: SqlStore) -> None:
    """A customer with no profile, tags or interactions: empty lists and nulls."""
    async with sqlite_store.sessions.begin() as session:
        await add_customer(session, RAW_ID)
    document = await export(sqlite_store)
    assert document["profile"]["profile_version"] is None
    assert document["profile"]["attributes"] == {}
    assert document["consent"] == [{"customer_key": KEY, "states": [], "history": []}]
    assert (document["tags"], document["segments"], document["aliases"]) == ([], [], [])
    assert document["recommendations"] is None
    assert (document["propensity"], document["offers"]) == ([], [])
    assert (document["interaction_count"], document["interactions"]) == (0, [])


async def test_ten_thousand_interactions_stream_in_batches(sqlite_store: SqlStore) -> None:
    """10,500 interactions come out whole and in order, one piece per batch of 1,000."""
    async with sqlite_store.sessions.begin() as session:
        product = await add_product(session, "SKU-1", "shoes")
        jane = await add_customer(session, RAW_ID)
        await session.execute(
            insert(Interaction),
            [
                {
                    "event_id": f"e{n}",
                    "customer_id": jane.id,
                    "product_id": product.id,
                    "kind": "view",
                    "quantity": 1,
                    "occurred_at": NOW - timedelta(seconds=10_500 - n),
                }
                for n in range(10_500)
            ],
        )
    pieces = [
        piece
        async for piece in export_chunks(
            sqlite_store.sessions, KEY, cipher=CIPHER, actor=Actor.cli(), now=EXPORTED_AT
        )
    ]
    assert len(pieces) == 2 + 11
    interactions = json.loads("".join(pieces))["interactions"]
    assert len(interactions) == 10_500
    assert interactions[0]["occurred_at"] == (NOW - timedelta(seconds=10_500)).isoformat()
    assert interactions[-1]["occurred_at"] == (NOW - timedelta(seconds=1)).isoformat()
