"""``personalize broker``: store the events Rasa's pika event broker publishes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_SERVING,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    load_cli_settings,
    run_job,
)
from rasa_personalize.errors import PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.events.broker import ConsumerOptions, ConsumerStats
    from rasa_personalize.segments.tag_rules import TagRules
    from rasa_personalize.settings import Settings

# Rasa 3.6's queue when its endpoints.yml names none (rasa.core.brokers.pika).
RASA_DEFAULT_QUEUE = "rasa_core_events"


def register_commands(app: typer.Typer) -> None:
    """Add ``broker`` to ``app``."""
    app.command("broker", rich_help_panel=PANEL_SERVING)(broker)


def broker(
    url: Annotated[
        str | None,
        typer.Option(
            help="RabbitMQ URL, e.g. amqp://user:password@rabbitmq:5672/ "
            "(default: $PERSONALIZE_BROKER_URL).",
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str,
        typer.Option(
            help="The queue Rasa publishes to: `queues:` of `event_broker` in Rasa's "
            "endpoints.yml (Rasa's default when it names none)."
        ),
    ] = RASA_DEFAULT_QUEUE,
    prefetch: Annotated[
        int,
        typer.Option(
            min=1,
            max=10_000,
            help="Messages taken unacknowledged at once; also the largest batch stored in "
            "one transaction.",
        ),
    ] = 200,
    session_expiration_min: Annotated[
        float,
        typer.Option(
            "--session-expiration",
            min=1.0,
            help="Minutes without a message after which a session is over and its length "
            "is recorded: Rasa's session_config.session_expiration_time.",
        ),
    ] = 60.0,
    tags: Annotated[
        Path | None,
        typer.Option(
            help="Tag rules re-applied to customers with new interactions "
            "(default: $PERSONALIZE_TAGS_PATH or tags.yml, when it exists).",
            show_default=False,
        ),
    ] = None,
    no_tags: Annotated[bool, typer.Option("--no-tags", help="Do not re-apply tag rules.")] = False,
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
    """Store the conversations Rasa publishes to RabbitMQ as interactions, so chat
    activity counts even where no custom action runs.

    Needs `event_broker: type: pika` in Rasa's endpoints.yml. Each user message becomes a
    `chat_message` (with its intent), each new session a `session_start`, and a session
    that is over a `session_end` with its length; bot utterances and actions are read and
    skipped. Customers are resolved from the message metadata as the actions resolve them
    (verified `user_hash`, tracking consent, erasures). Messages are acknowledged after
    they are stored; a message that holds no Rasa event goes to `<queue>.dead_letters`.
    Run one per queue. Stops cleanly on Ctrl-C or SIGTERM after the batch in hand. With
    --metrics-port, /ready answers 200 while the store answers and the consumer is
    connected to RabbitMQ.
    """
    settings = load_cli_settings(database_url, real_secret=True)
    broker_url = url or settings.broker_url
    if not broker_url:
        errors.print(
            "[red]error:[/red] no RabbitMQ to read: give --url amqp://user:password@host:5672/ "
            "or set PERSONALIZE_BROKER_URL (the broker Rasa's endpoints.yml `event_broker` "
            "publishes to)."
        )
        raise typer.Exit(EXIT_USAGE)
    if not broker_url.strip().lower().startswith(("amqp://", "amqps://")):
        # The URL usually holds a password: name the rule, never the value.
        errors.print("[red]error:[/red] --url must start with amqp:// or amqps://")
        raise typer.Exit(EXIT_USAGE)
    if not queue.strip():
        errors.print("[red]error:[/red] --queue must name a queue")
        raise typer.Exit(EXIT_USAGE)
    # One process: its metrics live in memory, even where the environment names a
    # multi-process directory for a server (read when prometheus_client is imported).
    from rasa_personalize.metrics import MULTIPROC_ENV

    os.environ.pop(MULTIPROC_ENV, None)
    from rasa_personalize.segments.tag_rules import load_ingest_tag_rules

    try:
        # Imported here: a missing 'broker' extra is one line, not a traceback.
        from rasa_personalize.events.broker import ConsumerOptions

        rules = None if no_tags else load_ingest_tag_rules(tags or settings.tags_path)
    except PersonalizeError as error:
        fail(error)
    options = ConsumerOptions(prefetch=prefetch)
    expiration = timedelta(minutes=session_expiration_min)
    probes_at = (metrics_host, metrics_port) if metrics_port is not None else None
    stats = run_job(
        lambda: run_broker(
            settings, broker_url.strip(), queue.strip(), options, expiration, rules, probes_at
        )
    )
    console.print(
        f"Broker consumer stopped: {stats.messages} messages in {stats.batches} batches; "
        f"{stats.stored} interactions stored ({stats.sessions_ended} session ends; "
        f"{stats.forgotten_sessions} open sessions forgotten among too many conversations), "
        f"{stats.already_stored} stored before, {stats.suppressed} suppressed (no tracking "
        f"consent, or erased), {stats.ignored} events with nothing to store; "
        f"{stats.dead_letters} messages moved to {queue.strip()}.dead_letters."
    )


async def run_broker(
    settings: Settings,
    url: str,
    queue: str,
    options: ConsumerOptions,
    session_expiration: timedelta,
    rules: TagRules | None,
    probes_at: tuple[str, int] | None = None,
) -> ConsumerStats:
    """Consume ``queue`` until SIGINT or SIGTERM; with ``probes_at`` (host, port), its
    /health, /ready and /metrics are served there."""
    from rasa_personalize.cache.profiles import profile_cache_for
    from rasa_personalize.events.broker import BrokerConsumer, BrokerIngestion
    from rasa_personalize.events.probes import broker_readiness, serving
    from rasa_personalize.metrics import broker_metrics, event_metrics

    store = batch_store(settings)
    # Changed customers' cached profiles are dropped (a batch job: a longer timeout).
    invalidate = profile_cache_for(settings, timeout_s=2.0)
    ingestion = BrokerIngestion(
        store.sessions,
        secret_key=settings.secret_key,
        identity_secret=settings.identity_secret_value,
        consent_default=settings.consent_default,
        previous_secret_keys=settings.previous_secrets,
        tag_rules=rules,
        session_expiration=session_expiration,
    )
    consumer = BrokerConsumer(
        url,
        queue,
        ingestion,
        options=options,
        on_stored=invalidate.invalidate if invalidate is not None else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Registered before the first batch: a scrape lists every family, at 0.
    event_metrics()
    broker_metrics()
    try:
        async with contextlib.AsyncExitStack() as probes:
            if probes_at is not None:
                server = await probes.enter_async_context(
                    serving(
                        *probes_at,
                        lambda: broker_readiness(store, lambda: consumer.connected),
                        "the broker consumer's",
                    )
                )
                console.print(
                    f"Broker probes on http://{probes_at[0]}:{server.port}/health, /ready "
                    "and /metrics"
                )
            return await consumer.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await store.dispose()
        if invalidate is not None:
            await invalidate.close()
