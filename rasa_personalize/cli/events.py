"""``personalize worker`` (with ``worker dead-letters list|retry|drop``) and
``personalize apikey create|list|revoke``: the events side."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    PANEL_SERVING,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)
from rasa_personalize.errors import PersonalizeError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from rasa_personalize.events.apikeys import ApiKeyRecord
    from rasa_personalize.events.dead_letters import DeadLetter
    from rasa_personalize.events.worker import WorkerOptions, WorkerStats
    from rasa_personalize.segments.tag_rules import TagRules
    from rasa_personalize.settings import Settings

T = TypeVar("T")

apikey_app = typer.Typer(
    help="API keys of the events and profiles HTTP API.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


# `personalize worker [options]` runs the worker, as it did when it was a plain command;
# its sub-group manages the messages the worker gave up on.
worker_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode="markdown",
)
dead_letters_app = typer.Typer(
    help="Stream messages the store refused PERSONALIZE_STREAM_MAX_DELIVERIES times.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
worker_app.add_typer(dead_letters_app, name="dead-letters")


class ScopeChoice(str, Enum):
    """Scopes offered on the command line."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


def register_commands(app: typer.Typer) -> None:
    """Add ``worker`` and the ``apikey`` group to ``app``."""
    worker_app.callback()(worker)
    app.add_typer(worker_app, name="worker", rich_help_panel=PANEL_SERVING)
    app.add_typer(apikey_app, name="apikey", rich_help_panel=PANEL_SERVING)


