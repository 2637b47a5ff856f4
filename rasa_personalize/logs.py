"""Log lines for people or for machines, and the correlation id that ties a request's together.

The modules keep logging through stdlib ``logging.getLogger(__name__)``; this module
formats every record of the process through structlog's ``ProcessorFormatter``:

- ``console`` (the default): one readable line, for a terminal.
- ``json``: one JSON object per line with ``timestamp``, ``level``, ``logger``, ``event``,
  ``correlation_id`` inside a conversation's action or an API request, and the record's
  ``extra`` fields.

Who configures: the processes this package owns (``personalize`` commands and the
workers of ``personalize serve``) always do; inside another program's process (rasa-sdk's
``rasa run actions``) the plugin formats the logs only when ``PERSONALIZE_LOG_FORMAT`` is
set, and then keeps that program's handlers (their streams and files) and swaps their
formatter, so the whole process writes one format.

What never reaches a line: a conversation's sender id (its correlation id is a keyed hash
of it), the messages of exceptions that are not ours (a driver's or a parser's message
may quote the values it was given; their type and traceback stay), client addresses and
query strings of access lines, and the customer id in the path of a profile URL.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import sys
import traceback
import uuid
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar, Token
from typing import IO, Any, Final, Literal

from rasa_personalize.errors import PersonalizeError

LogFormat = Literal["console", "json"]
LOG_FORMATS: Final = ("console", "json")

# 16 hex digits (64 bits): collision-free enough to follow one conversation, and too short
# to be worth brute-forcing back to a sender id even with the key.
CORRELATION_ID_LENGTH: Final = 16
# Domain separation: a correlation id never equals the conversation's Redis key (also an
# HMAC of the sender id under the same secret), so a log line cannot be joined to it.
_CORRELATION_DOMAIN: Final = b"correlation\x00"

# Sanic's loggers. rasa-sdk's own server stops them propagating (their lines then go to
# Python's last-resort handler, as plain text): a configured format takes them back.
SANIC_LOGGERS: Final = ("sanic.root", "sanic.error", "sanic.access", "sanic.server")
# Their debug lines echo database rows and statement results: never below INFO.
QUIET_LIBRARY_LOGGERS: Final = ("aiosqlite",)
# The customer id in the profile API's paths (percent-encoded e-mail addresses, say).
_PROFILE_PATH: Final = re.compile(r"(/personalize/profiles/)[^/?\s]+")

KeySource = Callable[[], str]

# Exceptions whose messages are safe to log: ours are written to name fields and rules,
# not people; a NameError or an ImportError names code.
_QUOTABLE_ERRORS: Final = (PersonalizeError, NameError, ImportError)


class _Correlation:
    """The correlation of one scope: a conversation's id, hashed only when first needed.

    Hashing costs about a microsecond, and most actions write no log line and no span:
    the sender id waits here, never printed (``repr`` shows the hash), until one does.
    """

    __slots__ = ("_key_source", "_subject", "_value")

    # Positional: one is made per action call, and keywords cost a third more here.
    def __init__(self, subject: str, key_source: KeySource | None, value: str | None) -> None:
        self._value = value
        self._subject = subject
        self._key_source = key_source

    @property
    def id(self) -> str:
        if self._value is None:
            key = _correlation_key(self._key_source)
            message = _CORRELATION_DOMAIN + self._subject.encode("utf-8", "surrogatepass")
            self._value = hmac.digest(key, message, "sha256").hex()[:CORRELATION_ID_LENGTH]
            self._subject = ""  # no longer needed: the raw id goes as soon as it can
            self._key_source = None
        return self._value

    def __repr__(self) -> str:
        return f"<correlation {self.id}>"


_current: ContextVar[_Correlation | None] = ContextVar("personalize_correlation", default=None)
_fallback_key: list[bytes] = []


def _correlation_key(key_source: KeySource | None) -> bytes:
    """The service secret; a random key of this process when it cannot be had.

    A process whose settings are invalid still logs its conversations, each under an id
    stable for the life of the process, and still never under the sender id.
    """
    if key_source is not None:
        try:
            return key_source().encode()
        except PersonalizeError:
            pass
    if not _fallback_key:
        _fallback_key.append(secrets.token_bytes(32))
    return _fallback_key[0]


def conversation_correlation_id(secret_key: str, sender_id: str) -> str:
    """The correlation id of a conversation: HMAC-SHA256(secret, sender id), 16 hex digits."""
    return _Correlation(sender_id, lambda: secret_key, None).id


def bind_conversation(sender_id: str, key_source: KeySource) -> Token[_Correlation | None]:
    """Make the conversation's correlation id current until :func:`unbind` with the token.

    Args:
        sender_id: the conversation's sender id (hashed, never kept in a log line).
        key_source: gives the HMAC key (``PERSONALIZE_SECRET_KEY``) when first needed.
    """
    return _current.set(_Correlation(sender_id, key_source, None))


def bind_request_id(request_id: str | None = None) -> tuple[str, Token[_Correlation | None]]:
    """Make a request id current (a new random one unless given); returns it and the token."""
    value = request_id or uuid.uuid4().hex[:CORRELATION_ID_LENGTH]
    return value, _current.set(_Correlation("", None, value))


def unbind(token: Token[_Correlation | None]) -> None:
    """End the scope :func:`bind_conversation` or :func:`bind_request_id` began."""
    _current.reset(token)


def correlation_id() -> str | None:
    """The correlation id of the running scope (conversation or API request), if any."""
    current = _current.get()
    return current.id if current is not None else None


# -- structlog processors -------------------------------------------------------------

EventDict = MutableMapping[str, Any]


def _add_correlation_id(_logger: Any, _method: str, event: EventDict) -> EventDict:
    current = _current.get()
    if current is not None:
        event["correlation_id"] = current.id
    return event


def _exception_line(error: BaseException) -> str:
    name = type(error).__qualname__
    module = type(error).__module__
    if module not in {"builtins", "__main__"}:
        name = f"{module}.{name}"
    if isinstance(error, _QUOTABLE_ERRORS):
        message = str(error)
        return f"{name}: {message}" if message else name
    return f"{name} (message withheld: it may quote personal data)"


def safe_traceback(error: BaseException) -> str:
    """A traceback as Python prints it, without the messages of exceptions not ours.

    Frames (file, line, function, source line) stay: they are code. The chain of causes
    and contexts is followed as Python does.
    """
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "context"
        else:
            current = None
    parts: list[str] = []
    for failure, how in reversed(chain):
        if failure.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(failure.__traceback__))
        parts.append(_exception_line(failure) + "\n")
        if how == "cause":
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
            )
        elif how == "context":
            parts.append(
                "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
    return "".join(parts).rstrip("\n")


def _render_exception(_logger: Any, _method: str, event: EventDict) -> EventDict:
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        event["exception"] = safe_traceback(exc_info)
    elif isinstance(exc_info, tuple) and isinstance(exc_info[1], BaseException):
        event["exception"] = safe_traceback(exc_info[1])
    stack = event.pop("stack_info", None)
    if isinstance(stack, str):
        event["stack"] = stack
    return event


def _scrub_access_line(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Sanic's access lines: the method and path only, with profile ids masked.

    The client's address is personal data, a query string may carry the webhook token
    (Rasa sends endpoints.yml ``token:`` as ``?token=``) and a profile path a customer id.
    """
    record = event.get("_record")
    if record is None or record.name != "sanic.access":
        return event
    event.pop("host", None)
    request = event.get("request")
    if isinstance(request, str):
        method, _, url = request.partition(" ")
        path = url.partition("?")[0]
        if "://" in path:  # an absolute URL: keep its path
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        masked = _PROFILE_PATH.sub(r"\1<customer>", path)
        event["request"] = f"{method} {masked}".strip()
    return event


