"""Customers move to their key under the current secret when seen again: in batches
(ingestion, imports) and for one customer on a miss (the conversation)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from rasa_personalize.identity import customer_key, previous_customer_keys
from rasa_personalize.privacy.secret_rotation import adopt_previous_keys, rekey_on_miss
from rasa_personalize.store.models import Customer
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import make_settings

OLD_SECRET = "former-secret-key-0123456789"
OLDER_SECRET = "oldest-secret-key-0123456789"
NEW_SECRET = "current-secret-key-0123456789"


async def add_customers(store: SqlStore, *keys: str) -> None:
    async with store.sessions.begin() as session:
        session.add_all(Customer(customer_key=key) for key in keys)


async def stored_keys(store: SqlStore) -> set[str]:
    async with store.sessions() as session:
        return set((await session.scalars(select(Customer.customer_key))).all())


def test_previous_customer_keys_follow_the_configured_secrets() -> None:
    """One key per former secret, in the configured order; none without former secrets."""
    settings = make_settings(
        "sqlite://", secret_key=NEW_SECRET, previous_secret_keys=f"{OLD_SECRET},{OLDER_SECRET}"
    )
    assert previous_customer_keys(settings, " ann ") == (
        customer_key(OLD_SECRET, "ann"),
        customer_key(OLDER_SECRET, "ann"),
    )
    assert previous_customer_keys(make_settings("sqlite://", secret_key=NEW_SECRET), "ann") == ()


async def test_batch_moves_the_customers_it_finds_under_former_secrets(store: SqlStore) -> None:
    """Ids known under either former secret move; unknown ids and moved ones stay as
    they are; the count says how many moved."""
    await add_customers(
        store, customer_key(OLD_SECRET, "ann"), customer_key(OLDER_SECRET, "bob"),
        customer_key(NEW_SECRET, "cy"),
    )  # fmt: skip
    async with store.sessions.begin() as session:
        moved = await adopt_previous_keys(
            session,
            ["ann", "bob", "cy", "dee", "ann"],
            secret_key=NEW_SECRET,
            previous_secret_keys=[OLD_SECRET, OLDER_SECRET],
        )
    assert moved == 2
    assert await stored_keys(store) == {
        customer_key(NEW_SECRET, name) for name in ("ann", "bob", "cy")
    }


async def test_without_former_secrets_the_store_is_not_asked() -> None:
    """No PERSONALIZE_PREVIOUS_SECRET_KEYS: no lookup at all (the session is never used)."""

    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the store was used ({name})")

    session: Any = Untouchable()
    assert (
        await adopt_previous_keys(session, ["ann"], secret_key=NEW_SECRET, previous_secret_keys=[])
        == 0
    )
    settings = make_settings("sqlite://", secret_key=NEW_SECRET)
    assert await rekey_on_miss(session, settings, "ann") is False


async def test_rekey_on_miss_moves_one_customer_in_its_own_transaction(store: SqlStore) -> None:
    """A conversation under the new secret that missed: the customer moves and is found."""
    await add_customers(store, customer_key(OLD_SECRET, "ann"))
    settings = make_settings("sqlite://", secret_key=NEW_SECRET, previous_secret_keys=OLD_SECRET)
    assert await rekey_on_miss(store.sessions, settings, "ann") is True
    assert await rekey_on_miss(store.sessions, settings, "ann") is False
    assert await stored_keys(store) == {customer_key(NEW_SECRET, "ann")}