def _describe(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "scope": record.scope,
        "label": record.label,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@apikey_app.command("create")
def create(
    scope: Annotated[ScopeChoice, typer.Option(help="What the key may do.")],
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
    database_url: DatabaseOption = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from rasa_personalize.events.apikeys import create_api_key
    from rasa_personalize.privacy.audit import APIKEY_CREATE, OUTCOME_OK, Actor, record_audit

    settings = load_cli_settings(database_url)

    async def job() -> tuple[ApiKeyRecord, str]:
        store = batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                record, key = await guarded(create_api_key(session, scope.value, label))
                # Audited in the key's own transaction; the detail never holds the key.
                await guarded(
                    record_audit(
                        session,
                        Actor.cli(),
                        APIKEY_CREATE,
                        OUTCOME_OK,
                        detail={"key_id": record.id, "scope": record.scope, "label": label},
                    )
                )
                return record, key
        finally:
            await store.dispose()

    record, key = run_job(job)
    errors.print(
        f"API key {record.id} (scope {record.scope}) created. It is shown only now; "
        "send it as 'Authorization: Bearer <key>'."
    )
    typer.echo(key)


@apikey_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """List keys by id, scope, label and dates (never the keys themselves)."""
    from rasa_personalize.events.apikeys import list_api_keys

    settings = load_cli_settings(database_url)

    async def job() -> list[ApiKeyRecord]:
        store = batch_store(settings)
        try:
            async with store.sessions() as session:
                return await guarded(list_api_keys(session))
        finally:
            await store.dispose()

    records = [_describe(record) for record in run_job(job)]
    if as_json:
        typer.echo(json.dumps(records))
        return
    table = Table(title="API keys")
    for header in ("id", "scope", "label", "created", "revoked"):
        table.add_column(header)
    for record in records:
        table.add_row(*(str(record[name] or "-") for name in
                        ("id", "scope", "label", "created_at", "revoked_at")))  # fmt: skip
    console.print(table)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `personalize apikey list`).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from rasa_personalize.events.apikeys import revoke_api_key
    from rasa_personalize.privacy.audit import (
        APIKEY_REVOKE,
        OUTCOME_NOT_FOUND,
        OUTCOME_OK,
        Actor,
        record_audit,
    )
    from rasa_personalize.store.apikeys import get_api_key

    settings = load_cli_settings(database_url)

    async def job() -> bool:
        store = batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                record = await guarded(get_api_key(session, key_id))
                revoked = await guarded(revoke_api_key(session, key_id))
                detail: dict[str, object] = {"key_id": key_id}
                if record is not None:
                    detail.update(scope=record.scope, label=record.label)
                await guarded(
                    record_audit(
                        session,
                        Actor.cli(),
                        APIKEY_REVOKE,
                        OUTCOME_OK if revoked else OUTCOME_NOT_FOUND,
                        detail=detail,
                    )
                )
                return revoked
        finally:
            await store.dispose()

    if not run_job(job):
        fail(f"no active API key with id {key_id}")
    console.print(f"API key {key_id} revoked.")


def worker(
    ctx: typer.Context,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            max=20_000,
            help="Events per SQL transaction at most (read as whole stream messages of up to "
            "100); a worker behind on the stream stores this many at a time.",
        ),
    ] = 5_000,
    block_ms: Annotated[
        int, typer.Option(min=1, max=60_000, help="Wait this long for new events per read.")
    ] = 1_000,
    claim_idle_s: Annotated[
        float,
        typer.Option(
            min=0.0, help="Take over events another worker left unacknowledged this long."
        ),
    ] = 30.0,
    consumer: Annotated[
        str | None,
        typer.Option(help="Consumer name in the group (default: host-pid).", show_default=False),
    ] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit once the stream is drained.")
    ] = False,
    tags: Annotated[
        Path | None,
        typer.Option(
            help="Tag rules re-applied to customers with new events "
            "(default: $PERSONALIZE_TAGS_PATH or tags.yml, when it exists).",
            show_default=False,
        ),
    ] = None,
    no_tags: Annotated[bool, typer.Option("--no-tags", help="Do not re-apply tag rules.")] = False,
    refresh_every_s: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Recompute metrics and tags of customers with new events this often while "
            "events pour in; a worker that has caught up with the stream does it at once.",
        ),
    ] = 1.0,
    refresh_chunk: Annotated[
        int,
        typer.Option(
            min=1,
            max=20_000,
            help="Customers whose metrics and tags one transaction refreshes, those waiting "
            "longest first: under a sustained peak, smaller chunks commit each customer's "
            "refresh sooner.",
        ),
    ] = 500,
    max_deliveries: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Store failures of one message before it goes to the dead letters "
            "(default: $PERSONALIZE_STREAM_MAX_DELIVERIES or 5).",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve /health, /ready and /metrics on this port (default: not served).",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(help="Interface for --metrics-port (this machine only by default)."),
    ] = "127.0.0.1",
    database_url: DatabaseOption = None,
) -> None:
    """Store events from the Redis Stream in SQL (needs PERSONALIZE_REDIS_URL).

    Several workers may run at once (one consumer group); a worker that stops leaves its
    unacknowledged events to be claimed by the others after --claim-idle-s. Stops
    cleanly on Ctrl-C or SIGTERM after the batch in hand. A message the store refuses
    --max-deliveries times goes to the dead letters (`personalize worker dead-letters`).
    """
    if ctx.invoked_subcommand is not None:
        return  # `worker dead-letters ...`: the subcommand does the work
    settings = load_cli_settings(database_url, real_secret=True)
    if not settings.redis_url:
        errors.print(
            "[red]error:[/red] the worker reads the Redis event stream: set "
            "PERSONALIZE_REDIS_URL. Without Redis, events go straight to SQL and no worker "
            "is needed."
        )
        raise typer.Exit(1)
    # One process: its metrics live in memory, even where the environment names a
    # multi-process directory for a server (read when prometheus_client is imported).
    from rasa_personalize.metrics import MULTIPROC_ENV

    os.environ.pop(MULTIPROC_ENV, None)
    # Only now: the worker module needs Redis, which the settings checked is installed.
    from rasa_personalize.events.worker import WorkerOptions
    from rasa_personalize.segments.tag_rules import load_ingest_tag_rules

    try:
        rules = None if no_tags else load_ingest_tag_rules(tags or settings.tags_path)
    except PersonalizeError as error:
        fail(error)
    options = WorkerOptions(
        batch_size=batch_size,
        block_ms=block_ms,
        claim_idle_ms=int(claim_idle_s * 1000),
        exit_when_idle=until_idle,
        refresh_every_s=refresh_every_s,
        refresh_chunk=refresh_chunk,
        max_deliveries=max_deliveries or settings.stream_max_deliveries,
    )
    if consumer:
        options = dataclasses.replace(options, consumer=consumer)
    probes_at = (metrics_host, metrics_port) if metrics_port is not None else None
    stats = run_job(lambda: run_worker(settings, options, rules, probes_at))
    console.print(
        f"Worker stopped: {stats.stored} events stored in {stats.batches} batches, "
        f"{stats.already_stored} already stored, {stats.claimed} messages claimed from "
        f"stopped workers, {stats.dropped} for removed products, {stats.malformed} malformed, "
        f"{stats.suppressed} suppressed (no tracking consent, or erased); "
        f"{stats.refreshed_customers} profiles refreshed in {stats.refreshes} refreshes; "
        f"{stats.dead_letters} messages moved to the dead letters."
    )


