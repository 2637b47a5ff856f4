"""Customer merges at the store level: history moves, aliases follow chains of merges."""

from __future__ import annotations

from sqlalchemy import select

from rasa_personalize.store.customers import CustomerMerge, merge_customers, resolve_keys
from rasa_personalize.store.models import CustomerAlias, CustomerProfile
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer


async def test_alias_chains_follow_the_last_merge(store: SqlStore) -> None:
    """B merged into A, then A into C: both old keys reach C, attributes merged."""
    async with store.sessions.begin() as session:
        a = await add_customer(session, "a")
        b = await add_customer(session, "b")
        c = await add_customer(session, "c")
        session.add_all(
            [
                CustomerProfile(customer_id=b.id, attributes={"newsletter": True, "lang": "de"}),
                CustomerProfile(customer_id=c.id, attributes={"lang": "en"}),
            ]
        )
        keys = {name: row.customer_key for name, row in (("a", a), ("b", b), ("c", c))}
        ids = {name: row.id for name, row in (("a", a), ("b", b), ("c", c))}
    async with store.sessions.begin() as session:
        await merge_customers(session, [CustomerMerge(ids["b"], ids["a"], "exact")], NOW)
    async with store.sessions.begin() as session:
        await merge_customers(session, [CustomerMerge(ids["a"], ids["c"], "fuzzy")], NOW)
    async with store.sessions() as session:
        resolved = await resolve_keys(session, list(keys.values()))
        aliases = dict(
            (await session.execute(select(CustomerAlias.alias_key, CustomerAlias.match))).all()
        )
        attributes = await session.scalar(
            select(CustomerProfile.attributes).where(CustomerProfile.customer_id == ids["c"])
        )
    assert resolved == {
        keys["a"]: (ids["c"], True),
        keys["b"]: (ids["c"], True),
        keys["c"]: (ids["c"], False),
    }
    assert aliases == {keys["a"]: "fuzzy", keys["b"]: "exact"}
    # The survivor's own value wins; what only the duplicate had is kept.
    assert attributes == {"lang": "en", "newsletter": True}