def _drop_record(_logger: Any, _method: str, event: EventDict) -> EventDict:
    # ProcessorFormatter.remove_processors_meta, kept local so the chain reads in one place.
    event.pop("_record", None)
    event.pop("_from_structlog", None)
    return event


# The keys every line has, first and in this order: a line reads left to right.
_LEADING_KEYS: Final = ("timestamp", "level", "logger", "correlation_id", "event")


def _leading_keys_first(_logger: Any, _method: str, event: EventDict) -> EventDict:
    ordered = {key: event.pop(key) for key in _LEADING_KEYS if key in event}
    ordered.update(event)
    return ordered


def build_formatter(log_format: LogFormat, *, colors: bool = False) -> logging.Formatter:
    """The formatter of ``log_format``, for any logging handler.

    Raises:
        ValueError: an unknown format (a bug: settings checked it).
    """
    import structlog  # noqa: PLC0415  # only a process that logs pays for it

    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}")
    timestamper = (
        structlog.processors.TimeStamper(fmt="iso", utc=True)
        if log_format == "json"
        else structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
    )
    pre_chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        timestamper,
        _add_correlation_id,
        _scrub_access_line,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str, sort_keys=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[_render_exception, _drop_record, _leading_keys_first, renderer],
    )


def _is_terminal(handler: logging.Handler) -> bool:
    """Whether the handler writes to a terminal (console lines are coloured only there)."""
    isatty = getattr(getattr(handler, "stream", None), "isatty", None)
    return bool(isatty()) if callable(isatty) else False


class PersonalizeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]  # IO[str] in 3.11+
    """The stream handler this module adds when a process has none (found again by type)."""


def configure_logging(
    log_format: LogFormat | None = None,
    *,
    level: int | None = None,
    stream: IO[str] | None = None,
    only_if_set: bool = False,
) -> PersonalizeLogHandler | None:
    """Format the process's logs (idempotent: a second call changes the format in place).

    Args:
        log_format: ``console`` or ``json``; None reads ``PERSONALIZE_LOG_FORMAT``
            (unset: ``console``).
        level: the root logger's level, set when the lines go through a handler of ours;
            None leaves it.
        stream: log to this stream through a handler of our own, replacing one added
            earlier (tests); None: stderr when the process has no handler yet.
        only_if_set: do nothing unless a format was given or the variable is set (inside
            another program's process: its logging is its own unless asked).

    Without ``stream``, a process with no handler gets one on stderr; a process with
    handlers keeps them, and those get the format when it was asked for (or are ours).

    Returns:
        The handler added, or None when none was.

    Raises:
        ConfigurationError: ``PERSONALIZE_LOG_FORMAT`` has an invalid value.
    """
    from rasa_personalize.settings import load_observability_settings  # noqa: PLC0415

    asked = log_format or load_observability_settings().log_format
    if asked is None and only_if_set:
        return None
    chosen: LogFormat = asked or "console"
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, PersonalizeLogHandler)]
    added: PersonalizeLogHandler | None = None
    if stream is not None:
        for handler in ours:
            root.removeHandler(handler)
        added = PersonalizeLogHandler(stream)
        root.addHandler(added)
    elif not root.handlers:
        added = PersonalizeLogHandler(sys.stderr)
        root.addHandler(added)
    for each in root.handlers:
        if isinstance(each, PersonalizeLogHandler) or asked is not None:
            each.setFormatter(build_formatter(chosen, colors=_is_terminal(each)))
    if level is not None and any(isinstance(h, PersonalizeLogHandler) for h in root.handlers):
        # Only where this module writes the lines: a host's own handlers keep its levels.
        root.setLevel(level)
    for name in SANIC_LOGGERS:
        sanic_logger = logging.getLogger(name)
        if not sanic_logger.propagate and not sanic_logger.handlers:
            sanic_logger.propagate = True
    for name in QUIET_LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:
            library.setLevel(logging.INFO)
    if chosen == "json":
        # warnings.warn text goes through logging too: every line stays one JSON object.
        logging.captureWarnings(True)
    return added
