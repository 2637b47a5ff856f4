"""A propensity version on disk: its model card and its fitted classifier, and loading them.

Each version directory under ``<model_dir>/propensity/<target>/`` holds::

    model.json        the model card: figures, parameters, feature layout, band cut-offs,
                      and the ``estimator`` record (file, format, checksum, releases)
    estimator.skops   the calibrated booster: scikit-learn objects in the skops format
    metadata.json     version, target, training time, the card's SHA-256

The card names the version (its SHA-256 is in the version id) and holds the
estimator's SHA-256, so a changed file of either is found on load.

Why skops and not pickle or joblib: loading a pickle runs whatever code the file names,
so a model directory anyone else can write to would run their code in the next
``personalize models promote``. skops stores the same scikit-learn objects as data and
loads only the types it knows to be safe, plus :data:`TRUSTED_TYPES` (the booster's
trees, plain arrays of nodes), so a damaged or crafted file is refused, not run.

scikit-learn does not promise that a model saved by one release loads or scores the same
in another, so the card records the release, and :func:`load_saved_model` refuses a
classifier saved by another major.minor release with an error that says to train again,
rather than fail later or score silently wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import sklearn
import skops
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from rasa_personalize.propensity.bands import BandCutoffs
from rasa_personalize.propensity.errors import (
    NotFittedError,
    PropensityInputError,
    SavedModelError,
)
from rasa_personalize.propensity.features import FeatureLayout
from rasa_personalize.propensity.model import PropensityModel, PropensityParams

MODEL_FILE: Final = "model.json"
ESTIMATOR_FILE: Final = "estimator.skops"
# Bumped when what estimator.skops holds changes shape (not with scikit-learn releases).
ESTIMATOR_FORMAT: Final = 1
# Types outside skops' own safe list that the booster needs: its trees, which hold only
# arrays of nodes and thresholds.
TRUSTED_TYPES: Final = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)
_RETRAIN: Final = "train a new model instead (`personalize propensity train`)"


@dataclass(frozen=True)
class EstimatorRecord:
    """The ``estimator`` entry of a model card: how to find and trust the classifier.

    Attributes:
        file: its file name in the version directory.
        format: :data:`ESTIMATOR_FORMAT` when it was saved.
        sha256: of the file.
        scikit_learn: the scikit-learn release that fitted and saved it.
        skops: the skops release that wrote the file.
    """

    file: str
    format: int
    sha256: str
    scikit_learn: str
    skops: str

    def to_json_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class SavedPropensityModel:
    """A loaded version: everything that scores customers as its training run did.

    Attributes:
        version: the version id (its directory's name).
        target: what it predicts (``purchase_7d``).
        model: the fitted, calibrated classifier.
        layout: the feature columns it reads.
        cutoffs: the band cut-offs it was trained with.
    """

    version: str
    target: str
    model: PropensityModel
    layout: FeatureLayout
    cutoffs: BandCutoffs


def dump_estimator(model: PropensityModel) -> tuple[bytes, EstimatorRecord]:
    """The fitted booster and calibrator as skops bytes, and the card's record of them.

    Raises:
        NotFittedError: the model has not been fitted.
    """
    if not hasattr(model, "booster_"):
        raise NotFittedError("propensity model: call fit before saving it")
    content = skops.io.dumps({"booster": model.booster_, "calibrator": model.calibrator_})
    record = EstimatorRecord(
        file=ESTIMATOR_FILE,
        format=ESTIMATOR_FORMAT,
        sha256=hashlib.sha256(content).hexdigest(),
        scikit_learn=sklearn.__version__,
        skops=skops.__version__,
    )
    return content, record


def read_card(version_dir: Path) -> dict[str, Any]:
    """A version's model card (``model.json``).

    Raises:
        SavedModelError: no readable card.
    """
    return _parse_card(_read_bytes(version_dir / MODEL_FILE, version_dir.name), version_dir.name)


def _parse_card(content: bytes, version: str) -> dict[str, Any]:
    try:
        loaded = json.loads(content)
    except ValueError:
        raise SavedModelError(f"propensity model {version}: {MODEL_FILE} is not JSON") from None
    if not isinstance(loaded, dict):
        raise SavedModelError(f"propensity model {version}: {MODEL_FILE} is not an object")
    return loaded


def load_saved_model(version_dir: Path, *, expected_sha256: str = "") -> SavedPropensityModel:
    """Load a version to score with: its card, then its classifier, checked on the way.

    Args:
        version_dir: ``<model_dir>/propensity/<target>/<version>``.
        expected_sha256: the card's checksum from ``metadata.json`` ("": not checked).

    Raises:
        SavedModelError: no classifier (a version of an older release), one saved by
            another scikit-learn major.minor release or in another format, a file
            that does not match its checksum, or one skops refuses; the message says
            to train again where that is the way out.
    """
    version = version_dir.name
    card_bytes = _read_bytes(version_dir / MODEL_FILE, version)
    if expected_sha256 and hashlib.sha256(card_bytes).hexdigest() != expected_sha256:
        raise SavedModelError(
            f"propensity model {version}: {MODEL_FILE} does not match its checksum in "
            "metadata.json (it was changed after training); " + _RETRAIN
        )
    card = _parse_card(card_bytes, version)
    record = _estimator_record(card, version)
    _check_releases(record, version)
    content = _read_bytes(version_dir / record.file, version)
    if hashlib.sha256(content).hexdigest() != record.sha256:
        raise SavedModelError(
            f"propensity model {version}: {record.file} does not match its checksum in "
            f"{MODEL_FILE} (it was changed or cut short after training); " + _RETRAIN
        )
    booster, calibrator = _load_estimator(content, version)
    try:
        params = PropensityParams(**card["params"])
        layout = FeatureLayout.from_json_dict(card["layout"])
        cutoffs = BandCutoffs(**card["band_cutoffs"])
        model = PropensityModel.from_fitted(params, booster, calibrator)
        target = str(card["target"])
    except (KeyError, TypeError, PropensityInputError) as error:
        raise SavedModelError(
            f"propensity model {version}: its card does not describe a model to load "
            f"({type(error).__name__}: {error}); " + _RETRAIN
        ) from None
    columns = len(layout.names())
    if booster.n_features_in_ != columns:
        raise SavedModelError(
            f"propensity model {version}: the classifier reads {booster.n_features_in_} "
            f"features but its card lays out {columns}; " + _RETRAIN
        )
    return SavedPropensityModel(version, target, model, layout, cutoffs)


def _read_bytes(path: Path, version: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SavedModelError(
            f"propensity model {version} has no {path.name}: it was deleted, or the version "
            "is incomplete; " + _RETRAIN
        ) from None
    except OSError as error:
        raise SavedModelError(
            f"propensity model {version}: cannot read {path.name} ({type(error).__name__})"
        ) from None


def _estimator_record(card: dict[str, Any], version: str) -> EstimatorRecord:
    entry = card.get("estimator")
    if entry is None:
        raise SavedModelError(
            f"propensity model {version} has no saved classifier: it was trained by an older "
            "release, which kept only its model card and scores, so it cannot score "
            "customers again; " + _RETRAIN
        )
    try:
        return EstimatorRecord(
            file=str(entry["file"]),
            format=int(entry["format"]),
            sha256=str(entry["sha256"]),
            scikit_learn=str(entry["scikit_learn"]),
            skops=str(entry["skops"]),
        )
    except (KeyError, TypeError, ValueError):
        raise SavedModelError(
            f"propensity model {version}: the card's estimator record is incomplete; " + _RETRAIN
        ) from None


def _check_releases(record: EstimatorRecord, version: str) -> None:
    if record.format != ESTIMATOR_FORMAT:
        raise SavedModelError(
            f"propensity model {version} was saved in estimator format {record.format}, and "
            f"this release reads format {ESTIMATOR_FORMAT}; " + _RETRAIN
        )
    running = sklearn.__version__
    if _major_minor(record.scikit_learn) != _major_minor(running):
        raise SavedModelError(
            f"propensity model {version} was saved by scikit-learn {record.scikit_learn} and "
            f"this is scikit-learn {running}: a classifier is not loaded across scikit-learn "
            "releases (it could fail, or score differently); train the model again with "
            "this release (`personalize propensity train`)"
        )


def _major_minor(release: str) -> tuple[str, ...]:
    return tuple(release.split(".")[:2])


def _load_estimator(
    content: bytes, version: str
) -> tuple[HistGradientBoostingClassifier, IsotonicRegression | LogisticRegression]:
    try:
        parts = skops.io.loads(content, trusted=list(TRUSTED_TYPES))
    except Exception as error:
        # skops raises many kinds (a refused type, a broken archive, a schema it does
        # not know); all mean the same here: this file cannot be used.
        raise SavedModelError(
            f"propensity model {version}: its classifier cannot be loaded "
            f"({type(error).__name__}); " + _RETRAIN
        ) from None
    if not isinstance(parts, dict) or {"booster", "calibrator"} - parts.keys():
        raise SavedModelError(
            f"propensity model {version}: {ESTIMATOR_FILE} does not hold a booster and a "
            "calibrator; " + _RETRAIN
        )
    return parts["booster"], parts["calibrator"]
