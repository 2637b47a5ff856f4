"""``personalize import interactions``: a CSV or JSON Lines file of events into the store.

Rows are normalised here (header spellings, kind synonyms, number and date formats,
category slugs), then go through the same validation and ingestion as the events API
(:func:`rasa_personalize.events.ingest.ingest_events`), in chunks of one transaction each. Event
ids make it idempotent: a row without one gets an id derived from its normalised content,
so rerunning the same file stores nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from rasa_personalize.clock import utc_now
from rasa_personalize.events.ingest import adopt_event_customers, ingest_events
from rasa_personalize.events.validation import KNOWN_FIELDS
from rasa_personalize.identity import customer_key
from rasa_personalize.imports.normalise import (
    FieldError,
    normalise_category,
    parse_timestamp,
)
from rasa_personalize.imports.report import ImportReport, Rejection
from rasa_personalize.imports.source import CsvSource, ImportFileError, JsonLinesSource, SourceRow
from rasa_personalize.privacy.consent import ConsentDefault
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.store.customers import resolve_keys
from rasa_personalize.store.types import Session, SessionFactory
from rasa_personalize.text import clean_text

EVENT_HEADER_ALIASES: Final = {
    "id": "event_id", "customer_id": "customer", "user_id": "customer", "user": "customer",
    "sku": "product", "product_sku": "product", "product_id": "product", "type": "kind",
    "event_type": "kind", "occurred_at": "timestamp", "time": "timestamp", "ts": "timestamp",
    "date": "timestamp", "qty": "quantity",
}  # fmt: skip
# Obvious names other systems use for our kinds.
KIND_SYNONYMS: Final = {
    "page_view": "view", "pageview": "view", "product_view": "view", "viewed": "view",
    "add_to_cart": "cart", "addtocart": "cart", "add_cart": "cart", "cart_add": "cart",
    "order": "purchase", "buy": "purchase", "checkout": "purchase", "purchased": "purchase",
    "transaction": "purchase", "click": "chat_click", "rate": "rating",
}  # fmt: skip
DEFAULT_CHUNK_SIZE: Final = 1_000
GENERATED_ID_PREFIX: Final = "import-"

FileFormat = Literal["csv", "jsonl"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class InteractionImportOptions:
    """How an interactions file is read.

    Args:
        dayfirst: Read 03/04/2026 as 3 April (else as March 4).
        chunk_size: Events per transaction.
        file_format: csv or jsonl; None guesses from the extension.
    """

    dayfirst: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    file_format: FileFormat | None = None


def file_format_of(path: Path, given: FileFormat | None) -> FileFormat:
    """The format named, or guessed from the extension (.csv; .jsonl, .ndjson).

    Raises:
        ImportFileError: no format given and an extension that says nothing.
    """
    if given is not None:
        return given
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise ImportFileError(
        f"{path}: cannot tell the format from {suffix or 'no extension'!r}: "
        "use .csv or .jsonl, or pass --format"
    )


def _number(value: Any, field: str) -> float | None:
    if value is None or isinstance(value, bool | int | float):
        return value  # validation judges non-text types
    text = clean_text(value)
    if text is None:
        return None
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")  # a decimal comma from a European export
    try:
        return float(text)
    except ValueError:
        raise FieldError(field, "is not a number") from None


def _whole(value: Any, field: str) -> int | None:
    number = _number(value, field)
    if number is None or isinstance(number, int):
        return number
    if not float(number).is_integer():
        raise FieldError(field, "is not a whole number")
    return int(number)


def normalise_event(values: dict[str, Any], *, dayfirst: bool) -> dict[str, Any]:
    """A raw row as an event object for :func:`validate_event` (empty cells dropped).

    Raises:
        FieldError: a cell that cannot be converted (a date, a number).
    """
    event: dict[str, Any] = {}
    for name, cell in values.items():
        raw = clean_text(cell) if isinstance(cell, str) else cell
        if raw is None:
            continue
        if name not in KNOWN_FIELDS:
            event[name] = raw  # validation rejects it, naming the field
        elif name == "kind":
            kind = str(raw).lower().replace(" ", "_").replace("-", "_")
            event[name] = KIND_SYNONYMS.get(kind, kind)
        elif name == "timestamp":
            moment = parse_timestamp(raw, dayfirst=dayfirst, field="timestamp")
            event[name] = moment.isoformat()
        elif name in ("value", "price"):
            event[name] = _number(raw, name)
        elif name == "quantity":
            event[name] = _whole(raw, name)
        elif name == "category":
            event[name] = normalise_category(raw)
        elif name in ("channel", "device") and isinstance(raw, str):
            event[name] = raw.lower()
        else:
            event[name] = raw
    return event


def generated_event_id(event: dict[str, Any], secret_key: str) -> str:
    """A deterministic id from the event's normalised content.

    The customer enters the hash as their keyed customer key, never as the raw id, so
    the stored id confirms nothing about who the customer is.
    """
    content = dict(event)
    customer = content.pop("customer", None)
    if isinstance(customer, str | int) and not isinstance(customer, bool):
        content["customer"] = customer_key(secret_key, str(customer))
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    return GENERATED_ID_PREFIX + digest.hexdigest()[:40]


class InteractionImporter:
    """One run of an interactions import: chunked transactions, or one rolled back."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        secret_key: str,
        options: InteractionImportOptions,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: Progress | None = None,
        tag_rules: TagRules | None = None,
        consent_default: ConsentDefault = "granted",
        previous_secret_keys: Sequence[str] = (),
    ) -> None:
        self.sessions = sessions
        self.consent_default: ConsentDefault = consent_default
        self.previous_secret_keys = tuple(previous_secret_keys)
        self.tag_rules = tag_rules
        self.secret_key = secret_key
        self.options = options
        self.dry_run = dry_run
        self.now = now or utc_now()
        self.progress = progress or (lambda stage, done, total: None)
        self._dry_session: Session | None = None
        self.read = self.inserted = self.duplicates = self.customers_created = 0
        self.suppressed = 0
        self.rejections: list[Rejection] = []

    async def run(self, path: Path) -> ImportReport:
        """Import ``path``. Raises ImportFileError for an unusable file or header."""
        started = time.perf_counter()
        source: CsvSource | JsonLinesSource
        if file_format_of(path, self.options.file_format) == "csv":
            source = CsvSource(path, KNOWN_FIELDS, EVENT_HEADER_ALIASES, required=set())
        else:
            source = JsonLinesSource(path, EVENT_HEADER_ALIASES)
        total = source.rows_expected
        chunk: list[tuple[int, dict[str, Any]]] = []
        async with self._dry_run_session():
            for item in source.rows():
                self.read += 1
                if isinstance(item, Rejection):
                    self.rejections.append(item)
                    continue
                event = self._event(item)
                if event is not None:
                    chunk.append((item.line, event))
                if len(chunk) >= self.options.chunk_size:
                    await self._store(chunk)
                    chunk = []
                    self.progress("storing", self.read, total)
            if chunk:
                await self._store(chunk)
        self.progress("storing", self.read, self.read)
        self.rejections.sort(key=lambda rejection: rejection.line)
        return ImportReport(
            kind="interactions",
            file=str(path),
            read=self.read,
            inserted=self.inserted,
            duplicates=self.duplicates,
            rejected=len(self.rejections),
            rejections=tuple(self.rejections),
            customers_created=self.customers_created,
            suppressed=self.suppressed,
            dry_run=self.dry_run,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _event(self, row: SourceRow) -> dict[str, Any] | None:
        try:
            event = normalise_event(row.values, dayfirst=self.options.dayfirst)
        except FieldError as error:
            self.rejections.append(Rejection(row.line, error.field, error.reason))
            return None
        if "event_id" not in event:
            event["event_id"] = generated_event_id(event, self.secret_key)
        return event

    @asynccontextmanager
    async def _dry_run_session(self) -> AsyncIterator[None]:
        # A dry run stores every chunk in one transaction that is rolled back at the end,
        # so later chunks see earlier ones (duplicates are counted as a real run would).
        if not self.dry_run:
            yield
            return
        async with self.sessions() as session:
            self._dry_session = session
            try:
                yield
            finally:
                self._dry_session = None
                await session.rollback()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Session]:
        if self._dry_session is not None:
            yield self._dry_session
            return
        async with self.sessions.begin() as session:
            yield session

    async def _store(self, chunk: list[tuple[int, dict[str, Any]]]) -> None:
        events = [event for _, event in chunk]
        # Only to count the customers this chunk creates; validation hashes them again.
        keys = [
            customer_key(self.secret_key, str(customer))
            if isinstance(customer := event.get("customer"), str | int)
            else None
            for event in events
        ]
        async with self._transaction() as session:
            # Customers under a former secret's key move first: they are not new ones.
            await adopt_event_customers(
                session,
                events,
                secret_key=self.secret_key,
                previous_secret_keys=self.previous_secret_keys,
            )
            known = await resolve_keys(session, sorted({key for key in keys if key}))
            result = await ingest_events(
                session,
                events,
                secret_key=self.secret_key,
                now=self.now,
                tag_rules=self.tag_rules,
                consent_default=self.consent_default,
            )
        accepted = set(result.accepted)
        self.inserted += len(result.accepted)
        self.duplicates += len(result.duplicates)
        self.suppressed += len(result.suppressed)
        first_seen = {
            key
            for key, event in zip(keys, events, strict=True)
            if key is not None and key not in known and str(event["event_id"]) in accepted
        }
        self.customers_created += len(first_seen)
        self.rejections.extend(
            Rejection(chunk[r.index][0], r.field, r.reason) for r in result.rejected
        )


async def import_interactions(
    sessions: SessionFactory,
    path: Path,
    *,
    secret_key: str,
    options: InteractionImportOptions | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
    tag_rules: TagRules | None = None,
    consent_default: ConsentDefault = "granted",
    previous_secret_keys: Sequence[str] = (),
) -> ImportReport:
    """Import an interactions file (see the module doc); each chunk commits on its own.

    Metrics of the customers with new interactions are recomputed per chunk, and with
    ``tag_rules`` their rule tags too (as event ingestion does). Events of customers who
    may not be tracked (``consent_default``: ``PERSONALIZE_CONSENT_DEFAULT`` for those
    who never answered) are counted as suppressed and not stored. Customers still stored
    under a key of one of ``previous_secret_keys`` (``PERSONALIZE_PREVIOUS_SECRET_KEYS``)
    move to their current key first.

    Raises:
        ImportFileError: the file or its header is unusable; nothing was written.
    """
    importer = InteractionImporter(
        sessions, secret_key=secret_key, options=options or InteractionImportOptions(),
        dry_run=dry_run, now=now, progress=progress, tag_rules=tag_rules,
        consent_default=consent_default, previous_secret_keys=previous_secret_keys,
    )  # fmt: skip
    return await importer.run(path)
