"""What every ``personalize`` command shares: consoles, settings, the batch store, running
a job, progress bars and the one-line error.

Public on purpose: each command module imports these names and never another command
module's. Everything heavy (settings validation, SQLAlchemy, numpy) is imported inside
the functions that need it, so ``personalize --help`` answers without loading any of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rasa_personalize.errors import MissingExtraError, PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.recommend.datasets import MovieLens100k
    from rasa_personalize.settings import Settings
    from rasa_personalize.store.sql_store import SqlStore

T = TypeVar("T")

# Exit codes: 1 for a failed job or bad input data, 2 for a usage or installation problem.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

# Panels of `personalize --help`, in the order of the work: data in, models, decisions,
# serving, the demo.
PANEL_DATA: Final = "Store and data"
PANEL_MODELS: Final = "Models and segments"
PANEL_DECISIONS: Final = "Decisions and profiles"
PANEL_SERVING: Final = "Serving"
PANEL_PRIVACY: Final = "Privacy and keys"
PANEL_DEMO: Final = "Demo"

console = Console()
# For lines scripts grep: printed as typed (no markup, no highlighting), never cut.
SUMMARY_STYLE: Final[dict[str, Any]] = {"highlight": False, "markup": False, "soft_wrap": True}
# An error is one line however long: rich would otherwise wrap it at 80 columns when
# stderr is not a terminal, splitting it in logs and in `2>&1 | grep`.
errors = Console(stderr=True, soft_wrap=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Store URL (default: $PERSONALIZE_DATABASE_URL or sqlite:///personalize.db).",
        show_default=False,
    ),
]


def missing_extra(error: MissingExtraError) -> NoReturn:
    """One unwrapped line naming the extra to install, and exit code 2."""
    errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def fail(error: PersonalizeError | str, code: int = EXIT_FAILED) -> NoReturn:
    """``error: <message>`` on stderr, one line, and exit ``code`` (a missing extra: 2).

    The message is printed as text: it may quote a path or an argument, and a ``[`` in
    those must not be read as console markup.
    """
    if isinstance(error, MissingExtraError):
        missing_extra(error)
    errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
    raise typer.Exit(code)


def load_cli_settings(database_url: str | None, *, real_secret: bool = False) -> Settings:
    """Settings from the environment, ``--database-url`` on top; exit with the reason if
    they are invalid (the URL is checked now, not in the middle of a job).

    With ``real_secret`` (commands that serve or write customer data) the public
    development secret is refused: exit 2 with one line, and no warning before it.
    """
    from rasa_personalize.settings import load_settings
    from rasa_personalize.store.database import describe_database

    overrides: dict[str, object] = {}
    if database_url:
        overrides["database_url"] = database_url
    # The refusal replaces the development-key warning: the error stays one line.
    settings_log = logging.getLogger("rasa_personalize.settings")
    level = settings_log.level
    if real_secret:
        settings_log.setLevel(logging.ERROR)
    try:
        settings = load_settings(**overrides)
        describe_database(settings.database_url)  # validates the URL now, not mid-job
    except PersonalizeError as error:
        fail(error)
    finally:
        settings_log.setLevel(level)
    if real_secret:
        refuse_development_secret(settings)
    return settings


def refuse_development_secret(settings: Settings) -> None:
    """Exit 2 with one line if the public development secret is in use and not allowed.

    Anyone who knows that key can recompute customer keys from channel ids, and the
    contact encryption key is derived from it when none is set: so commands that write or
    serve customer data refuse it unless ``PERSONALIZE_ALLOW_DEV_SECRET=true`` (demo
    stores)."""
    if settings.uses_development_secret and not settings.allow_dev_secret:
        fail(
            "PERSONALIZE_SECRET_KEY is not set and the built-in development key is public: "
            'set a secret of your own, e.g. export PERSONALIZE_SECRET_KEY="$(python -c '
            "'import secrets; print(secrets.token_urlsafe(32))')\" (keep it: customer keys "
            "depend on it), or PERSONALIZE_ALLOW_DEV_SECRET=true for a demo store",
            EXIT_USAGE,
        )


def describe_store(settings: Settings) -> str:
    """The store's URL for messages: no password, no user name."""
    from rasa_personalize.store.database import describe_database

    return describe_database(settings.database_url)


def batch_store(settings: Settings) -> SqlStore:
    """A store for an offline job: no statement limit (only the hot path needs one)."""
    from rasa_personalize.store.database import StoreTimeouts
    from rasa_personalize.store.sql_store import SqlStore

    return SqlStore(settings.database_url, StoreTimeouts(connect_s=10.0, statement_s=None))


async def invalidate_profile_cache(settings: Settings) -> None:
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


def run_job(job: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async job; turn our errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(job())
    except PersonalizeError as error:
        fail(error)


async def guarded(awaitable: Awaitable[T]) -> T:
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


@contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars on stderr, one per stage; yields the ``(stage, done, total)`` callback
    that long jobs report to."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

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


def load_movielens() -> MovieLens100k:
    """MovieLens-100k (``evaluate`` and ``import movielens``); exit 1 with the reason when
    it cannot be fetched."""
    from rasa_personalize.recommend import datasets
    from rasa_personalize.recommend.errors import DatasetUnavailableError

    try:
        with errors.status("Loading MovieLens-100k (the recbole wheel is downloaded once)"):
            # Looked up on the module at call time, so tests can replace the loader.
            return datasets.load_movielens_100k()
    except DatasetUnavailableError as error:
        errors.print(
            f"[red]error:[/red] MovieLens-100k is unavailable: {error}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED) from None


def customer_id_or_fail(customer: str) -> str:
    """The customer id as given (stripped), or exit 2 when it cannot be one.

    The message never repeats the id: it may be an e-mail address or a phone number.
    """
    from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH
    from rasa_personalize.text import has_control_characters

    external_id = customer.strip()
    if not external_id or len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        fail(f"the customer id must be 1 to {MAX_EXTERNAL_ID_LENGTH} characters", EXIT_USAGE)
    if has_control_characters(external_id):
        fail("the customer id must not contain control characters", EXIT_USAGE)
    return external_id
