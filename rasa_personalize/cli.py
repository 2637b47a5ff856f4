"""The ``personalize`` command: store set-up, demo data, inspection and the action server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from rasa_personalize.cli_options import DatabaseOption
from rasa_personalize.clock import utc_now
from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import default_plan, plan_for_snapshot, segment_of
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.cli import register_commands as register_event_commands
from rasa_personalize.identity import customer_key
from rasa_personalize.imports.cli import register_commands as register_import_commands
from rasa_personalize.recommend.cli import register_commands as register_recommend_commands
from rasa_personalize.rules import RuleBook
from rasa_personalize.segments.cli import register_commands as register_segment_commands
from rasa_personalize.settings import Settings, load_settings
from rasa_personalize.store.database import StoreTimeouts, describe_database
from rasa_personalize.store.sql_store import SqlStore

app = typer.Typer(
    help="rasa-personalize: personalize a Rasa e-commerce assistant from customer data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold customer data
    rich_markup_mode="markdown",  # docstring line breaks are wrapping, not breaks
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode="markdown")
profile_app = typer.Typer(
    help="Customer profiles.", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(db_app, name="db")
app.add_typer(profile_app, name="profile")
rules_app = typer.Typer(
    help="Decision rules (personalization.yml).", no_args_is_help=True, rich_markup_mode="markdown"
)
app.add_typer(rules_app, name="rules")
register_segment_commands(app)
register_recommend_commands(app)
register_import_commands(app)
register_event_commands(app)

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def _settings(database_url: str | None) -> Settings:
    overrides: dict[str, object] = {}
    if database_url:
        overrides["database_url"] = database_url
    try:
        settings = load_settings(**overrides)
        describe_database(settings.database_url)  # validates the URL now, not mid-job
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    return settings


def _batch_store(settings: Settings) -> SqlStore:
    # Offline jobs may run long statements; only the hot path needs a statement limit.
    return SqlStore(settings.database_url, StoreTimeouts(connect_s=10.0, statement_s=None))


async def _invalidate_profile_cache(settings: Settings) -> None:
    """Outdate every cached profile snapshot after a batch job changed profiles, tags or
    segments (committed first). A no-op without Redis; a warning if Redis is unreachable,
    as this process exits before it could replay the invalidation."""
    from rasa_personalize.cache.profiles import profile_cache_for

    cache = profile_cache_for(settings, timeout_s=5.0)
    if cache is None:
        return
    try:
        if not await cache.invalidate_all():
            errors.print(
                "[yellow]warning:[/yellow] Redis did not answer, so the profile cache was "
                "not invalidated: servers may answer from the old profiles for up to "
                f"{settings.profile_cache_ttl_s:.0f} s (PERSONALIZE_PROFILE_CACHE_TTL_S)."
            )
    finally:
        await cache.close()


def _run(job: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async job; turn our errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(job())
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    """Set up logging for every subcommand."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the store's schema to the latest revision."""
    from rasa_personalize.store.migrate import upgrade  # Alembic is only needed here

    try:
        settings = _settings(database_url)
        upgrade(settings.database_url, revision)
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    except OSError as error:
        errors.print(f"[red]error:[/red] cannot reach the store: {type(error).__name__}")
        raise typer.Exit(1) from None
    console.print(f"Schema of {describe_database(settings.database_url)} is at {revision}.")


