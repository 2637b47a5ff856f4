"""``personalize profile show|rebuild`` and ``personalize stats``: what the store knows."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from rasa_personalize.cli.common import (
    PANEL_DECISIONS,
    DatabaseOption,
    batch_store,
    console,
    describe_store,
    errors,
    guarded,
    invalidate_profile_cache,
    load_cli_settings,
    run_job,
)
from rasa_personalize.clock import utc_now
from rasa_personalize.context import ConversationContext
from rasa_personalize.identity import customer_key

profile_app = typer.Typer(
    help="Customer profiles.", no_args_is_help=True, rich_markup_mode="markdown"
)


def register_commands(app: typer.Typer) -> None:
    """Add the ``profile`` group and ``stats`` to ``app``."""
    app.add_typer(profile_app, name="profile", rich_help_panel=PANEL_DECISIONS)
    app.command("stats", rich_help_panel=PANEL_DECISIONS)(stats)


def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Count customers, products, interactions, tags and segment assignments."""
    settings = load_cli_settings(database_url)

    async def job() -> dict[str, int]:
        store = batch_store(settings)
        try:
            return asdict(await guarded(store.stats()))
        finally:
            await store.dispose()

    counts = run_job(job)
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table(title=f"Store {describe_store(settings)}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)


@profile_app.command("show")
def profile_show(
    customer: Annotated[str, typer.Argument(help="The customer's external id, e.g. demo-loyal.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Print a customer's profile and the slots the assistant would get now."""
    from rasa_personalize.engine import default_plan, plan_for_snapshot
    from rasa_personalize.preferences import preferences_of
    from rasa_personalize.rules import RuleBook

    settings = load_cli_settings(database_url)

    async def job() -> dict[str, Any] | None:
        store = batch_store(settings)
        try:
            key = customer_key(settings.secret_key, customer)
            snapshot = await guarded(store.load_snapshot(key))
        finally:
            await store.dispose()
        if snapshot is None:
            return None
        now = utc_now()
        rules = RuleBook(settings.rules_path, strict=False).current()
        plan = plan_for_snapshot(snapshot, now, ConversationContext(), rules)
        preferences = preferences_of(snapshot.tags)
        return {
            "customer": customer,
            "loyalty_tier": snapshot.loyalty_tier,
            "created_at": snapshot.created_at.isoformat(),
            "demographics": asdict(snapshot.demographics),
            "metrics": snapshot.metrics.to_document(),
            "tags": [{"tag": t.tag, "source": t.source, "weight": t.weight} for t in snapshot.tags],
            "preferences": {
                kind: [
                    {
                        "category": p.category,
                        "source": p.source,
                        "updated_at": p.updated_at.isoformat(),
                    }
                    for p in preferences
                    if p.liked == liked
                ]
                for kind, liked in (("likes", True), ("dislikes", False))
            },
            "stored_segment": snapshot.segment.segment if snapshot.segment else None,
            "profile_version": snapshot.profile_version,
            "slots": dict(plan.values),
        }

    profile = run_job(job)
    if profile is None:
        errors.print(
            f"No customer {customer!r} in the store; the assistant would treat them as a "
            f"new visitor: {json.dumps(dict(default_plan(utc_now()).values))}"
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(profile, default=str))
        return
    _print_profile(profile)


def _print_profile(profile: dict[str, Any]) -> None:
    table = Table(title=f"Customer {profile['customer']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    metrics = profile["metrics"]
    demographics = profile["demographics"]
    rows = [
        ("loyalty tier", profile["loyalty_tier"]),
        ("customer since", profile["created_at"][:10]),
        ("age / gender", f"{demographics['age']} / {demographics['gender']}"),
        ("location", f"{demographics['city']}, {demographics['country']}"),
        ("interactions", str(metrics["interaction_count"])),
        ("purchases", f"{metrics['purchase_count']} ({metrics['total_spent']:.2f} spent)"),
        ("discounted share", f"{metrics['discounted_purchase_share']:.0%}"),
        ("last purchase", str(metrics["last_purchase_at"] or "never")[:10]),
        ("favourite category", str(metrics["favorite_category"])),
        ("chat messages", _chat_messages(metrics)),
        ("chat sessions", _chat_sessions(metrics)),
        ("tags", ", ".join(t["tag"] for t in profile["tags"]) or "-"),
        ("stored segment", str(profile["stored_segment"] or "- (archetype rule)")),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    _print_preferences(profile["preferences"])
    slots = Table(title="Slots the assistant gets")
    slots.add_column("slot")
    slots.add_column("value")
    for name, value in profile["slots"].items():
        slots.add_row(name, json.dumps(value))
    console.print(slots)


def _chat_messages(metrics: dict[str, Any]) -> str:
    """Messages, then their intents by count: ``12 (greet 5, ask_price 4, ...)``."""
    intents = sorted(metrics["intent_counts"].items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{intent} {count}" for intent, count in intents[:5])
    more = ", ..." if len(intents) > 5 else ""
    return f"{metrics['chat_message_count']} ({shown}{more})" if shown else "0"


def _chat_sessions(metrics: dict[str, Any]) -> str:
    average = metrics["average_session_seconds"]
    length = f" (on average {average / 60:.1f} min)" if average is not None else ""
    return f"{metrics['session_count']}{length}"


def _print_preferences(preferences: dict[str, list[dict[str, str]]]) -> None:
    """The likes and dislikes, with who wrote them (``chat``: the customer said it) and when."""
    if not preferences["likes"] and not preferences["dislikes"]:
        console.print("Preferences: none")
        return
    table = Table(title="Preferences")
    table.add_column("preference")
    table.add_column("category")
    table.add_column("source")
    table.add_column("since")
    for kind, label in (("likes", "likes"), ("dislikes", "does not want")):
        for preference in preferences[kind]:
            table.add_row(
                label, preference["category"], preference["source"], preference["updated_at"][:10]
            )
    console.print(table)


@profile_app.command("rebuild")
def profile_rebuild(database_url: DatabaseOption = None) -> None:
    """Recompute every customer's behavioural metrics from their interactions."""
    from rasa_personalize.store.repository import rebuild_profile_metrics

    settings = load_cli_settings(database_url)

    async def job() -> int:
        store = batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                written = await guarded(rebuild_profile_metrics(session))
            await invalidate_profile_cache(settings)
            return written
        finally:
            await store.dispose()

    console.print(f"Rebuilt {run_job(job)} profiles.")
