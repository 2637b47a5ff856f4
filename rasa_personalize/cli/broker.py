"""``personalize broker``: store the events Rasa's pika event broker publishes."""

from __future__ import annotations

import asyncio
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
    Run one per queue. Stops cleanly on Ctrl-C or SIGTERM after the batch in hand.
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
    from rasa_personalize.segments.tag_rules import load_ingest_tag_rules

    try:
        # Imported here: a missing 'broker' extra is one line, not a traceback.
        from rasa_personalize.events.broker import ConsumerOptions

        rules = None if no_tags else load_ingest_tag_rules(tags or settings.tags_path)
    except PersonalizeError as error:
        fail(error)
    options = ConsumerOptions(prefetch=prefetch)
    expiration = timedelta(minutes=session_expiration_min)
    stats = run_job(
        lambda: run_broker(settings, broker_url.strip(), queue.strip(), options, expiration, rules)
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
) -> ConsumerStats:
    """Consume ``queue`` until SIGINT or SIGTERM."""
    from rasa_personalize.cache.profiles import profile_cache_for
    from rasa_personalize.events.broker import BrokerConsumer, BrokerIngestion

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
    try:
        return await consumer.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await store.dispose()
        if invalidate is not None:
            await invalidate.close()
