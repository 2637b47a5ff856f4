"""``personalize rules check|explain``: validate the decision rules, and see them decide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_DECISIONS,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)
from rasa_personalize.clock import utc_now
from rasa_personalize.context import ConversationContext
from rasa_personalize.errors import InvalidInputError, PersonalizeError
from rasa_personalize.identity import customer_key

if TYPE_CHECKING:
    from datetime import datetime

    from rasa_personalize.rules import Decision, Facts, RuleSet
    from rasa_personalize.rules.experiments import Allocation
    from rasa_personalize.rules.offers import OfferExplanation
    from rasa_personalize.settings import Settings
    from rasa_personalize.store.records import CustomerSnapshot

rules_app = typer.Typer(
    help="Decision rules (personalization.yml).", no_args_is_help=True, rich_markup_mode="markdown"
)


def register_commands(app: typer.Typer) -> None:
    """Add the ``rules`` group to ``app``."""
    app.add_typer(rules_app, name="rules", rich_help_panel=PANEL_DECISIONS)


@rules_app.command("check")
def rules_check(
    path: Annotated[
        Path | None,
        typer.Argument(help="Rule file (default: $PERSONALIZE_RULES_PATH or personalization.yml)."),
    ] = None,
) -> None:
    """Validate a rule file: every problem with its line; exit 1 if there is any."""
    from rasa_personalize.rules import check_file

    rules_path = path or load_cli_settings(None).rules_path
    if not rules_path.exists():
        fail(f"{rules_path}: no such file")
    problems = check_file(rules_path)
    for problem in problems:
        errors.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    if problems:
        errors.print(f"{len(problems)} problem(s) in {rules_path}")
        raise typer.Exit(1)
    console.print(f"{rules_path}: OK")


@rules_app.command("explain")
def rules_explain(
    customer: Annotated[str, typer.Argument(help="The customer's external id.")],
    context: Annotated[
        list[str] | None,
        typer.Option(
            "--context",
            "-c",
            help="What-if facts as key=value, e.g. --context hour=20 --context device=mobile.",
        ),
    ] = None,
    path: Annotated[Path | None, typer.Option("--rules", help="Rule file to explain.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Which rules match this customer, which do not and why, the experiment arm they get
    (if a running experiment takes them), the offers an `offer_type: best` rule compared
    (expected values, exposures, and why one was chosen), and the resulting slots."""
    from rasa_personalize.engine import plan_for_snapshot, segment_of
    from rasa_personalize.rules import explain, facts_from, load_rules, with_overrides

    settings = load_cli_settings(database_url)
    overrides: dict[str, str] = {}
    for item in context or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--context {item!r}: expected key=value", EXIT_USAGE)
        overrides[key.strip()] = value.strip()

    try:
        rules = load_rules(path or settings.rules_path)
    except (PersonalizeError, InvalidInputError) as error:
        errors.print(f"[red]error:[/red] {error}", markup=False)
        raise typer.Exit(1) from None
    key = customer_key(settings.secret_key, customer)
    now = utc_now()

    snapshot, allocations, pinned = run_job(lambda: _read_for_explain(settings, rules, key, now))
    try:
        segment = segment_of(snapshot, now) if snapshot else "new_visitor"
        facts = with_overrides(facts_from(snapshot, segment, ConversationContext(), now), overrides)
    except (PersonalizeError, InvalidInputError) as error:
        errors.print(f"[red]error:[/red] {error}", markup=False)
        raise typer.Exit(1) from None
    explanation = explain(rules, facts)
    # The arm as a conversation under this customer id would get it, as the engine decides.
    decided = _with_arm(rules, facts, snapshot, settings, key, allocations, pinned)
    decided, offer = _choose_offer(decided, snapshot, str(facts.segment), customer, settings)
    slots = {
        **plan_for_snapshot(snapshot, now, ConversationContext(), rules).values,
        **decided.slot_values(),
    }
    experiment = (
        {"name": decided.experiment, "arm": decided.arm} if decided.experiment is not None else None
    )
    if as_json:
        document = {
            **explanation.to_dict(),
            "experiment": experiment,
            "offer_choice": offer.to_dict() if offer is not None else None,
            "slots": slots,
        }
        typer.echo(json.dumps(document, default=str))
        return
    known = "" if snapshot else " (not in the store: treated as a new visitor)"
    console.print(f"Customer {customer}{known}", markup=False)
    console.print(str(explanation), markup=False, highlight=False)
    if experiment is not None:
        console.print(
            f"Experiment {experiment['name']!r}: arm {experiment['arm']!r} replaces part of "
            "the rule's answer.",
            markup=False,
        )
    if offer is not None:
        console.print(str(offer), markup=False, highlight=False)
    console.print(f"Resulting slots: {json.dumps(slots)}", markup=False, highlight=False)


