"""The promotion guardrail: a newly trained model serves only if it is not worse.

A new recommender becomes ``CURRENT`` only when its precision@10 on a recent hold-out is
at least :data:`GUARDRAIL_RATIO` (95 %) of the serving model's on the same hold-out;
otherwise it is kept as a candidate, and the verdict says why with both figures. The
propensity model follows the same rule on ROC AUC (:mod:`rasa_personalize.propensity.training`).

The hold-out is each customer's most recent interactions: ``protocols.time_split``
holds out the newest 20 % of every customer's rows (in the order they were stored) and
scores what each customer did next, as ``personalize evaluate`` scores a random split.

Both models are **refitted** on the same training rows (everything but the hold-out)
and scored on the same hold-out: the candidate's configuration and the serving
artifact's (its ALS parameters and EASE blend, from its ``metadata.json``). Scoring the
saved models themselves would not be fair: the new one has trained on the hold-out,
and the serving one on some of it, depending on when it was trained. So the guardrail
compares what the two trainings make of the same data: a configuration that tuning
chose on a random validation split but that predicts recent behaviour worse, or
parameters given by hand, is caught; a change in the data itself reaches both alike.

Stores of more than ``demo_data.TUNING_CUSTOMERS`` (5,000) customers are compared on
the interactions of that many of them drawn at random (seed 42), as tuning searches
them: both models on the same customers, at a cost that does not grow with the store.

With no serving model, or a hold-out of fewer than :data:`MIN_HOLDOUT_CUSTOMERS`
customers (the figures would be noise), the candidate is promoted and the verdict says
why. ``force`` promotes whatever the figures say, and the verdict records that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.demo_data import TUNING_CUSTOMERS, tuning_sample
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.evaluation import (
    DEFAULT_SEED,
    EvaluationData,
    EvaluationTask,
    HybridConfig,
    ModelConfig,
    RecommenderConfig,
    build_ranker,
    evaluate_ranker,
    popularity_ranker,
)
from rasa_personalize.recommend.protocols import time_split
from rasa_personalize.recommend.versions import METADATA_FILE, current_version

# A candidate must reach this share of the serving model's figure to replace it.
GUARDRAIL_RATIO: Final = 0.95
# Each customer's newest share of interactions held out to compare on.
HOLDOUT_FRACTION: Final = 0.2
# Below this many customers with a held-out purchase, one hit moves precision@10 by
# more than the 5 % margin: the guardrail does not judge then.
MIN_HOLDOUT_CUSTOMERS: Final = 50
HOLDOUT_K: Final = 10
# How each compared figure is named in a verdict's reason.
METRIC_LABELS: Final = {"auc": "ROC AUC"}


@dataclass(frozen=True)
class Verdict:
    """Whether a newly trained model serves, and why.

    Attributes:
        promoted: it became the serving version.
        metric: the figure compared (``precision@10`` or ``auc``).
        candidate: the new model's figure (None when not measured).
        serving: the serving model's figure on the same hold-out (None: none serves, or
            not measured).
        serving_version: the version that served before the decision (None: none).
        reason: one sentence, with both figures when they were compared.
        forced: promoted by ``--force`` whatever the figures.
    """

    promoted: bool
    metric: str
    candidate: float | None
    serving: float | None
    serving_version: str | None
    reason: str
    forced: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values."""
        return {
            "promoted": self.promoted,
            "metric": self.metric,
            "candidate": self.candidate,
            "serving": self.serving,
            "serving_version": self.serving_version,
            "reason": self.reason,
            "forced": self.forced,
        }


def judge(
    metric: str,
    candidate: float,
    serving: float | None,
    serving_version: str | None,
    *,
    force: bool = False,
    ratio: float = GUARDRAIL_RATIO,
) -> Verdict:
    """Promote when ``candidate >= ratio * serving`` (or nothing serves, or ``force``)."""
    if serving is None or serving_version is None:
        return Verdict(
            True, metric, candidate, None, None, "no model serves yet: the first one serves"
        )
    label = METRIC_LABELS.get(metric, metric)
    figures = (
        f"{label} {candidate:.4f} against {serving:.4f} for the serving model "
        f"{serving_version} on the same hold-out"
    )
    threshold = ratio * serving
    if candidate >= threshold:
        return Verdict(
            True,
            metric,
            candidate,
            serving,
            serving_version,
            f"{figures} (at least {ratio:.0%} of it)",
        )
    short = f"{figures}: below {ratio:.0%} of it ({threshold:.4f})"
    if force:
        return Verdict(
            True, metric, candidate, serving, serving_version, f"forced: {short}", forced=True
        )
    return Verdict(
        False, metric, candidate, serving, serving_version, f"kept as a candidate: {short}"
    )


