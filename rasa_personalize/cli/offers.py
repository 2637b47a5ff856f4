"""``personalize offers train``: learn which offer each segment accepts, for ``best`` rules.

Machine-readable output (``--json``) goes to stdout as exactly one JSON object; errors go
to stderr.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_MODELS,
    DatabaseOption,
    batch_store,
    console,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)

if TYPE_CHECKING:
    from rasa_personalize.offers.training import OfferTrainingRun

offers_app = typer.Typer(
    help="Next-best offer: acceptance rates per offer and segment, for 'offer_type: best' rules.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Goal(str, Enum):
    """The interaction that accepts an offer."""

    purchase = "purchase"
    cart = "cart"


def register_commands(app: typer.Typer) -> None:
    """Add the ``offers`` group to ``app``."""
    app.add_typer(offers_app, name="offers", rich_help_panel=PANEL_MODELS)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO time such as 2026-06-01T12:00:00+00:00",
            param_hint="--as-of",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@offers_app.command("train")
def train(
    goal: Annotated[
        Goal, typer.Option(help="What accepts an offer: a purchase, or an add to cart.")
    ] = Goal.purchase,
    window_days: Annotated[
        int,
        typer.Option(
            "--window-days",
            min=1,
            max=90,
            help="Days after an offer is shown that it may be accepted.",
        ),
    ] = 7,
    min_exposures: Annotated[
        int,
        typer.Option(
            "--min-exposures",
            min=1,
            help="Exposures every candidate needs in a segment before the engine compares "
            "them; below it a rule shows its first offer.",
        ),
    ] = 30,
    prior_strength: Annotated[
        float,
        typer.Option(
            "--prior-strength",
            min=0.001,
            help="How many exposures the prior (the offer's rate over all segments) is worth.",
        ),
    ] = 20.0,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Treat this ISO time as now (UTC if no zone): exposures younger than the "
            "window before it are not counted yet.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Count every offer shown and whether it was accepted, per offer and segment, and
    write a new acceptance model that running servers pick up at their next model check.

    An offer shown counts as accepted when the customer buys (or adds to the cart, with
    `--goal cart`) within `--window-days` after it, before any other offer is shown to
    them. Offers are recorded while a rule says `offer_type: best`. See docs/offers.md.
    """
    from rasa_personalize.offers.errors import OfferInputError
    from rasa_personalize.offers.model import OfferParams
    from rasa_personalize.offers.training import train_offer_model

    now = _as_of(as_of)
    try:
        params = OfferParams(
            goal=goal.value,
            window_days=window_days,
            min_exposures=min_exposures,
            prior_strength=prior_strength,
        )
    except OfferInputError as error:
        fail(error, EXIT_USAGE)
    settings = load_cli_settings(database_url)

    async def job() -> OfferTrainingRun:
        store = batch_store(settings)
        try:
            async with store.sessions() as session:
                return await guarded(
                    train_offer_model(session, model_dir=settings.model_dir, params=params, now=now)
                )
        finally:
            await store.dispose()

    run = run_job(job)
    if as_json:
        typer.echo(json.dumps(summary(run)))
        return
    _print_run(run)


def summary(run: OfferTrainingRun) -> dict[str, Any]:
    """The ``--json`` object."""
    model = run.model
    return {
        "model_version": model.version,
        **model.params.to_dict(),
        "exposures": run.exposures,
        "accepted": run.accepted,
        "pending": run.outcomes.pending,
        "customers": run.outcomes.customers,
        "overall_rate": model.overall_rate,
        "offer_rates": dict(model.offer_rates),
        "cells": [
            {
                "offer": count.offer,
                "segment": count.segment,
                "exposures": count.exposures,
                "accepted": count.accepted,
                "p_accept": model.estimate(count.offer, count.segment).p_accept,
                "enough_data": count.exposures >= model.min_exposures,
            }
            for count in model.counts
        ],
        "seconds": run.seconds,
    }


def _print_run(run: OfferTrainingRun) -> None:
    model = run.model
    params = model.params
    table = Table(
        title=f"Offer acceptance ({params.goal} within {params.window_days} days), "
        f"model {model.version}",
        caption=f"p: acceptance estimate, shrunk towards the offer's rate over all segments "
        f"(prior worth {params.prior_strength:g} exposures); * fewer than "
        f"{params.min_exposures} exposures: not compared yet",
    )
    for header in ("offer", "segment", "exposures", "accepted", "rate", "p"):
        table.add_column(header, justify="left" if header in ("offer", "segment") else "right")
    for count in model.counts:
        rate = count.accepted / count.exposures if count.exposures else 0.0
        estimate = model.estimate(count.offer, count.segment)
        short = "" if count.exposures >= params.min_exposures else " *"
        table.add_row(
            count.offer,
            count.segment,
            f"{count.exposures:,}{short}",
            f"{count.accepted:,}",
            f"{rate:.3f}",
            f"{estimate.p_accept:.3f}",
        )
    console.print(table)
    console.print(
        f"{run.exposures:,} exposures of {run.outcomes.customers:,} customers counted, "
        f"{run.accepted:,} accepted; {run.outcomes.pending:,} still inside their window. "
        f"Written in {run.seconds:.1f} s.",
        highlight=False,
    )
