"""Promoting and rolling back propensity versions: every customer rescored by the saved
classifier, the pointer moved after, and clear errors for versions that cannot score.

Two versions of the mid-sized shop are trained once per module: a good one (ROC AUC
about 0.76) that serves, and a flat one (AUC 0.5: every customer the same score) that the
guardrail keeps as a candidate. Each test works on its own copy of both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
import sklearn
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from rasa_personalize.cache.profiles import generation_key
from rasa_personalize.cli.models import register_commands
from rasa_personalize.engine import propensity_slot
from rasa_personalize.propensity.artifacts import (
    ESTIMATOR_FILE,
    MODEL_FILE,
    load_saved_model,
)
from rasa_personalize.propensity.errors import SavedModelError
from rasa_personalize.propensity.model import PropensityParams
from rasa_personalize.propensity.training import propensity_dir, train_propensity
from rasa_personalize.recommend.versions import METADATA_FILE, current_version
from rasa_personalize.registry import (
    ModelRegistryError,
    list_models,
    promote,
    promote_rescoring,
    rollback,
    rollback_rescoring,
)
from rasa_personalize.store.models import Customer, PropensityScore
from rasa_personalize.store.repository import load_customer_snapshot
from rasa_personalize.store.sql_store import SqlStore
from tests.mid_shop import SEEDED_AT, mid_shop_file

KIND = "propensity_purchase_7d"
# No leaf may hold fewer than 10,000 customers: the booster cannot split 600, so every
# customer gets the same score (ROC AUC 0.5), and the guardrail keeps it out.
FLAT = PropensityParams(min_samples_leaf=10_000)


@dataclass(frozen=True)
class Trained:
    """A copy of the shop with two versions: ``good`` serves, ``flat`` is a candidate."""

    url: str
    models: Path
    good: str
    flat: str

    @property
    def directory(self) -> Path:
        return propensity_dir(self.models, "purchase_7d")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The shop and its two versions, trained once for the module."""
    root = tmp_path_factory.mktemp("promotion")
    shutil.copyfile(mid_shop_file(tmp_path_factory), root / "shop.db")
    models = root / "models"

    async def train_both() -> tuple[str, str]:
        store = SqlStore(f"sqlite:///{root / 'shop.db'}")
        try:
            versions = []
            for params in (None, FLAT):
                async with store.sessions.begin() as session:
                    run = await train_propensity(
                        session, now=SEEDED_AT, model_dir=models, params=params
                    )
                versions.append(run.report)
        finally:
            await store.dispose()
        good, flat = versions
        assert good.promoted
        assert not flat.promoted
        return good.model_version, flat.model_version

    good, flat = asyncio.run(train_both())
    return Trained(f"sqlite:///{root / 'shop.db'}", models, good, flat)


@pytest.fixture
def trained(template: Trained, tmp_path: Path) -> Trained:
    """A private copy of the template."""
    shutil.copyfile(template.url.removeprefix("sqlite:///"), tmp_path / "shop.db")
    shutil.copytree(template.models, tmp_path / "models")
    return Trained(
        f"sqlite:///{tmp_path / 'shop.db'}", tmp_path / "models", template.good, template.flat
    )


@pytest.fixture
async def store(trained: Trained) -> AsyncIterator[SqlStore]:
    shop = SqlStore(trained.url)
    yield shop
    await shop.dispose()


async def stored_scores(store: SqlStore) -> dict[int, tuple[float, str]]:
    """customer id -> (score, model version) of every stored purchase_7d score."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                PropensityScore.customer_id, PropensityScore.score, PropensityScore.model_version
            ).where(PropensityScore.target == "purchase_7d")
        )
        return {customer: (score, version) for customer, score, version in rows.all()}


async def slot_and_version(store: SqlStore, customer_id: int) -> tuple[str, str, int]:
    """What the action server would see: the slot's band, the model version in the
    profile snapshot, and the profile version that guards cached copies of it."""
    async with store.sessions() as session:
        key = await session.scalar(select(Customer.customer_key).where(Customer.id == customer_id))
        assert key is not None
        snapshot = await load_customer_snapshot(session, key)
    assert snapshot is not None
    record = snapshot.metrics.propensity["purchase_7d"]
    return propensity_slot(snapshot), record.model_version, snapshot.profile_version


def statuses(trained: Trained) -> list[tuple[str, str]]:
    return [(row.version, row.status) for row in list_models(trained.models, KIND)]


async def test_promote_rescores_everyone_and_rollback_restores_the_scores(
    trained: Trained, store: SqlStore
) -> None:
    """Promoting the flat candidate stores its scores for all 600 customers (every band
    low); rolling back stores the good model's again, identical to the trained ones."""
    trained_scores = await stored_scores(store)
    assert len(trained_scores) == 600
    assert {version for _, version in trained_scores.values()} == {trained.good}
    likely = max(trained_scores, key=lambda customer: trained_scores[customer][0])
    slot, version, profile_version = await slot_and_version(store, likely)
    assert (slot, version) == ("high", trained.good)
    assert statuses(trained) == [(trained.flat, "candidate"), (trained.good, "serving")]

    stages: list[str] = []
    change = await promote_rescoring(
        store,
        trained.models,
        trained.flat,
        now=SEEDED_AT,
        progress=lambda stage, _done, _total: stages.append(stage),
    )
    assert (change.kind, change.before, change.after, change.rescored) == (
        KIND,
        trained.good,
        trained.flat,
        600,
    )
    assert {"scoring", "storing"} <= set(stages)
    promoted = await stored_scores(store)
    assert {version for _, version in promoted.values()} == {trained.flat}
    assert len({score for score, _ in promoted.values()}) == 1  # flat: one score for all
    slot, version, bumped = await slot_and_version(store, likely)
    assert (slot, version) == ("low", trained.flat)
    assert bumped == profile_version + 1  # outdates cached copies of the profile
    assert current_version(trained.directory) == trained.flat
    assert statuses(trained) == [(trained.flat, "serving"), (trained.good, "previous")]

    back = await rollback_rescoring(store, trained.models, KIND, now=SEEDED_AT)
    assert (back.before, back.after, back.rescored) == (trained.flat, trained.good, 600)
    # The saved classifier scores exactly as the one that was trained.
    assert await stored_scores(store) == trained_scores
    slot, version, _ = await slot_and_version(store, likely)
    assert (slot, version) == ("high", trained.good)
    assert current_version(trained.directory) == trained.good
    assert statuses(trained) == [(trained.flat, "candidate"), (trained.good, "serving")]