def not_judged(metric: str, reason: str) -> Verdict:
    """Promoted without a comparison (too little data to compare on, or none serving)."""
    return Verdict(True, metric, None, None, None, reason)


def config_from_metadata(document: dict[str, Any]) -> ModelConfig:
    """What an ALS artifact serves, from its ``metadata.json``: ALS alone or the blend.

    Raises:
        ArtifactError: the parameters or the blend cannot be read.
    """
    try:
        als = RecommenderConfig(AlsParams(**dict(document["params"])), store_confidence())
        blend = document.get("blend") or {}
        if not blend:
            return als
        return HybridConfig(
            als,
            float(blend["ease_l2"]),
            float(blend["ease_weight"]),
            # Artifacts written before recency weighting have none.
            float(blend.get("ease_recency", 0.0)),
        )
    except (KeyError, TypeError, ValueError, InvalidInputError) as error:
        raise ArtifactError(f"cannot read the serving model's parameters: {error}") from None


def serving_config(directory: Path) -> tuple[str, ModelConfig] | None:
    """The serving ALS version in ``directory`` and its configuration; None when none serves.

    Raises:
        ArtifactError: ``CURRENT`` names a version whose metadata cannot be read.
    """
    version = current_version(directory)
    if version is None:
        return None
    try:
        document = json.loads((directory / version / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"cannot read the serving model {version}: {error}") from None
    return version, config_from_metadata(document)


@dataclass(frozen=True)
class HoldoutFigures:
    """precision@10 of the candidate and the serving configuration on one hold-out."""

    candidate: float
    serving: float | None
    customers: int


def holdout_task(data: EvaluationData) -> EvaluationTask:
    """The recent hold-out: each customer's newest :data:`HOLDOUT_FRACTION` of rows."""
    return EvaluationTask.from_split(data, time_split(data, test_fraction=HOLDOUT_FRACTION))


def compare_on_holdout(
    task: EvaluationTask, candidate: ModelConfig, serving: ModelConfig | None
) -> HoldoutFigures:
    """Fit each configuration on the task's training rows and score both on its hold-out.

    Customers the models do not know get popularity, as when serving. The same
    configuration is fitted once: its figure is the same for both.

    Raises:
        InvalidInputError: no customer has a held-out positive.
    """
    popularity = popularity_ranker(task.train)

    def precision(config: ModelConfig) -> float:
        ranker = build_ranker(task.train, config, fallback=popularity)
        return evaluate_ranker(ranker, task, HOLDOUT_K).precision

    ours = precision(candidate)
    theirs = None if serving is None else ours if serving == candidate else precision(serving)
    return HoldoutFigures(ours, theirs, len(task.users))


def check_recommender(
    data: EvaluationData,
    candidate: ModelConfig,
    directory: Path,
    *,
    force: bool = False,
) -> tuple[Verdict, HoldoutFigures | None]:
    """The guardrail's verdict on a candidate configuration trained on ``data``.

    Args:
        data: the store's interactions (``demo_data.load_store_events``).
        candidate: what the new artifact serves.
        directory: the ALS versions (``als_dir(model_dir)``).
        force: promote whatever the figures say.

    Returns:
        The verdict, and the hold-out figures when they were measured.
    """
    metric = f"precision@{HOLDOUT_K}"
    unreadable = None
    try:
        serving = serving_config(directory)
    except ArtifactError as error:
        # A serving model that cannot be read cannot be served either: replace it.
        serving, unreadable = None, str(error)
    task = holdout_task(tuning_sample(data, TUNING_CUSTOMERS, seed=DEFAULT_SEED))
    if len(task.users) < MIN_HOLDOUT_CUSTOMERS:
        if unreadable is not None:
            return not_judged(metric, f"the serving model is unreadable ({unreadable})"), None
        if serving is None:
            return not_judged(metric, "no model serves yet: the first one serves"), None
        return not_judged(
            metric,
            f"too little recent history to compare on ({len(task.users)} customers with a "
            f"held-out purchase, fewer than {MIN_HOLDOUT_CUSTOMERS})",
        ), None
    figures = compare_on_holdout(task, candidate, serving[1] if serving else None)
    ours = round(figures.candidate, 4)
    if unreadable is not None:
        return Verdict(
            True, metric, ours, None, None, f"the serving model is unreadable ({unreadable})"
        ), figures
    theirs = None if figures.serving is None else round(figures.serving, 4)
    return judge(metric, ours, theirs, serving[0] if serving else None, force=force), figures