async def _read_for_explain(
    settings: Settings, rules: RuleSet, key: str, now: datetime
) -> tuple[CustomerSnapshot | None, dict[str, Allocation], dict[str, str]]:
    """The customer's snapshot, and for each adaptive experiment the weights in force and
    the arm stored with the customer's exposure: the reads a server makes."""
    from rasa_personalize.experiments.allocation import (
        adaptive_experiments,
        read_allocation,
        store_counts,
    )

    store = batch_store(settings)
    try:
        snapshot = await guarded(store.load_snapshot(key))
        allocations: dict[str, Allocation] = {}
        pinned: dict[str, str] = {}
        for experiment in adaptive_experiments(rules):
            counts = store_counts(store.arm_counts)
            allocations[experiment.name] = await guarded(read_allocation(experiment, counts, now))
            arm = await guarded(store.exposed_arm(experiment.name, key))
            if arm is not None:
                pinned[experiment.name] = arm
        return snapshot, allocations, pinned
    finally:
        await store.dispose()


def _with_arm(
    rules: RuleSet,
    facts: Facts,
    snapshot: CustomerSnapshot | None,
    settings: Settings,
    key: str,
    allocations: dict[str, Allocation],
    pinned: dict[str, str],
) -> Decision:
    """The rules' decision after the experiment arm, as :func:`engine.decide` applies it:
    no experiment without personalization consent, none on the offer without marketing."""
    from rasa_personalize.engine import allows
    from rasa_personalize.privacy.consent import MARKETING, PERSONALIZATION
    from rasa_personalize.rules import evaluate
    from rasa_personalize.rules.experiments import OFFER_OUTPUTS, assign, experiment_secret

    decided = evaluate(rules, facts)
    if not allows(snapshot, PERSONALIZATION, settings.consent_default):
        return decided
    marketing = allows(snapshot, MARKETING, settings.consent_default)
    return assign(
        rules.experiments,
        facts,
        decided,
        experiment_secret(settings.secret_key),
        key,
        excluded=frozenset() if marketing else OFFER_OUTPUTS,
        allocations=allocations,
        pinned=pinned,
    )


def _choose_offer(
    decided: Decision,
    snapshot: CustomerSnapshot | None,
    segment: str,
    customer: str,
    settings: Settings,
) -> tuple[Decision, OfferExplanation | None]:
    """The decision's offer as the engine makes it: a ``best`` offer chosen with the
    current acceptance model, and no offer without marketing consent; with what the
    choice saw when the rule said ``best``."""
    from dataclasses import replace

    from rasa_personalize.engine import allows
    from rasa_personalize.offers.artifacts import offer_model_holder
    from rasa_personalize.privacy.consent import MARKETING, PERSONALIZATION
    from rasa_personalize.rules.experiments import ExperimentUnit, experiment_secret
    from rasa_personalize.rules.offers import choose_offer, explain_offer_choice

    marketing = allows(snapshot, MARKETING, settings.consent_default)
    best = decided.best_offer
    explanation = None
    if best is not None:
        model = offer_model_holder(settings.model_dir, settings.model_check_every_s).get()
        unit = (
            ExperimentUnit(
                customer_key(settings.secret_key, customer), experiment_secret(settings.secret_key)
            )
            if allows(snapshot, PERSONALIZATION, settings.consent_default)
            else None
        )
        if marketing:
            decided = choose_offer(decided, model, segment, unit)
        explanation = explain_offer_choice(
            best, decided.offer_choice if marketing else None, model, segment
        )
    if not marketing:
        decided = replace(decided, offer_type="none", discount_pct=0.0, best_offer=None)
    return decided, explanation