async def test_promoting_the_serving_version_rescores_nobody(
    trained: Trained, store: SqlStore
) -> None:
    """Already serving: nothing is written, the change says so."""
    before = await stored_scores(store)
    change = await promote_rescoring(store, trained.models, trained.good[:16], now=SEEDED_AT)
    assert (change.changed, change.rescored) == (False, None)
    assert await stored_scores(store) == before


def test_the_file_only_calls_refuse_propensity(trained: Trained) -> None:
    """promote() and rollback() without a store would move the pointer away from the
    stored scores: they name the calls that rescore instead."""
    with pytest.raises(ModelRegistryError, match="serve through the scores stored per customer"):
        promote(trained.models, trained.flat)
    with pytest.raises(ModelRegistryError, match="needs the store"):
        rollback(trained.models, KIND)
    assert current_version(trained.directory) == trained.good


async def test_nothing_to_roll_back_to_changes_nothing(trained: Trained, store: SqlStore) -> None:
    """One version served so far: the registry's error, before any customer is scored."""
    before = await stored_scores(store)
    with pytest.raises(ModelRegistryError, match=f"{KIND}: nothing to roll back to"):
        await rollback_rescoring(store, trained.models, KIND, now=SEEDED_AT)
    assert await stored_scores(store) == before


def rewrite_card(version_dir: Path, change: dict[str, object]) -> None:
    """Edit a model card as another release would have written it, and keep
    metadata.json's checksum in step (so only the edit itself is judged)."""
    card = json.loads((version_dir / MODEL_FILE).read_text(encoding="utf-8"))
    for key, value in change.items():
        if value is None:
            card.pop(key, None)
        elif isinstance(value, dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    content = json.dumps(card).encode()
    (version_dir / MODEL_FILE).write_bytes(content)
    metadata = json.loads((version_dir / METADATA_FILE).read_text(encoding="utf-8"))
    metadata["sha256"] = hashlib.sha256(content).hexdigest()
    (version_dir / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")


async def assert_refused(trained: Trained, store: SqlStore, message: str) -> None:
    """Promoting the flat version fails with ``message``; scores and pointer stay."""
    before = await stored_scores(store)
    with pytest.raises(SavedModelError, match=message):
        await promote_rescoring(store, trained.models, trained.flat, now=SEEDED_AT)
    assert await stored_scores(store) == before
    assert current_version(trained.directory) == trained.good


async def test_another_scikit_learn_release_is_refused(trained: Trained, store: SqlStore) -> None:
    """A card saying 0.24.2 saved the classifier: refused, with both releases and the
    way out, before anything is written."""
    rewrite_card(trained.directory / trained.flat, {"estimator": {"scikit_learn": "0.24.2"}})
    await assert_refused(
        trained,
        store,
        rf"was saved by scikit-learn 0\.24\.2 and this is scikit-learn {sklearn.__version__}.*"
        r"train the model again with this release \(`personalize propensity train`\)",
    )


async def test_a_version_of_an_older_release_asks_to_train_again(
    trained: Trained, store: SqlStore
) -> None:
    """A version directory as older releases wrote it: a card without the estimator
    record, no estimator file."""
    version_dir = trained.directory / trained.flat
    (version_dir / ESTIMATOR_FILE).unlink()
    rewrite_card(version_dir, {"estimator": None, "layout": None, "format": 1})
    await assert_refused(
        trained,
        store,
        r"has no saved classifier: it was trained by an older release.*"
        r"train a new model instead \(`personalize propensity train`\)",
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        # the classifier's bytes changed after training
        ("estimator", f"{ESTIMATOR_FILE} does not match its checksum in {MODEL_FILE}"),
        # the card changed, and metadata.json was not updated
        ("card", f"{MODEL_FILE} does not match its checksum in metadata.json"),
        # the classifier file is gone
        ("missing", f"has no {ESTIMATOR_FILE}"),
    ],
)
async def test_damaged_files_are_refused(
    trained: Trained, store: SqlStore, damage: str, message: str
) -> None:
    """A changed or missing file is found before anything is scored."""
    version_dir = trained.directory / trained.flat
    if damage == "estimator":
        content = bytearray((version_dir / ESTIMATOR_FILE).read_bytes())
        content[-10] ^= 0xFF
        (version_dir / ESTIMATOR_FILE).write_bytes(bytes(content))
    elif damage == "card":
        card = version_dir / MODEL_FILE
        card.write_text(card.read_text(encoding="utf-8") + " ", encoding="utf-8")
    else:
        (version_dir / ESTIMATOR_FILE).unlink()
    await assert_refused(trained, store, message)


def test_a_loaded_version_carries_its_layout_and_cut_offs(trained: Trained) -> None:
    """What the card recorded comes back: the feature columns and the band cut-offs."""
    version_dir = trained.directory / trained.good
    card = json.loads((version_dir / MODEL_FILE).read_text(encoding="utf-8"))
    saved = load_saved_model(version_dir)
    assert saved.version == trained.good
    assert saved.target == "purchase_7d"
    assert list(saved.layout.names()) == card["features"]
    assert saved.cutoffs.low == card["band_cutoffs"]["low"]
    assert saved.cutoffs.high == card["band_cutoffs"]["high"]
    assert saved.model.calibration_ == card["calibration_method"]
    assert saved.model.n_iter_ == card["boosting_rounds"]
    assert card["estimator"]["scikit_learn"] == sklearn.__version__
    assert card["estimator"]["format"] == 1
    assert card["format"] == 2


# -- the command --------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """An app with just the models group, registered as rasa_personalize.cli does."""
    application = typer.Typer()
    register_commands(application)

    @application.callback()
    def main() -> None:
        """Keep "models" a group of its own (typer flattens a lone sub-app)."""

    return application


@pytest.fixture
def environment(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Trained:
    """The CLI pointed at the copy."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", trained.url)
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(trained.models))
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "promotion-cli-test-secret")
    return trained


def versions_stored(url: str) -> set[str]:
    """The model versions of the stored scores (for the synchronous command tests)."""

    async def read() -> set[str]:
        store = SqlStore(url)
        try:
            return {version for _, version in (await stored_scores(store)).values()}
        finally:
            await store.dispose()

    return asyncio.run(read())


def test_the_command_promotes_and_rolls_back_with_progress(
    app: typer.Typer, environment: Trained
) -> None:
    """`models promote` rescores with a progress bar and says how many customers;
    `models rollback --kind propensity_purchase_7d` goes back the same way."""
    trained = environment
    result = runner.invoke(app, ["models", "promote", trained.flat])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"{KIND} {trained.flat} serves (was {trained.good}): 600 customers rescored, and "
        "their cached profiles outdated."
    )
    assert "scoring" in result.stderr
    assert "600/600" in result.stderr
    assert versions_stored(trained.url) == {trained.flat}

    back = runner.invoke(app, ["models", "rollback", "--kind", KIND])
    assert back.exit_code == 0, back.output
    assert back.stdout.startswith(f"{KIND} {trained.good} serves again (was {trained.flat}): 600")
    assert versions_stored(trained.url) == {trained.good}
    listed = runner.invoke(app, ["models", "list", "--kind", KIND, "--json"])
    rows = json.loads(listed.stdout)["versions"]
    assert [(row["version"], row["status"], row["metric"]) for row in rows] == [
        (trained.flat, "candidate", "auc"),
        (trained.good, "serving", "auc"),
    ]
    assert rows[0]["value"] == 0.5


def test_a_version_that_cannot_score_is_one_line_and_exit_1(
    app: typer.Typer, environment: Trained
) -> None:
    """The refusal is one line on stderr; nothing serves differently."""
    rewrite_card(environment.directory / environment.flat, {"estimator": {"scikit_learn": "1.0"}})
    result = runner.invoke(app, ["models", "promote", environment.flat])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith(f"error: propensity model {environment.flat} was saved by ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert current_version(environment.directory) == environment.good


@pytest.mark.redis
def test_the_command_outdates_cached_profiles(
    app: typer.Typer, environment: Trained, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the rescoring commits, the profile cache's generation is replaced: no
    server answers from a snapshot that holds the old band."""
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", redis_url)

    async def generation() -> bytes | None:
        client = redis_asyncio.from_url(redis_url)
        try:
            value: bytes | None = await client.get(generation_key())
            await client.set(generation_key(), b"before")
            return value
        finally:
            await client.aclose()

    asyncio.run(generation())
    result = runner.invoke(app, ["models", "promote", environment.flat])
    assert result.exit_code == 0, result.output
    assert asyncio.run(generation()) not in (None, b"before")