@app.command("seed-demo")
def seed_demo(
    customers: Annotated[int, typer.Option(min=10, help="Customers to generate.")] = 2000,
    products: Annotated[int, typer.Option(min=8, help="Products to generate.")] = 300,
    interactions: Annotated[int, typer.Option(min=1, help="About this many.")] = 50_000,
    days: Annotated[
        int, typer.Option(min=120, help="Days of history (lapsed customers need 120+).")
    ] = 180,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same shop.")] = 42,
    reset: Annotated[
        bool, typer.Option("--reset/--keep", help="Empty the store first (default).")
    ] = True,
    database_url: DatabaseOption = None,
) -> None:
    """Fill the store with a realistic synthetic shop and the named demo customers."""
    from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
    from rasa_personalize.store.repository import delete_all_rows, rebuild_profile_metrics

    settings = _settings(database_url)
    config = DemoShopConfig(
        customers=customers, products=products, interactions=interactions, days=days, seed=seed
    )

    async def job() -> dict[str, Any]:
        store = _batch_store(settings)
        try:
            with _stage_progress() as advance:
                async with store.sessions.begin() as session:
                    if reset:
                        await delete_all_rows(session)
                    report = await seed_demo_shop(
                        session,
                        config,
                        secret_key=settings.secret_key,
                        now=utc_now(),
                        progress=advance,
                    )
                    advance("profiles", 0, report.customers)
                    written = await rebuild_profile_metrics(session)
                    advance("profiles", written, report.customers)
            await _invalidate_profile_cache(settings)
            return asdict(report)
        finally:
            await store.dispose()

    report = _run(job)
    groups = ", ".join(f"{name} {count}" for name, count in sorted(report["groups"].items()))
    console.print(
        f"Seeded {report['customers']} customers, {report['products']} products, "
        f"{report['interactions']} interactions, {report['tags']} tags "
        f"into {describe_database(settings.database_url)}.\nGroups: {groups}.\n"
        "Demo customers: demo-bargain, demo-loyal, demo-new, demo-lapsed."
    )


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars on stderr, one per stage; yields the ``(stage, done, total)`` callback
    that long jobs report to."""
    progress = Progress(
        TextColumn("{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def advance(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    with progress:
        yield advance


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Count customers, products, interactions, tags and segment assignments."""
    settings = _settings(database_url)

    async def job() -> dict[str, int]:
        store = _batch_store(settings)
        try:
            return asdict(await _guarded(store.stats()))
        finally:
            await store.dispose()

    counts = _run(job)
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table(title=f"Store {describe_database(settings.database_url)}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)


async def _guarded(awaitable: Awaitable[T]) -> T:
    """Await a store call; report an unreachable or unmigrated store as our error."""
    from rasa_personalize.errors import StoreUnavailableError
    from rasa_personalize.store.errors import DatabaseError

    try:
        return await awaitable
    except (DatabaseError, OSError) as error:
        raise StoreUnavailableError(
            f"the store cannot answer ({type(error).__name__}); "
            "is it running, and did you run `personalize db upgrade`?"
        ) from None


@profile_app.command("show")
def profile_show(
    customer: Annotated[str, typer.Argument(help="The customer's external id, e.g. demo-loyal.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Print a customer's profile and the slots the assistant would get now."""
    settings = _settings(database_url)

    async def job() -> dict[str, Any] | None:
        store = _batch_store(settings)
        try:
            key = customer_key(settings.secret_key, customer)
            snapshot = await _guarded(store.load_snapshot(key))
        finally:
            await store.dispose()
        if snapshot is None:
            return None
        now = utc_now()
        rules = RuleBook(settings.rules_path, strict=False).current()
        plan = plan_for_snapshot(snapshot, now, ConversationContext(), rules)
        return {
            "customer": customer,
            "loyalty_tier": snapshot.loyalty_tier,
            "created_at": snapshot.created_at.isoformat(),
            "demographics": asdict(snapshot.demographics),
            "metrics": snapshot.metrics.to_document(),
            "tags": [{"tag": t.tag, "source": t.source, "weight": t.weight} for t in snapshot.tags],
            "stored_segment": snapshot.segment.segment if snapshot.segment else None,
            "profile_version": snapshot.profile_version,
            "slots": dict(plan.values),
        }

    profile = _run(job)
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
        ("tags", ", ".join(t["tag"] for t in profile["tags"]) or "-"),
        ("stored segment", str(profile["stored_segment"] or "- (archetype rule)")),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    slots = Table(title="Slots the assistant gets")
    slots.add_column("slot")
    slots.add_column("value")
    for name, value in profile["slots"].items():
        slots.add_row(name, json.dumps(value))
    console.print(slots)


@profile_app.command("rebuild")
def profile_rebuild(database_url: DatabaseOption = None) -> None:
    """Recompute every customer's behavioural metrics from their interactions."""
    from rasa_personalize.store.repository import rebuild_profile_metrics

    settings = _settings(database_url)

    async def job() -> int:
        store = _batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                written = await _guarded(rebuild_profile_metrics(session))
            await _invalidate_profile_cache(settings)
            return written
        finally:
            await store.dispose()

    console.print(f"Rebuilt {_run(job)} profiles.")


@app.command()
def train(
    precompute: Annotated[
        bool,
        typer.Option(
            "--precompute", help="Also store each customer's top items (hot path: one read)."
        ),
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Train the ALS recommender on the store's interactions; servers pick it up live."""
    from rasa_personalize.cache.precomputed import PrecomputedCache
    from rasa_personalize.recommend.training import train_from_store

    settings = _settings(database_url)

    async def job() -> Any:
        store = _batch_store(settings)
        cache = PrecomputedCache(settings.redis_url, timeout_s=5.0) if settings.redis_url else None
        try:
            with _stage_progress() as advance:
                return await _guarded(
                    train_from_store(
                        store,
                        settings.model_dir,
                        precompute=precompute,
                        progress=advance,
                        cache=cache,
                    )
                )
        finally:
            await store.dispose()
            if cache is not None:
                await cache.close()

    report = _run(job)
    console.print(
        f"Trained model {report.version} on {report.interactions:,} interactions "
        f"({report.customers:,} customers x {report.products:,} products) in "
        f"{report.seconds:.1f} s; {report.precomputed:,} precomputed lists. "
        f"Artifacts: {settings.model_dir / 'als'}"
    )


@rules_app.command("check")
def rules_check(
    path: Annotated[
        Path | None,
        typer.Argument(help="Rule file (default: $PERSONALIZE_RULES_PATH or personalization.yml)."),
    ] = None,
) -> None:
    """Validate a rule file: every problem with its line; exit 1 if there is any."""
    from rasa_personalize.rules import check_file

    rules_path = path or _settings(None).rules_path
    if not rules_path.exists():
        errors.print(f"[red]error:[/red] {rules_path}: no such file")
        raise typer.Exit(1)
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
    from rasa_personalize.errors import InvalidInputError
    from rasa_personalize.rules import evaluate, explain, facts_from, load_rules, with_overrides

    settings = _settings(database_url)
    overrides: dict[str, str] = {}
    for item in context or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            errors.print(f"[red]error:[/red] --context {item!r}: expected key=value")
            raise typer.Exit(2)
        overrides[key.strip()] = value.strip()

    async def job() -> Any:
        store = _batch_store(settings)
        try:
            key = customer_key(settings.secret_key, customer)
            return await _guarded(store.load_snapshot(key))
        finally:
            await store.dispose()

    snapshot = _run(job)
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


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 5055,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "0.0.0.0",  # noqa: S104  # Rasa connects from other hosts
    workers: Annotated[int, typer.Option(min=1, help="Server processes (one per core).")] = 1,
    extra_actions: Annotated[
        list[str] | None,
        typer.Option(
            "--actions",
            help="Your action packages to serve beside ours (repeatable; default: the "
            "project's own `actions` package, when there is one).",
        ),
    ] = None,
) -> None:
    """Run the action server: the plugin's actions, your own, and the /personalize API."""
    from rasa_personalize.server import serve as run_server
    from rasa_personalize.server import user_action_packages

    settings = _settings(None)  # fail now, clearly, rather than on the first request
    try:
        packages = user_action_packages(tuple(extra_actions or ()))
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    logging.getLogger("rasa_personalize").setLevel(logging.INFO)
    console.print(
        f"Action server on http://{host}:{port}/webhook, store "
        f"{describe_database(settings.database_url)}"
    )
    run_server(port=port, host=host, action_packages=packages, workers=workers)


@app.command()
def demo(
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Action server port (webhook-only mode)."),
    ] = None,
) -> None:
    """Play a conversation for each demo customer (real Rasa when set up) side by side."""
    from rasa_personalize.demo.walkthrough import run_walkthrough

    try:
        run_walkthrough(_settings(None), console=console, project_dir=Path.cwd(), port=port)
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


@app.command()
def chat(
    customer: Annotated[
        str, typer.Option("--customer", "-c", help="Chat as this customer id.")
    ] = "demo-loyal",
) -> None:
    """Chat with the demo assistant (Rasa + this action server) as a given customer."""
    from rasa_personalize.demo.walkthrough import run_chat

    try:
        run_chat(_settings(None), customer=customer, console=console, project_dir=Path.cwd())
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
if __name__ == "__main__":
    main()
