"""Likes and dislikes said in the chat: stored as tags for a customer's own id only, the
opposite word replacing the other, the cached profile dropped, and the rules reading them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from rasa_personalize.engine import ConversationRef, PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, IdentitySource, customer_key
from rasa_personalize.preferences import ChatPreference
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import Customer, CustomerAlias, CustomerTag, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_product

IDENTITY_SECRET = "identity-secret-for-preference-tests"


class RecordingCache:
    """Stands in for the profile cache: notes the keys invalidated (reads always miss)."""

    def __init__(self) -> None:
        self.invalidated: list[str] = []

    async def lookup(self, key: str) -> None:
        return None

    async def invalidate(self, keys: Any) -> None:
        self.invalidated.extend(keys)


@pytest.fixture
async def shop(store: SqlStore) -> SqlStore:
    """Running, kitchen and toys products; ada is known, with a seeded kitchen interest."""
    async with store.sessions.begin() as session:
        await add_product(session, "RUN-1", "running")
        await add_product(session, "KIT-1", "kitchen")
        await add_product(session, "TOY-1", "toys")
        await add_customer(session, "ada", tags=("interested_in_kitchen", "premium"))
    return store


async def start(store: SqlStore, database_url: str, **settings: Any) -> PersonalizationService:
    service = PersonalizationService(
        make_settings(database_url, **settings), store, clock=lambda: NOW
    )
    await service.warm_up()
    return service


def said_by(
    external_id: str,
    source: IdentitySource = "message_metadata",
    *,
    verified: bool = True,
) -> PersonalizationRequest:
    return PersonalizationRequest(
        CustomerIdentity(external_id, source, verified=verified),
        conversation=ConversationRef(f"conversation-of-{external_id}", "message-1"),
    )


async def tags_of(store: SqlStore, external_id: str) -> list[tuple[str, str]]:
    """(tag, source) of a customer's tags, sorted."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(CustomerTag.tag, CustomerTag.source)
            .join(Customer, Customer.id == CustomerTag.customer_id)
            .where(Customer.customer_key == customer_key(TEST_SECRET, external_id))
        )
        return sorted((str(tag), str(source)) for tag, source in rows.all())


async def test_a_dislike_replaces_the_like_of_that_category_whatever_its_source(
    shop: SqlStore, database_url: str
) -> None:
    """not_interested_in_kitchen (source chat) in, the seeded interested_in_kitchen out,
    the other tags untouched; and no category_asked event: a dislike is no interest."""
    service = await start(shop, database_url)

    outcome = await service.record_chat_preference(said_by("ada"), "kitchen", liked=False)

    assert outcome == ChatPreference("stored", "kitchen")
    assert await tags_of(shop, "ada") == [
        ("not_interested_in_kitchen", "chat"),
        ("premium", "test"),
    ]
    async with shop.sessions() as session:
        assert (await session.scalars(select(Interaction.kind))).all() == []
    await service.close()


async def test_saying_the_opposite_later_removes_the_other_tag(
    shop: SqlStore, database_url: str
) -> None:
    """Dislike, like, dislike again: each time exactly one kitchen tag, the latest word."""
    service = await start(shop, database_url)
    kitchen = [tag for tag in await tags_of(shop, "ada") if "kitchen" in tag[0]]
    assert kitchen == [("interested_in_kitchen", "test")]

    history = []
    for liked in (False, True, False):
        await service.record_chat_preference(said_by("ada"), "kitchen", liked=liked)
        history.append([tag for tag in await tags_of(shop, "ada") if "kitchen" in tag[0]])

    assert history == [
        [("not_interested_in_kitchen", "chat")],
        [("interested_in_kitchen", "chat")],
        [("not_interested_in_kitchen", "chat")],
    ]
    await service.close()


@pytest.mark.parametrize(
    ("words", "category"),
    [
        ("Kitchen stuff", "kitchen"),  # the category named in the words
        ("toy", "toys"),  # a singular: a close spelling of the category
        ("runing", "running"),  # a typo
    ],
)
async def test_the_words_are_read_as_a_catalogue_category(
    shop: SqlStore, database_url: str, words: str, category: str
) -> None:
    """As recommendations read a category: the tag names the catalogue's category."""
    service = await start(shop, database_url)

    outcome = await service.record_chat_preference(said_by("ada"), words, liked=False)

    assert outcome == ChatPreference("stored", category)
    assert (f"not_interested_in_{category}", "chat") in await tags_of(shop, "ada")
    await service.close()


async def test_a_category_the_catalogue_does_not_have_stores_nothing(
    shop: SqlStore, database_url: str
) -> None:
    """No category fits "spaceships": nothing stored, and the outcome says why."""
    service = await start(shop, database_url)

    outcome = await service.record_chat_preference(said_by("ada"), "spaceships", liked=False)

    assert outcome == ChatPreference("unknown_category", None)
    assert await tags_of(shop, "ada") == [("interested_in_kitchen", "test"), ("premium", "test")]
    await service.close()