async def run_worker(
    settings: Settings,
    options: WorkerOptions,
    rules: TagRules | None,
    probes_at: tuple[str, int] | None = None,
) -> WorkerStats:
    """Run a worker until SIGINT/SIGTERM (or idle, with ``exit_when_idle``); with
    ``probes_at`` (host, port), its /health, /ready and /metrics are served there."""
    from redis import asyncio as redis_asyncio

    from rasa_personalize.cache.profiles import profile_cache_for
    from rasa_personalize.events.probes import serving_probes
    from rasa_personalize.events.worker import (
        StreamWorker,
        redis_persists,
        tune_garbage_collector,
    )
    from rasa_personalize.privacy.retention import worker_retention

    assert settings.redis_url is not None
    # Socket reads must outlast a blocking XREADGROUP.
    client = redis_asyncio.from_url(
        settings.redis_url,
        socket_timeout=options.block_ms / 1000 + 5.0,
        socket_connect_timeout=5.0,
    )
    store = batch_store(settings)
    # Refreshed customers' cached profiles are dropped (a batch job: a longer timeout).
    invalidate = profile_cache_for(settings, timeout_s=2.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as probes:
            periodic = list(worker_retention(settings, store.sessions, rules, invalidate))
            if probes_at is not None:
                server, gauges = await probes.enter_async_context(
                    serving_probes(settings.redis_url, store, settings.event_stream, *probes_at)
                )
                periodic.append(gauges.run)
                console.print(
                    f"Worker probes on http://{probes_at[0]}:{server.port}/health, /ready "
                    "and /metrics"
                )
            if await redis_persists(client) is False:
                errors.print(
                    "[yellow]warning:[/yellow] Redis keeps nothing on disk: events still in "
                    "the stream are lost if Redis restarts. Enable appendonly in production."
                )
            tune_garbage_collector()
            worker = StreamWorker(
                client,
                settings.event_stream,
                store.sessions,
                options=options,
                tag_rules=rules,
                on_stored=invalidate.invalidate if invalidate is not None else None,
                consent_default=settings.consent_default,
                # Daily retention when PERSONALIZE_RETENTION_DAYS is set; the stream's gauges.
                periodic=periodic,
            )
            return await worker.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await client.aclose()
        await store.dispose()
        if invalidate is not None:
            await invalidate.close()


IdsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dead-letter ids (see `personalize worker dead-letters list`).", show_default=False
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dead letter.")]


def _stream_settings() -> Settings:
    settings = load_cli_settings(None)
    if not settings.redis_url:
        errors.print(
            "[red]error:[/red] dead letters live beside the Redis event stream: set "
            "PERSONALIZE_REDIS_URL."
        )
        raise typer.Exit(1)
    return settings


async def _with_stream_client(settings: Settings, work: Callable[[Redis, str], Awaitable[T]]) -> T:
    from redis import asyncio as redis_asyncio
    from redis.exceptions import RedisError

    from rasa_personalize.cache.breaker import RedisUnavailableError

    assert settings.redis_url is not None
    client = redis_asyncio.from_url(
        settings.redis_url, socket_timeout=10.0, socket_connect_timeout=5.0
    )
    try:
        return await work(client, settings.event_stream)
    except (RedisError, OSError) as error:
        raise RedisUnavailableError(f"Redis did not answer ({type(error).__name__})") from None
    finally:
        await client.aclose()


@dead_letters_app.command("list")
def list_dead_letters_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, oldest first.")] = 100,
) -> None:
    """List dead letters: id, when, deliveries, error class and event count (never the
    events themselves), and their total."""
    from rasa_personalize.events.dead_letters import count_dead_letters, list_dead_letters

    settings = _stream_settings()

    async def work(client: Redis, stream: str) -> tuple[int, list[DeadLetter]]:
        return await count_dead_letters(client, stream), await list_dead_letters(
            client, stream, limit=limit
        )

    total, letters = run_job(lambda: _with_stream_client(settings, work))
    if as_json:
        typer.echo(json.dumps({"total": total, "dead_letters": [d.as_dict() for d in letters]}))
        return
    table = Table(title=f"Dead letters of {settings.event_stream}: {total}")
    for header in ("id", "dead at", "deliveries", "failures", "reason", "events"):
        table.add_column(header)
    for letter in letters:
        table.add_row(
            letter.id,
            letter.dead_at.isoformat(timespec="seconds"),
            str(letter.deliveries),
            str(letter.failures),
            letter.reason,
            str(letter.events),
        )
    console.print(table)
    if total > len(letters):
        console.print(f"{total - len(letters)} more (--limit).")


