"""One propensity run: time split -> features -> fit and calibrate -> measure -> score all.

:func:`train_propensity` is what ``personalize propensity train`` runs. With ``now`` the
end of the data and the target ``purchase_7d``:

1. **Time split.** Features come from each customer's history before the cut-off
   ``now - 7 days``; the label is whether they bought at or after the cut-off and before
   ``now``. Only customers created before the cut-off take part: the others had no
   chance to show anything.
2. **Fit.** The customers are split at random (stratified by label, seeded) into a
   training part (60 %), a calibration part (15 %) and a test part (25 %). The booster
   learns on the first, the calibration on the second (:mod:`.model`).
3. **Measure.** ROC AUC, PR AUC, Brier score and calibration bins on the test part, for
   the model and for the two baselines fitted on the same training part
   (:mod:`.evaluation`). Where the store holds the demo generator's true probabilities,
   they are measured on the same customers: the best any model could do.
4. **Score.** Every customer's features as of ``now`` (the same columns), the model's
   calibrated probability of a purchase in the next 7 days, its band
   (:mod:`.bands`), stored per customer with the model version (:mod:`.scoring`, which
   ``personalize models promote`` and ``rollback`` run too).
5. **Save.** The model card (version, split, feature layout, cut-offs, figures; no
   customer data) and the fitted classifier under
   ``<model_dir>/propensity/<target>/<version>/`` (:mod:`.artifacts`), so that the
   version can serve again later without training.

The guardrail (:mod:`rasa_personalize.recommend.guardrail`): the serving model is the one
whose scores are stored (``CURRENT`` of the target's versions). A new model replaces
them only if its ROC AUC on the held-out customers is at least 95 % of the serving
model's on the same customers. The serving model's saved classifier learnt from an
older split, maybe from these very customers' labels, so its parameters (from its card)
are refitted on the same training and calibration parts for that comparison. Otherwise
the new scores are not stored and the version is kept as a candidate; ``force`` stores
them anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.clock import utc_now
from rasa_personalize.propensity.artifacts import (
    ESTIMATOR_FILE,
    MODEL_FILE,
    EstimatorRecord,
    dump_estimator,
)
from rasa_personalize.propensity.bands import BandCutoffs
from rasa_personalize.propensity.errors import NotEnoughDataError, PropensityInputError
from rasa_personalize.propensity.evaluation import (
    CalibrationBin,
    RecencyBaseline,
    Scores,
    SegmentRuleBaseline,
    archetypes,
    calibration_bins,
    score,
)
from rasa_personalize.propensity.features import (
    FeatureLayout,
    PropensityFeatures,
    compute_features,
    feature_layout,
)
from rasa_personalize.propensity.model import PropensityModel, PropensityParams
from rasa_personalize.propensity.scoring import score_customers, store_scores
from rasa_personalize.recommend.guardrail import Verdict, judge
from rasa_personalize.recommend.versions import (
    current_version,
    prune_artifacts,
    write_version,
)
from rasa_personalize.store.features import count_customers
from rasa_personalize.store.propensity import (
    count_interactions_before,
    purchasers_between,
    read_true_probabilities,
)
from rasa_personalize.store.records import PROPENSITY_TARGETS, PURCHASE_7D
from rasa_personalize.store.types import Session

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]

# How far ahead each target looks; also the length of its label window.
HORIZONS: Final[Mapping[str, timedelta]] = {PURCHASE_7D: timedelta(days=7)}
MIN_POSITIVES: Final = 20
MIN_NEGATIVES: Final = 20
TEST_SHARE: Final = 0.25
CALIBRATION_SHARE: Final = 0.2  # of what the test part leaves
PROPENSITY_DIRECTORY: Final = "propensity"
# The card's format: 2 adds the feature layout and the saved classifier's record.
MODEL_FORMAT: Final = 2
KEEP_VERSIONS: Final = 5


@dataclass(frozen=True)
class TruthComparison:
    """The model against the true probabilities the demo generator drew (test part).

    Attributes:
        auc, brier: the true probabilities' own figures on the test labels: the ceiling.
        mean_abs_error: mean |model score - true probability| over those customers.
        customers: test customers with a known truth.
    """

    auc: float
    brier: float
    mean_abs_error: float
    customers: int


@dataclass(frozen=True)
class PropensityReport:
    """What a run measured and stored. JSON-ready through :meth:`to_json_dict`."""

    target: str
    model_version: str
    trained_at: datetime
    as_of: datetime
    cutoff: datetime
    model: Scores
    baselines: Mapping[str, Scores]
    calibration: Mapping[str, tuple[CalibrationBin, ...]]
    calibration_method: str
    boosting_rounds: int
    cutoffs: BandCutoffs
    band_counts: Mapping[str, int]
    customers: int
    training_customers: int
    test_customers: int
    positives: int
    truth: TruthComparison | None
    feature_names: tuple[str, ...]
    params: PropensityParams
    seconds: float = 0.0
    model_path: Path | None = None
    # The guardrail's decision: False when the scores were not stored (a candidate).
    promoted: bool = True
    guardrail: Verdict | None = None
    # The columns the model reads, and its saved classifier (None: not saved).
    layout: FeatureLayout | None = None
    estimator: EstimatorRecord | None = None

    def card(self) -> dict[str, Any]:
        """The model card saved with the version: everything but the version and path."""
        return {
            "format": MODEL_FORMAT,
            "target": self.target,
            "trained_at": self.trained_at.isoformat(),
            "as_of": self.as_of.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "params": asdict(self.params),
            "features": list(self.feature_names),
            "calibration_method": self.calibration_method,
            "boosting_rounds": self.boosting_rounds,
            "band_cutoffs": asdict(self.cutoffs),
            "band_counts": dict(self.band_counts),
            "customers": self.customers,
            "training_customers": self.training_customers,
            "test_customers": self.test_customers,
            "positives": self.positives,
            "model": asdict(self.model),
            "baselines": {name: asdict(figures) for name, figures in self.baselines.items()},
            "calibration": {
                name: [asdict(group) for group in groups]
                for name, groups in self.calibration.items()
            },
            "truth": asdict(self.truth) if self.truth is not None else None,
            "guardrail": self.guardrail.to_json_dict() if self.guardrail is not None else None,
            "layout": self.layout.to_json_dict() if self.layout is not None else None,
            "estimator": self.estimator.to_json_dict() if self.estimator is not None else None,
        }


@dataclass(frozen=True, eq=False)
class PropensityRun:
    """A finished run: its report, and the test part's labels and scores (for pictures)."""

    report: PropensityReport
    test_labels: NDArray[np.bool_]
    test_scores: Mapping[str, NDArray[np.float64]]


