"""Stored scores on every backend: upserted rows, and the profile document kept whole."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rasa_personalize.store.models import CustomerProfile
from rasa_personalize.store.propensity import (
    StoredScore,
    count_propensity_scores,
    read_propensity_scores,
    write_propensity_scores,
)
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.propensity.conftest import CUTOFF, NOW, seed_history


async def profiles(store: SqlStore) -> dict[int, tuple[dict[str, object], int]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(CustomerProfile.customer_id, CustomerProfile.metrics, CustomerProfile.version)
        )
        return {int(c): (dict(m), int(v)) for c, m, v in rows.all()}


async def test_scores_are_upserted_and_merged_into_the_profile(store: SqlStore) -> None:
    """A second run replaces the row and the entry and bumps the version, a third with the
    same scores changes nothing; the rebuilt metrics stay, and a customer without a profile
    gets one."""
    async with store.sessions.begin() as session:
        ids = await seed_history(session)
        await rebuild_profile_metrics(session, CUTOFF)
    before = await profiles(store)
    assert ids.quiet not in before  # no history, so no profile yet

    for score, version in ((0.25, "p-1"), (0.75, "p-2"), (0.75, "p-2")):
        async with store.sessions.begin() as session:
            written = await write_propensity_scores(
                session,
                target="purchase_7d",
                model_version=version,
                customer_ids=[ids.buyer, ids.quiet],
                scores=[score, 0.01],
                bands=["medium" if score < 0.5 else "high", "low"],
                scored_at=NOW,
            )
        assert written == 2
        assert ids.quiet in await profiles(store)

    after = await profiles(store)
    buyer, buyer_version = after[ids.buyer]
    assert buyer["propensity"] == {
        "purchase_7d": {
            "score": 0.75,
            "band": "high",
            "model_version": "p-2",
            "scored_at": NOW.isoformat(),
        }
    }
    assert {k: v for k, v in buyer.items() if k != "propensity"} == before[ids.buyer][0]
    assert buyer_version == before[ids.buyer][1] + 2
    # Created by the first run, changed by the second.
    assert after[ids.quiet] == (
        {
            "propensity": {
                "purchase_7d": {
                    "score": 0.01,
                    "band": "low",
                    "model_version": "p-2",
                    "scored_at": NOW.isoformat(),
                }
            }
        },
        2,
    )
    async with store.sessions() as session:
        assert await count_propensity_scores(session, "purchase_7d") == 2
        assert await read_propensity_scores(session, ids.buyer) == (
            StoredScore("purchase_7d", 0.75, "p-2", NOW),
        )


@pytest.mark.parametrize(
    ("scores", "bands", "message"),
    [
        ([0.5], ["low", "high"], "expected one of each"),  # lengths differ
        ([1.5, 0.2], ["high", "low"], "between 0 and 1"),  # not a probability
    ],
)
async def test_bad_scores_are_refused(
    sqlite_store: SqlStore, scores: list[float], bands: list[str], message: str
) -> None:
    """Nothing is written for malformed input."""
    async with sqlite_store.sessions.begin() as session:
        ids = await seed_history(session)
        with pytest.raises(ValueError, match=message):
            await write_propensity_scores(
                session,
                target="purchase_7d",
                model_version="p",
                customer_ids=[ids.buyer, ids.quiet],
                scores=scores,
                bands=bands,
                scored_at=NOW,
            )
        assert await count_propensity_scores(session, "purchase_7d") == 0