@pytest.mark.parametrize(
    ("request_", "identity_secret"),
    [
        # an anonymous visitor: the conversation's own id is nobody's profile
        (said_by("ada", "sender_id", verified=False), None),
        # a claim nobody proved while proof is required
        (said_by("ada", verified=False), IDENTITY_SECRET),
    ],
)
@pytest.mark.parametrize("liked", [True, False])
async def test_nothing_is_stored_without_a_customers_own_proven_id(
    shop: SqlStore,
    database_url: str,
    request_: PersonalizationRequest,
    identity_secret: str | None,
    liked: bool,
) -> None:
    """needs_login, with the category still read (the conversation may use it); no tag,
    no chat event, nobody created."""
    service = await start(shop, database_url, identity_secret=identity_secret)

    outcome = await service.record_chat_preference(request_, "kitchen", liked=liked)

    assert outcome == ChatPreference("needs_login", "kitchen")
    assert await tags_of(shop, "ada") == [("interested_in_kitchen", "test"), ("premium", "test")]
    async with shop.sessions() as session:
        assert (await session.scalars(select(Interaction.kind))).all() == []
        assert len((await session.scalars(select(Customer.id))).all()) == 1
    await service.close()


async def test_a_verified_customer_is_stored_when_proof_is_required(
    shop: SqlStore, database_url: str
) -> None:
    """The signed claim is the customer's own id."""
    service = await start(shop, database_url, identity_secret=IDENTITY_SECRET)

    outcome = await service.record_chat_preference(said_by("ada"), "toys", liked=True)

    assert outcome.stored
    assert ("interested_in_toys", "chat") in await tags_of(shop, "ada")
    await service.close()


@pytest.mark.parametrize(
    ("decisions", "consent_default"),
    [
        # the customer said no to personalization
        ({"personalization": False}, "granted"),
        # never answered, and the shop's default is no
        ({}, "denied"),
    ],
)
async def test_nothing_is_stored_without_personalization_consent(
    shop: SqlStore, database_url: str, decisions: dict[str, bool], consent_default: str
) -> None:
    """not_stored: the profile gets nothing new."""
    if decisions:
        async with shop.sessions.begin() as session:
            await set_consent(
                session,
                customer_key(TEST_SECRET, "ada"),
                decisions,
                source="cli",
                policy_version=None,
                now=NOW,
            )
    service = await start(shop, database_url, consent_default=consent_default)

    outcome = await service.record_chat_preference(said_by("ada"), "kitchen", liked=False)

    assert outcome == ChatPreference("not_stored", "kitchen")
    assert await tags_of(shop, "ada") == [("interested_in_kitchen", "test"), ("premium", "test")]
    await service.close()


async def test_a_dislike_of_a_customer_the_store_does_not_know_creates_nobody(
    shop: SqlStore, database_url: str
) -> None:
    """Only a like brings a new customer in (through its category_asked event)."""
    service = await start(shop, database_url)

    disliked = await service.record_chat_preference(said_by("newcomer"), "toys", liked=False)
    async with shop.sessions() as session:
        customers_after_dislike = len((await session.scalars(select(Customer.id))).all())
    liked = await service.record_chat_preference(said_by("newcomer"), "toys", liked=True)

    assert (disliked, customers_after_dislike) == (ChatPreference("not_stored", "toys"), 1)
    assert liked == ChatPreference("stored", "toys")
    assert await tags_of(shop, "newcomer") == [("interested_in_toys", "chat")]
    await service.close()


async def test_the_profile_cached_under_every_key_of_the_person_is_dropped(
    shop: SqlStore, database_url: str
) -> None:
    """A merged customer may chat under either id: both keys are invalidated."""
    old_key = customer_key(TEST_SECRET, "ada-old@example.com")
    async with shop.sessions.begin() as session:
        ada = (
            await session.scalars(
                select(Customer).where(Customer.customer_key == customer_key(TEST_SECRET, "ada"))
            )
        ).one()
        session.add(CustomerAlias(alias_key=old_key, customer_id=ada.id, match="exact"))
    service = await start(shop, database_url)
    cache = RecordingCache()
    service.profile_cache = cache  # type: ignore[assignment]

    await service.record_chat_preference(said_by("ada-old@example.com"), "kitchen", liked=False)

    assert sorted(cache.invalidated) == sorted([customer_key(TEST_SECRET, "ada"), old_key])
    assert ("not_interested_in_kitchen", "chat") in await tags_of(shop, "ada")
    await service.close()


async def test_the_decision_rules_read_a_dislike_said_in_the_chat(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """A rule on tags: not_interested_in_kitchen holds from the next turn on."""
    async with sqlite_store.sessions.begin() as session:
        await add_product(session, "KIT-1", "kitchen")
        await add_customer(session, "ada")
    rules = tmp_path / "personalization.yml"
    rules.write_text(
        "rules:\n"
        "  - name: no kitchen deals\n"
        "    when: {tags: not_interested_in_kitchen}\n"
        "    then: {offer_type: free_shipping}\n",
        encoding="utf-8",
    )
    service = PersonalizationService(
        make_settings(sqlite_url, rules_path=rules),
        sqlite_store,
        clock=lambda: NOW,
        rules=RuleBook(rules),
    )
    await service.warm_up()
    before = await service.personalize(said_by("ada"))

    await service.record_chat_preference(said_by("ada"), "kitchen", liked=False)
    after = await service.personalize(said_by("ada"))

    assert (before["offer_type"], after["offer_type"]) == ("none", "free_shipping")
    assert after["user_tags"] == ["not_interested_in_kitchen"]
    await service.close()


async def test_record_chat_interest_is_a_like(shop: SqlStore, database_url: str) -> None:
    """The demo's action_remember_interest path: a like, True when stored."""
    service = await start(shop, database_url)

    assert await service.record_chat_interest(said_by("ada"), "running shoes") is True
    assert ("interested_in_running", "chat") in await tags_of(shop, "ada")
    await service.close()