@dataclass(frozen=True)
class _Metadata:
    """``metadata.json`` of a version (see ``recommend.versions.write_version``)."""

    version: str
    target: str
    trained_at: str
    sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def propensity_dir(model_dir: Path, target: str) -> Path:
    """Where the versions of a target's model cards live."""
    return model_dir / PROPENSITY_DIRECTORY / target


async def train_propensity(
    session: Session,
    *,
    target: str = PURCHASE_7D,
    now: datetime | None = None,
    model_dir: Path | None = None,
    params: PropensityParams | None = None,
    cutoffs: BandCutoffs | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> PropensityRun:
    """Train, measure and store a propensity model (see the module docstring).

    Args:
        session: a session in the caller's transaction; nothing is committed here.
        target: what is predicted (only ``purchase_7d`` so far).
        now: the end of the data (default: now); the label window ends here.
        model_dir: where the version (card and classifier) is saved (None: not saved).
        params: how the classifier is fitted.
        cutoffs: fixed band cut-offs (None: the terciles of the training scores).
        progress: called as ``progress(stage, done, total)``.
        force: store the new scores even when the guardrail would keep the model as a
            candidate (only with ``model_dir``: without it nothing is compared).

    Raises:
        PropensityInputError: unknown target, naive ``now``, bad parameters.
        NotEnoughDataError: no customers, no history before the cut-off, or fewer than
            :data:`MIN_POSITIVES` buyers (:data:`MIN_NEGATIVES` non-buyers) in the window.
    """
    started = time.perf_counter()
    now, params = _checked(target, now or utc_now(), params or PropensityParams())
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    cutoff = now - HORIZONS[target]

    customers = await count_customers(session)
    if customers == 0:
        raise NotEnoughDataError(
            "the store has no customers: import them or seed the demo shop first "
            "(personalize seed-demo)"
        )
    if await count_interactions_before(session, cutoff) == 0:
        raise NotEnoughDataError(
            f"no interactions before {cutoff:%Y-%m-%d %H:%M} UTC: the model learns from "
            f"the history before the last {HORIZONS[target].days} days"
        )
    layout = await feature_layout(session, cutoff)
    history = await compute_features(
        session, layout, as_of=cutoff, stage="history", progress=notify, expected=customers
    )
    buyers = await purchasers_between(session, cutoff, now)
    labels = np.isin(history.customer_ids, buyers)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives < MIN_POSITIVES or negatives < MIN_NEGATIVES:
        raise NotEnoughDataError(
            f"too few customers to learn from: {positives:,} bought and {negatives:,} did "
            f"not between {cutoff:%Y-%m-%d} and {now:%Y-%m-%d}; at least {MIN_POSITIVES} "
            f"of each are needed"
        )

    notify("fitting", 0, 1)
    fitted = await asyncio.to_thread(_fit_and_measure, history, labels, params)
    notify("fitting", 1, 1)
    truth = await _compare_with_truth(session, history, labels, fitted)
    verdict = None
    if model_dir is not None:
        notify("guardrail", 0, 1)
        verdict = await asyncio.to_thread(
            _guardrail,
            propensity_dir(model_dir, target),
            _Candidate(history, labels, params, fitted.figures["model"].auc),
            force=force,
        )
        notify("guardrail", 1, 1)

    band_cutoffs = cutoffs or BandCutoffs.terciles(fitted.training_scores)
    current = await score_customers(
        session, fitted.model, layout, band_cutoffs, as_of=now, progress=notify, expected=customers
    )
    estimator, record = (
        await asyncio.to_thread(dump_estimator, fitted.model)
        if model_dir is not None
        else (b"", None)
    )
    trained_at = utc_now()
    report = PropensityReport(
        target=target,
        model_version="",
        trained_at=trained_at,
        as_of=now,
        cutoff=cutoff,
        model=fitted.figures["model"],
        baselines={name: fitted.figures[name] for name in ("recency", "segment_rule")},
        calibration=fitted.calibration,
        calibration_method=fitted.model.calibration_,
        boosting_rounds=fitted.model.n_iter_,
        cutoffs=band_cutoffs,
        band_counts=current.band_counts(),
        customers=len(current),
        training_customers=len(history),
        test_customers=int(fitted.test.sum()),
        positives=positives,
        truth=truth,
        feature_names=layout.names(),
        params=params,
        promoted=verdict is None or verdict.promoted,
        guardrail=verdict,
        layout=layout,
        estimator=record,
    )
    payload = _payload(report)
    version = _version(trained_at, payload)
    total = len(current)
    if report.promoted:
        await store_scores(session, current, target=target, model_version=version, progress=notify)
    elif verdict is not None:
        logger.warning("propensity %s: model %s not stored: %s", target, version, verdict.reason)
    path = (
        _save(model_dir, target, trained_at, (payload, estimator), version, serve=report.promoted)
        if model_dir
        else None
    )
    seconds = time.perf_counter() - started
    logger.info(
        "propensity %s: model %s, AUC %.3f on %d test customers, %d customers scored",
        target, version, report.model.auc, report.test_customers, total,
    )  # fmt: skip
    return PropensityRun(
        report=_finished(report, version, path, seconds),
        test_labels=fitted.test_labels,
        test_scores=fitted.test_scores,
    )


def _checked(
    target: str, now: datetime, params: PropensityParams
) -> tuple[datetime, PropensityParams]:
    """The run's inputs, or the error that names what is wrong with them."""
    if target not in PROPENSITY_TARGETS:
        raise PropensityInputError(
            f"unknown target {target!r}; the targets are {', '.join(PROPENSITY_TARGETS)}"
        )
    if now.tzinfo is None:
        raise PropensityInputError("propensity: now must be timezone-aware (UTC)")
    problems = params.problems()
    if problems:
        raise PropensityInputError("propensity model: " + "; ".join(problems))
    return now, params


@dataclass(frozen=True, eq=False)
class _Fitted:
    model: PropensityModel
    test: NDArray[np.bool_]
    test_labels: NDArray[np.bool_]
    test_scores: dict[str, NDArray[np.float64]]
    figures: dict[str, Scores]
    calibration: dict[str, tuple[CalibrationBin, ...]]
    training_scores: NDArray[np.float64]


def split_parts(
    labels: NDArray[np.bool_], seed: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Masks of the training, calibration and test parts, stratified by label."""
    rng = np.random.default_rng(seed)
    part = np.zeros(len(labels), dtype=np.int64)  # 0 train, 1 calibration, 2 test
    for value in (False, True):
        members = rng.permutation(np.flatnonzero(labels == value))
        n_test = round(len(members) * TEST_SHARE)
        n_calibration = round((len(members) - n_test) * CALIBRATION_SHARE)
        part[members[:n_test]] = 2
        part[members[n_test : n_test + n_calibration]] = 1
    return part == 0, part == 1, part == 2


def _fit_and_measure(
    history: PropensityFeatures, labels: NDArray[np.bool_], params: PropensityParams
) -> _Fitted:
    """Fit the model and the baselines and measure all three on the test part (CPU only)."""
    train, calibrate, test = split_parts(labels, params.seed)
    matrix = history.matrix
    model = PropensityModel(params).fit(
        matrix[train], labels[train], matrix[calibrate], labels[calibrate]
    )
    fit_part = train | calibrate
    recency = history.column("recency_days")
    segments = archetypes(history)
    segment_array = np.array(segments, dtype=object)
    recency_model = RecencyBaseline().fit(recency[fit_part], labels[fit_part])
    segment_model = SegmentRuleBaseline().fit(list(segment_array[fit_part]), labels[fit_part])
    test_labels = labels[test]
    test_scores = {
        "model": model.predict(matrix[test]),
        "recency": recency_model.predict(recency[test]),
        "segment_rule": segment_model.predict(list(segment_array[test])),
    }
    return _Fitted(
        model=model,
        test=test,
        test_labels=test_labels,
        test_scores=test_scores,
        figures={name: score(test_labels, values) for name, values in test_scores.items()},
        calibration={
            name: calibration_bins(test_labels, values) for name, values in test_scores.items()
        },
        training_scores=model.predict(matrix),
    )


async def _compare_with_truth(
    session: Session, history: PropensityFeatures, labels: NDArray[np.bool_], fitted: _Fitted
) -> TruthComparison | None:
    """The model and the true probabilities on the test customers whose truth is known."""
    truth = await read_true_probabilities(session)
    if not len(truth):
        return None
    test_ids = history.customer_ids[fitted.test]
    order = np.argsort(truth.customer_ids)
    known_ids = truth.customer_ids[order]
    position = np.minimum(np.searchsorted(known_ids, test_ids), max(len(known_ids) - 1, 0))
    known = known_ids[position] == test_ids
    if known.sum() < 2 or len(np.unique(fitted.test_labels[known])) < 2:
        return None
    true_probabilities = truth.probabilities[order][position][known]
    figures = score(fitted.test_labels[known], true_probabilities)
    model_scores = fitted.test_scores["model"][known]
    return TruthComparison(
        auc=figures.auc,
        brier=figures.brier,
        mean_abs_error=round(float(np.abs(model_scores - true_probabilities).mean()), 4),
        customers=int(known.sum()),
    )


def _payload(report: PropensityReport) -> bytes:
    return json.dumps(report.card(), indent=2, sort_keys=True).encode()


def _version(trained_at: datetime, payload: bytes) -> str:
    # The id write_version gives the same payload: training time plus its digest.
    digest = hashlib.sha256(payload).hexdigest()
    return f"{trained_at.astimezone(timezone.utc):%Y%m%dT%H%M%S%fZ}-{digest[:8]}"


@dataclass(frozen=True, eq=False)
class _Candidate:
    """A new model as the guardrail sees it: its data, parameters and held-out AUC."""

    history: PropensityFeatures
    labels: NDArray[np.bool_]
    params: PropensityParams
    auc: float


def _guardrail(directory: Path, candidate: _Candidate, *, force: bool) -> Verdict:
    """The verdict on a new model with ROC AUC ``candidate.auc`` on the held-out customers.

    The serving model's parameters are refitted on the same parts (its saved classifier
    learnt from another split); the same parameters give the same model, so they are not
    fitted twice.
    """
    params, labels, auc = candidate.params, candidate.labels, candidate.auc
    serving = current_version(directory)
    if serving is None:
        return judge("auc", auc, None, None, force=force)
    try:
        card = model_card(directory / serving)
        stored = PropensityParams(**card["params"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"the serving model card {serving} is unreadable ({type(error).__name__})"
        return Verdict(True, "auc", auc, None, None, reason)
    # Threads change how fast, not what is learnt.
    stored = replace(stored, n_threads=params.n_threads)
    if stored == params:
        return judge("auc", auc, auc, serving, force=force)
    train, calibrate, test = split_parts(labels, params.seed)
    matrix = candidate.history.matrix
    model = PropensityModel(stored).fit(
        matrix[train], labels[train], matrix[calibrate], labels[calibrate]
    )
    serving_auc = score(labels[test], model.predict(matrix[test])).auc
    return judge("auc", auc, serving_auc, serving, force=force)


def _save(
    model_dir: Path,
    target: str,
    trained_at: datetime,
    files: tuple[bytes, bytes],
    version: str,
    *,
    serve: bool = True,
) -> Path:
    """Write the card (the payload, which names the version) and the classifier."""
    directory = propensity_dir(model_dir, target)
    payload, estimator = files

    def write(handle: IO[bytes]) -> None:
        handle.write(payload)

    def describe(written: str, digest: str) -> _Metadata:
        return _Metadata(written, target, trained_at.isoformat(), digest)

    metadata, path = write_version(
        directory,
        trained_at,
        MODEL_FILE,
        write,
        describe,
        make_current=serve,
        extra_files={ESTIMATOR_FILE: estimator},
    )
    if metadata.version != version:
        raise PropensityInputError(
            f"model card saved as {metadata.version}, but the scores name {version}"
        )
    prune_artifacts(directory, keep=KEEP_VERSIONS)
    return path


def _finished(
    report: PropensityReport, version: str, path: Path | None, seconds: float
) -> PropensityReport:
    return replace(report, model_version=version, model_path=path, seconds=round(seconds, 2))


def model_card(path: Path) -> dict[str, Any]:
    """Read a saved model card (``<version dir>/model.json``)."""
    loaded: dict[str, Any] = json.loads((path / MODEL_FILE).read_text(encoding="utf-8"))
    return loaded
