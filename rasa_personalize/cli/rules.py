"""``personalize rules check|explain``: validate the decision rules, and see them decide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    """Which rules match this customer, which do not and why, and the resulting slots."""
    from rasa_personalize.engine import plan_for_snapshot, segment_of
    from rasa_personalize.rules import evaluate, explain, facts_from, load_rules, with_overrides

    settings = load_cli_settings(database_url)
    overrides: dict[str, str] = {}
    for item in context or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--context {item!r}: expected key=value", EXIT_USAGE)
        overrides[key.strip()] = value.strip()

    async def job() -> Any:
        store = batch_store(settings)
        try:
            key = customer_key(settings.secret_key, customer)
            return await guarded(store.load_snapshot(key))
        finally:
            await store.dispose()

    snapshot = run_job(job)
    now = utc_now()
    try:
        rules = load_rules(path or settings.rules_path)
        segment = segment_of(snapshot, now) if snapshot else "new_visitor"
        facts = with_overrides(facts_from(snapshot, segment, ConversationContext(), now), overrides)
    except (PersonalizeError, InvalidInputError) as error:
        errors.print(f"[red]error:[/red] {error}", markup=False)
        raise typer.Exit(1) from None
    explanation = explain(rules, facts)
    slots = {
        **plan_for_snapshot(snapshot, now, ConversationContext(), rules).values,
        **evaluate(rules, facts).slot_values(),
    }
    if as_json:
        typer.echo(json.dumps({**explanation.to_dict(), "slots": slots}, default=str))
        return
    known = "" if snapshot else " (not in the store: treated as a new visitor)"
    console.print(f"Customer {customer}{known}", markup=False)
    console.print(str(explanation), markup=False, highlight=False)
    console.print(f"Resulting slots: {json.dumps(slots)}", markup=False, highlight=False)