# A Redis stream entry id: milliseconds, a dash, a sequence number.
STREAM_ID: Final = re.compile(r"\d{1,20}-\d{1,20}")


def _chosen_ids(ids: list[str] | None, every: bool) -> list[str] | None:
    """The ids given, or None for --all; exit 2 unless exactly one of them is given."""
    if bool(ids) == every:
        errors.print("[red]error:[/red] name dead-letter ids or pass --all (not both)")
        raise typer.Exit(2)
    # Redis refuses a malformed id with an error that would read as Redis being down.
    malformed = [entry_id for entry_id in ids or () if not STREAM_ID.fullmatch(entry_id)]
    if malformed:
        errors.print(
            f"[red]error:[/red] not a dead-letter id: {escape(', '.join(malformed))} "
            "(ids look like 1765000000000-0; see `personalize worker dead-letters list`)",
            highlight=False,
        )
        raise typer.Exit(2)
    return None if every else list(ids or ())


def _report(action: str, done: list[str], asked: list[str] | None) -> None:
    console.print(f"{len(done)} dead letters {action}.")
    missing = [entry_id for entry_id in asked or () if entry_id not in set(done)]
    if missing:
        errors.print(f"[red]error:[/red] no dead letter with id {escape(', '.join(missing))}")
        raise typer.Exit(1)


@dead_letters_app.command("retry")
def retry_dead_letters_command(ids: IdsArgument = None, every: AllOption = False) -> None:
    """Move dead letters back to the event stream, for the worker to store again (after
    fixing what the store refused)."""
    from rasa_personalize.events.dead_letters import retry_dead_letters

    chosen = _chosen_ids(ids, every)
    settings = _stream_settings()
    done = run_job(
        lambda: _with_stream_client(
            settings, lambda client, stream: retry_dead_letters(client, stream, chosen)
        )
    )
    _report("moved back to the event stream", done, chosen)


@dead_letters_app.command("drop")
def drop_dead_letters_command(
    ids: IdsArgument = None,
    every: AllOption = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: their events are lost for good.")
    ] = False,
) -> None:
    """Delete dead letters for good (their events are never stored)."""
    from rasa_personalize.events.dead_letters import drop_dead_letters

    chosen = _chosen_ids(ids, every)
    if not yes:
        errors.print("[red]error:[/red] dropping loses these events for good: pass --yes")
        raise typer.Exit(2)
    settings = _stream_settings()
    done = run_job(
        lambda: _with_stream_client(
            settings, lambda client, stream: drop_dead_letters(client, stream, chosen)
        )
    )
    _report("dropped", done, chosen)
