"""``personalize offers train``: count what followed each offer shown, fit, write a version.

Reads the store once (:func:`rasa_personalize.store.offers.offer_outcomes`), fits an
:class:`~rasa_personalize.offers.model.OfferModel` and writes it under
``PERSONALIZE_MODEL_DIR/offers/``; running servers swap it in at their next model check
(``PERSONALIZE_MODEL_CHECK_EVERY_S``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rasa_personalize.clock import utc_now
from rasa_personalize.offers.artifacts import save_offer_model
from rasa_personalize.offers.errors import NotEnoughDataError
from rasa_personalize.offers.model import OfferModel, OfferParams
from rasa_personalize.store.offers import OfferOutcomes, offer_outcomes
from rasa_personalize.store.types import Session


@dataclass(frozen=True)
class OfferTrainingRun:
    """The model written, what it was learned from, and how long it took."""

    model: OfferModel
    outcomes: OfferOutcomes
    seconds: float

    @property
    def exposures(self) -> int:
        """Exposures counted (their window is over)."""
        return sum(count.exposures for count in self.outcomes.counts)

    @property
    def accepted(self) -> int:
        """Of those, the accepted ones."""
        return sum(count.accepted for count in self.outcomes.counts)


async def train_offer_model(
    session: Session,
    *,
    model_dir: Path,
    params: OfferParams | None = None,
    now: datetime | None = None,
) -> OfferTrainingRun:
    """Learn acceptance rates from the store as of ``now`` and write them as a new version.

    Raises:
        NotEnoughDataError: no exposure's window is over yet (nothing is written).
    """
    params = params or OfferParams()
    now = now or utc_now()
    started = time.perf_counter()
    outcomes = await offer_outcomes(
        session, goal=params.goal, window=timedelta(days=params.window_days), now=now
    )
    if not outcomes.counts:
        waiting = f" ({outcomes.pending} still inside it)" if outcomes.pending else ""
        raise NotEnoughDataError(
            f"no offer exposure is older than the {params.window_days}-day window yet"
            f"{waiting}: offers are recorded while a rule says 'offer_type: best'"
        )
    model = OfferModel.fit(outcomes.counts, params, now)
    totals = {
        "exposures": sum(count.exposures for count in outcomes.counts),
        "accepted": sum(count.accepted for count in outcomes.counts),
        "pending": outcomes.pending,
        "customers": outcomes.customers,
        "cells": len(outcomes.counts),
    }
    # A small file, but the event loop never waits on a disk.
    saved = await asyncio.to_thread(save_offer_model, model, model_dir, totals=totals)
    return OfferTrainingRun(saved, outcomes, time.perf_counter() - started)
