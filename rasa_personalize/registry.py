"""Every trained model's versions: which serves, which served before, which are candidates.

Each kind of model keeps its versions in its own directory under the model directory,
with ``CURRENT`` naming the serving one and ``HISTORY`` the ones that served before
(:mod:`rasa_personalize.recommend.versions`). A version's status follows from them:

- ``serving``: ``CURRENT`` names it; servers load it at their next model check;
- ``previous``: it served before the current one (a rollback goes back to the newest);
- ``candidate``: it never served (the guardrail kept it out, or it was rolled back
  from); ``promote`` makes it serve.

For the recommender, content, bought-together and offer models, promoting and rolling
back only rewrite ``CURRENT`` (atomically), so a running server switches as it does
after ``personalize train``. A propensity model serves through the scores stored per
customer, not through its files: :func:`promote_rescoring` and :func:`rollback_rescoring`
first score every customer with the version's saved classifier on features as of now and
store the scores under its id (:mod:`rasa_personalize.propensity.scoring`, as training
does), and rewrite ``CURRENT`` only after that has committed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.clock import utc_now
from rasa_personalize.errors import NotFoundError, PersonalizeError
from rasa_personalize.offers.artifacts import offers_dir
from rasa_personalize.propensity.artifacts import MODEL_FILE, load_saved_model
from rasa_personalize.propensity.scoring import rescore
from rasa_personalize.propensity.training import propensity_dir
from rasa_personalize.recommend.association_artifacts import associations_dir
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.versions import (
    METADATA_FILE,
    als_dir,
    content_dir,
    current_version,
    list_versions,
    roll_back,
    rollback_plan,
    serving_history,
    set_current,
)
from rasa_personalize.store.records import PROPENSITY_TARGETS

if TYPE_CHECKING:
    from rasa_personalize.store.sql_store import SqlStore

ProgressCallback = Callable[[str, int, int], None]

SERVING: Final = "serving"
PREVIOUS: Final = "previous"
CANDIDATE: Final = "candidate"
# Version ids start with their time to the microsecond: a prefix this long is specific.
MIN_PREFIX: Final = 8


class ModelRegistryError(PersonalizeError):
    """A version cannot be promoted or rolled back (the message says why)."""


class UnknownVersionError(NotFoundError):
    """No model version has this id."""


@dataclass(frozen=True)
class ModelKind:
    """One kind of versioned model.

    Attributes:
        name: as ``personalize models`` shows it and ``--kind`` takes it.
        directory: its versions' directory under the model directory.
        metric: the name of the figure listed for its versions (None: none).
        read_metric: that figure from a version's directory (None when absent).
        target: the propensity target of a kind that serves through scores stored per
            customer (None: it serves from its files).
    """

    name: str
    directory: Callable[[Path], Path]
    metric: str | None = None
    read_metric: Callable[[Path], float | None] | None = None
    target: str | None = None

    @property
    def rescored(self) -> bool:
        """Whether a change of version rescores every customer (so needs the store)."""
        return self.target is not None


@dataclass(frozen=True)
class ModelVersion:
    """One version of one kind of model, as ``personalize models list`` shows it."""

    kind: str
    version: str
    created: str
    status: str
    metric: str | None
    value: float | None

    def to_json_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return {
            "kind": self.kind,
            "version": self.version,
            "created": self.created,
            "status": self.status,
            "metric": self.metric,
            "value": self.value,
        }


@dataclass(frozen=True)
class ServingChange:
    """What ``promote`` or ``rollback`` did to one kind of model."""

    kind: str
    before: str | None
    after: str
    # Customers scored by the version that serves now (propensity only).
    rescored: int | None = None

    @property
    def changed(self) -> bool:
        """Whether another version serves now."""
        return self.before != self.after


def _json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _holdout_precision(version_dir: Path) -> float | None:
    metrics = _json(version_dir / METADATA_FILE).get("metrics")
    return _figure(metrics.get("holdout_precision")) if isinstance(metrics, dict) else None


def _auc(version_dir: Path) -> float | None:
    model = _json(version_dir / MODEL_FILE).get("model")
    return _figure(model.get("auc")) if isinstance(model, dict) else None


def _propensity_kind(target: str) -> ModelKind:
    return ModelKind(
        f"propensity_{target}",
        lambda model_dir: propensity_dir(model_dir, target),
        "auc",
        _auc,
        target=target,
    )


KINDS: Final[tuple[ModelKind, ...]] = (
    ModelKind("recommender", als_dir, "precision@10", _holdout_precision),
    ModelKind("content", content_dir),
    ModelKind("associations", associations_dir),
    ModelKind("offers", offers_dir),
    *(_propensity_kind(target) for target in PROPENSITY_TARGETS),
)
KIND_NAMES: Final = tuple(kind.name for kind in KINDS)


def model_kind(name: str) -> ModelKind:
    """The kind called ``name``.

    Raises:
        UnknownVersionError: no kind has that name (the message lists them).
    """
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise UnknownVersionError(f"unknown model kind {name!r}; the kinds are {', '.join(KIND_NAMES)}")


def list_models(model_dir: Path, kind: str | None = None) -> list[ModelVersion]:
    """Every version on disk, by kind (in :data:`KINDS` order), newest first.

    Raises:
        UnknownVersionError: ``kind`` is not a kind's name.
    """
    kinds = KINDS if kind is None else (model_kind(kind),)
    found: list[ModelVersion] = []
    for each in kinds:
        directory = each.directory(model_dir)
        current = current_version(directory)
        served = set(serving_history(directory))
        for version in reversed(list_versions(directory)):
            path = directory / version
            status = SERVING if version == current else PREVIOUS if version in served else CANDIDATE
            found.append(
                ModelVersion(
                    kind=each.name,
                    version=version,
                    created=str(_json(path / METADATA_FILE).get("trained_at", "")),
                    status=status,
                    metric=each.metric,
                    value=each.read_metric(path) if each.read_metric is not None else None,
                )
            )
    return found


def find_version(model_dir: Path, version: str) -> tuple[ModelKind, str]:
    """The kind and full id of ``version`` (an id, or a unique prefix of one).

    Raises:
        UnknownVersionError: no version matches, or a prefix matches several.
    """
    wanted = version.strip()
    exact: list[tuple[ModelKind, str]] = []
    prefixed: list[tuple[ModelKind, str]] = []
    for kind in KINDS:
        for candidate in list_versions(kind.directory(model_dir)):
            if candidate == wanted:
                exact.append((kind, candidate))
            elif len(wanted) >= MIN_PREFIX and candidate.startswith(wanted):
                prefixed.append((kind, candidate))
    if len(exact) == 1:
        return exact[0]
    matches = exact or prefixed
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownVersionError(
            f"no model version {wanted!r} in {model_dir}: `personalize models list` shows "
            f"them (a prefix needs at least {MIN_PREFIX} characters)"
        )
    listed = ", ".join(f"{kind.name} {name}" for kind, name in matches)
    raise UnknownVersionError(f"{wanted!r} matches several versions ({listed}): give more of it")


def _needs_the_store(kind: ModelKind) -> ModelRegistryError:
    return ModelRegistryError(
        f"{kind.name} versions serve through the scores stored per customer: changing the "
        "serving one rescores every customer, which needs the store "
        "(promote_rescoring, rollback_rescoring; `personalize models` does it)"
    )


def promote(model_dir: Path, version: str) -> ServingChange:
    """Make ``version`` (an id or a unique prefix) the serving version of its kind, for
    the kinds that serve from their files.

    Raises:
        UnknownVersionError: no such version.
        ModelRegistryError: its kind serves through stored scores (propensity: use
            :func:`promote_rescoring`).
    """
    kind, full = find_version(model_dir, version)
    if kind.rescored:
        raise _needs_the_store(kind)
    directory = kind.directory(model_dir)
    before = current_version(directory)
    if before != full:
        set_current(directory, full)
    return ServingChange(kind.name, before, full)


def rollback(model_dir: Path, kind_name: str = "recommender") -> ServingChange:
    """Serve again the version of ``kind_name`` that served before the current one, for
    the kinds that serve from their files.

    Raises:
        UnknownVersionError: no kind has that name.
        ModelRegistryError: nothing to roll back to, or the kind serves through stored
            scores (propensity: use :func:`rollback_rescoring`).
    """
    kind = model_kind(kind_name)
    if kind.rescored:
        raise _needs_the_store(kind)
    try:
        before, after = roll_back(kind.directory(model_dir))
    except ArtifactError as error:
        raise ModelRegistryError(f"{kind.name}: {error}") from None
    return ServingChange(kind.name, before, after)


async def promote_rescoring(
    store: SqlStore,
    model_dir: Path,
    version: str,
    *,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> ServingChange:
    """:func:`promote` for every kind: a propensity version first rescores every customer.

    The version's classifier is loaded (and refused with a clear error) before anything
    is written; then every customer's features as of ``now``, score and band are stored
    under the version's id in one transaction, and ``CURRENT`` changes only after it
    committed. The caller then outdates cached profile snapshots (Redis's generation).
    Promoting the serving version changes nothing.

    Raises:
        UnknownVersionError: no such version.
        SavedModelError: the version cannot score (no classifier, another scikit-learn
            release, damaged files); nothing was changed.
    """
    kind, full = find_version(model_dir, version)
    if not kind.rescored:
        return promote(model_dir, full)
    directory = kind.directory(model_dir)
    before = current_version(directory)
    if before == full:
        return ServingChange(kind.name, before, full)
    customers = await _rescore_with(store, directory / full, now, progress)
    set_current(directory, full)
    return ServingChange(kind.name, before, full, rescored=customers)


async def rollback_rescoring(
    store: SqlStore,
    model_dir: Path,
    kind_name: str = "recommender",
    *,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> ServingChange:
    """:func:`rollback` for every kind: a propensity rollback first rescores every
    customer with the version it returns to (as :func:`promote_rescoring` does).

    Raises:
        UnknownVersionError: no kind has that name.
        ModelRegistryError: nothing to roll back to.
        SavedModelError: the version rolled back to cannot score; nothing was changed.
    """
    kind = model_kind(kind_name)
    if not kind.rescored:
        return rollback(model_dir, kind_name)
    directory = kind.directory(model_dir)
    try:
        _, target = rollback_plan(directory)
    except ArtifactError as error:
        raise ModelRegistryError(f"{kind.name}: {error}") from None
    customers = await _rescore_with(store, directory / target, now, progress)
    before, after = roll_back(directory)
    return ServingChange(kind.name, before, after, rescored=customers)


async def _rescore_with(
    store: SqlStore, version_dir: Path, now: datetime | None, progress: ProgressCallback | None
) -> int:
    """Score every customer with the saved version and store the scores (committed)."""
    metadata = _json(version_dir / METADATA_FILE)
    # Reading and checking the classifier takes a moment; keep the loop free meanwhile.
    saved = await asyncio.to_thread(
        load_saved_model, version_dir, expected_sha256=str(metadata.get("sha256", ""))
    )
    async with store.sessions.begin() as session:
        scored = await rescore(session, saved, as_of=now or utc_now(), progress=progress)
    return len(scored)
