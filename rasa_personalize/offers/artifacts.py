"""Acceptance models on disk, and the holder a running server swaps them in with.

A version (see :mod:`rasa_personalize.recommend.versions` for how versions are written,
listed and swapped)::

    models/personalize/offers/
        CURRENT
        20260101T120000123456Z-1a2b3c4d/
            offers.json          the parameters and the counts per (offer, segment),
                                 with the estimates (for people: loading refits them)
            metadata.json        version, trained_at, params, totals, checksum

The counts are per offer and segment: nothing of any one customer, so an erasure has
nothing to remove here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Final

from rasa_personalize.offers.errors import OfferInputError
from rasa_personalize.offers.model import OfferModel, OfferParams
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.versions import (
    METADATA_FILE,
    ArtifactHolder,
    check_payload,
    write_version,
)
from rasa_personalize.store.offers import OfferCount

logger = logging.getLogger(__name__)

OFFERS_FORMAT: Final = 1
OFFERS_FILE: Final = "offers.json"


def offers_dir(model_dir: Path | str) -> Path:
    """Where acceptance models live under the model directory."""
    return Path(model_dir) / "offers"


@dataclass(frozen=True)
class OfferModelMetadata:
    """What ``metadata.json`` holds: the version, when, the parameters and the totals."""

    version: str
    trained_at: str
    params: dict[str, Any]
    totals: dict[str, int] = field(default_factory=dict)
    offers_sha256: str = ""
    format: int = OFFERS_FORMAT

    def to_json(self) -> str:
        """The metadata as pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def save_offer_model(
    model: OfferModel,
    model_dir: Path | str,
    *,
    totals: dict[str, int] | None = None,
    make_current: bool = True,
) -> OfferModel:
    """Write ``model`` as a new version under ``offers_dir(model_dir)`` and (by default)
    serve it; returns the model with its version id.

    Raises:
        ArtifactError: the version directory already exists.
    """
    when = model.trained_at.astimezone(timezone.utc)
    document = {
        "format": OFFERS_FORMAT,
        "params": model.params.to_dict(),
        "overall_rate": model.overall_rate,
        "offer_rates": dict(model.offer_rates),
        "counts": [
            {
                "offer": count.offer,
                "segment": count.segment,
                "exposures": count.exposures,
                "accepted": count.accepted,
                "p_accept": model.estimate(count.offer, count.segment).p_accept,
            }
            for count in model.counts
        ],
    }

    def write(handle: IO[bytes]) -> None:
        handle.write(json.dumps(document, indent=2, sort_keys=True).encode("utf-8"))

    def describe(version: str, digest: str) -> OfferModelMetadata:
        return OfferModelMetadata(
            version=version,
            trained_at=when.isoformat(),
            params=model.params.to_dict(),
            totals=dict(totals or {}),
            offers_sha256=digest,
        )

    metadata, _ = write_version(
        offers_dir(model_dir), when, OFFERS_FILE, write, describe, make_current=make_current
    )
    logger.info("saved acceptance model %s (%d cells)", metadata.version, len(model.counts))
    return replace(model, version=metadata.version)


def load_offer_model(directory: Path | str) -> OfferModel:
    """Load one version directory (the estimates are refitted from its counts).

    Raises:
        ArtifactError: files missing, checksum wrong, or contents invalid.
    """
    path = Path(directory)
    try:
        metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        check_payload(path, OFFERS_FILE, str(metadata.get("offers_sha256", "")))
        document = json.loads((path / OFFERS_FILE).read_text(encoding="utf-8"))
    except OSError as error:
        raise ArtifactError(f"cannot read acceptance model {path}: {error}") from error
    except ValueError as error:  # not JSON
        raise ArtifactError(f"cannot read acceptance model {path}: {error}") from error
    try:
        unreadable = {int(document["format"]), int(metadata["format"])} - {OFFERS_FORMAT}
        if unreadable:
            raise ArtifactError(
                f"acceptance model format {min(unreadable)} is not supported (this code "
                f"reads {OFFERS_FORMAT}); run `personalize offers train` again"
            )
        params = OfferParams(**document["params"])
        counts = [
            OfferCount(
                str(row["offer"]), str(row["segment"]), int(row["exposures"]), int(row["accepted"])
            )
            for row in document["counts"]
        ]
        trained_at = datetime.fromisoformat(str(metadata["trained_at"]))
        return OfferModel.fit(counts, params, trained_at, version=str(metadata["version"]))
    except (KeyError, TypeError, ValueError, AttributeError, OfferInputError) as error:
        raise ArtifactError(f"invalid acceptance model {path}: {error}") from error


def offer_model_holder(model_dir: Path | str, check_every_s: float) -> ArtifactHolder[OfferModel]:
    """The holder a server reads the current acceptance model from: one reference, with a
    look at ``CURRENT`` at most every ``check_every_s`` (a new version is swapped in)."""
    return ArtifactHolder(offers_dir(model_dir), load_offer_model, check_interval_s=check_every_s)
