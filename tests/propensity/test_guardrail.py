"""The guardrail on propensity: a worse model's scores are not stored (mid-sized shop)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from rasa_personalize.cli.propensity import summary
from rasa_personalize.propensity.model import PropensityParams
from rasa_personalize.propensity.training import (
    PropensityRun,
    model_card,
    propensity_dir,
    train_propensity,
)
from rasa_personalize.recommend.versions import current_version, list_versions
from rasa_personalize.store.models import PropensityScore
from rasa_personalize.store.sql_store import SqlStore
from tests.mid_shop import SEEDED_AT, copy_of_mid_shop

# No leaf may hold fewer than 10,000 customers: the booster cannot split 600, so every
# customer gets the same score (ROC AUC 0.5).
FLAT = PropensityParams(min_samples_leaf=10_000)


@pytest.fixture
def shop_url(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> str:
    """A private copy of the mid-sized demo shop."""
    return copy_of_mid_shop(tmp_path_factory, tmp_path)


@pytest.fixture
async def shop(shop_url: str) -> AsyncIterator[SqlStore]:
    """The copy as a store."""
    store = SqlStore(shop_url)
    yield store
    await store.dispose()


async def train(
    store: SqlStore, model_dir: Path, params: PropensityParams | None = None, *, force: bool = False
) -> PropensityRun:
    async with store.sessions.begin() as session:
        return await train_propensity(
            session, now=SEEDED_AT, model_dir=model_dir, params=params, force=force
        )


async def stored_versions(store: SqlStore) -> set[str]:
    async with store.sessions() as session:
        rows = await session.scalars(select(PropensityScore.model_version).distinct())
        return set(rows.all())


async def test_a_worse_model_does_not_replace_the_stored_scores(
    shop: SqlStore, tmp_path: Path
) -> None:
    """A flat model (AUC 0.5) against the serving one (about 0.76) on the same held-out
    customers: its scores are not stored, its card is kept as a candidate."""
    models = tmp_path / "models"
    first = (await train(shop, models)).report
    assert first.promoted
    assert first.guardrail is not None
    assert first.guardrail.reason == "no model serves yet: the first one serves"
    assert first.model.auc == pytest.approx(0.756, abs=0.02)

    flat = (await train(shop, models, FLAT)).report
    verdict = flat.guardrail
    assert verdict is not None
    assert not flat.promoted
    assert flat.model.auc == 0.5
    # The serving model's parameters, refitted on the same parts, score as it did.
    assert verdict.serving == first.model.auc
    assert verdict.serving_version == first.model_version
    assert verdict.reason.startswith("kept as a candidate: ROC AUC 0.5000 against ")
    directory = propensity_dir(models, "purchase_7d")
    assert current_version(directory) == first.model_version
    assert flat.model_version in list_versions(directory)
    assert model_card(directory / flat.model_version)["guardrail"]["promoted"] is False
    assert await stored_versions(shop) == {first.model_version}
    # `propensity train --json` carries the decision too.
    document = summary(flat)
    assert document["promoted"] is False
    assert document["guardrail"]["serving_version"] == first.model_version


async def test_force_stores_the_worse_model_anyway(shop: SqlStore, tmp_path: Path) -> None:
    """--force: the flat model's scores replace the serving ones, and it serves."""
    models = tmp_path / "models"
    await train(shop, models)
    forced = (await train(shop, models, FLAT, force=True)).report
    assert forced.promoted
    assert forced.guardrail is not None
    assert forced.guardrail.forced
    assert current_version(propensity_dir(models, "purchase_7d")) == forced.model_version
    assert await stored_versions(shop) == {forced.model_version}


async def test_the_same_parameters_again_serve(shop: SqlStore, tmp_path: Path) -> None:
    """Retrained with the serving parameters (threads aside): the same AUC, so it serves."""
    models = tmp_path / "models"
    first = (await train(shop, models)).report
    again = (await train(shop, models, PropensityParams(n_threads=2))).report
    assert again.promoted
    assert again.guardrail is not None
    assert again.guardrail.candidate == again.guardrail.serving == first.model.auc
    assert await stored_versions(shop) == {again.model_version}
