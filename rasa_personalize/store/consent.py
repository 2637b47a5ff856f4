"""Consent rows: a customer's current answer per purpose, its history, and batch lookups.

Everything is by customer key (the keyed hash), so a visitor's answer counts before the
store knows them as a customer. Writes happen in the caller's transaction: the caller
appends the audit row in the same one (``rasa_personalize.privacy.consent`` does both).

Reads are async functions on a :data:`~rasa_personalize.store.types.Session` for the CLI,
the HTTP API and ingestion; the conversation reads a customer's answers with their profile
(``repository.snapshot_statements``). :func:`read_tracking_facts` also runs on a sync
``Connection``, so that a batch of chat events is checked in the batch's own hop.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Integer, Select, case, insert, literal_column, select, union_all
from sqlalchemy.engine import Connection

from rasa_personalize.store.bulk import chunked
from rasa_personalize.store.dialect import (
    POSTGRESQL,
    dialect_of,
    lock_for_update,
    member_of,
    upsert,
)
from rasa_personalize.store.models import (
    CONSENT_PURPOSES,
    CONSENT_SOURCES,
    ConsentChange,
    ConsentState,
    ErasureTombstone,
)
from rasa_personalize.store.types import Session

# Values per IN (...) list on SQLite and MySQL (PostgreSQL takes one array whatever the size).
# The width of the policy_version columns.
MAX_POLICY_VERSION_LENGTH: Final = 32
TRACKING: Final = "tracking"
# Row kinds of the ingestion lookup (one UNION ALL, one round trip).
_DENIED: Final = 0
_GRANTED: Final = 1
_ERASED: Final = 2


@dataclass(frozen=True)
class ConsentStateRecord:
    """A customer's current answer for one purpose."""

    purpose: str
    granted: bool
    source: str
    policy_version: str | None
    updated_at: datetime


@dataclass(frozen=True)
class ConsentChangeRecord:
    """One row of the consent history.

    ``decision`` is granted, denied or erased; an erasure marker has no purpose, source
    or policy version.
    """

    id: int
    purpose: str | None
    decision: str
    source: str | None
    policy_version: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class TrackingFacts:
    """What ingestion must know about a batch's customers, from one lookup.

    ``tracking``: the explicit tracking answers (customer key -> granted); keys without
    one are absent, and the configured default decides. ``erased_at``: when customers
    with an erasure tombstone were erased.
    """

    tracking: Mapping[str, bool] = field(default_factory=dict)
    erased_at: Mapping[str, datetime] = field(default_factory=dict)

    def allows(self, customer_key: str, occurred_at: datetime, default_granted: bool) -> bool:
        """Whether an event of this customer at this time may be stored.

        Not when it happened at or before their erasure; otherwise their tracking
        answer, or ``default_granted`` when they never gave one.
        """
        erased_at = self.erased_at.get(customer_key)
        if erased_at is not None and occurred_at <= erased_at:
            return False
        answer = self.tracking.get(customer_key)
        return answer if answer is not None else default_granted


def _check_purposes(purposes: Iterable[str]) -> None:
    unknown = sorted(set(purposes) - set(CONSENT_PURPOSES))
    if unknown:
        # Callers validate input with better messages; this guards the store itself.
        raise ValueError(f"unknown consent purposes {unknown}: use {', '.join(CONSENT_PURPOSES)}")


def _chunks(items: Sequence[str], dialect: str) -> Iterable[Sequence[str]]:
    if dialect == POSTGRESQL:
        yield items  # one array parameter, one cached statement
        return
    yield from chunked(items)


def _select_states(customer_key: str) -> Select[str, bool, str, str | None, datetime]:
    return select(
        ConsentState.purpose,
        ConsentState.granted,
        ConsentState.source,
        ConsentState.policy_version,
        ConsentState.updated_at,
    ).where(ConsentState.customer_key == customer_key)


def _state_records(rows: Iterable[Any]) -> tuple[ConsentStateRecord, ...]:
    records = [
        ConsentStateRecord(
            purpose=row.purpose,
            granted=bool(row.granted),
            source=row.source,
            policy_version=row.policy_version,
            updated_at=row.updated_at,
        )
        for row in rows
    ]
    order = {purpose: index for index, purpose in enumerate(CONSENT_PURPOSES)}
    return tuple(sorted(records, key=lambda record: order.get(record.purpose, len(order))))


async def load_consent_states(
    session: Session, customer_key: str
) -> tuple[ConsentStateRecord, ...]:
    """The customer's stored answers, in the order of ``CONSENT_PURPOSES`` (none: empty)."""
    rows = await session.execute(_select_states(customer_key))
    return _state_records(rows.all())


async def set_consent(
    session: Session,
    customer_key: str,
    decisions: Mapping[str, bool],
    *,
    source: str,
    policy_version: str | None,
    now: datetime,
) -> tuple[ConsentStateRecord, ...]:
    """Record answers (purpose -> granted) in the caller's transaction.

    A purpose's state and history change only when the answer is new: its granted value
    differs from the stored one, or there is none yet, or a policy version is given that
    differs from the stored one (consent given again to a new policy is worth a record).
    The same answer given again (same value, no or the same policy version) appends no
    history and keeps the state's ``source`` and ``updated_at``: the history lists
    decisions, not every click of a button, and ``updated_at`` stays the time the
    customer actually decided.

    The customer's existing state rows are locked until the transaction ends, so two
    concurrent answers for a purpose already answered are compared and recorded one after
    the other. A customer's very first answers have no row to lock: two concurrent first
    answers both land in the history (the state keeps one of them, by its primary key).

    Returns:
        The states that changed, as now stored, in the order of ``CONSENT_PURPOSES``.

    Raises:
        ValueError: an unknown purpose or source, or a policy version longer than
            :data:`MAX_POLICY_VERSION_LENGTH` (callers validate input before).
    """
    _check_purposes(decisions)
    if source not in CONSENT_SOURCES:
        raise ValueError(f"unknown consent source {source!r}: use {', '.join(CONSENT_SOURCES)}")
    if policy_version is not None and len(policy_version) > MAX_POLICY_VERSION_LENGTH:
        raise ValueError(f"policy version longer than {MAX_POLICY_VERSION_LENGTH} characters")
    if not decisions:
        return ()
    dialect = dialect_of(session)
    current = {
        record.purpose: record
        for record in _state_records(
            (await session.execute(lock_for_update(_select_states(customer_key), dialect))).all()
        )
    }
    changed: list[ConsentStateRecord] = []
    for purpose in CONSENT_PURPOSES:
        if purpose not in decisions:
            continue
        granted = decisions[purpose]
        stored = current.get(purpose)
        if (
            stored is not None
            and stored.granted == granted
            and (policy_version is None or policy_version == stored.policy_version)
        ):
            continue
        changed.append(
            ConsentStateRecord(
                purpose=purpose,
                granted=granted,
                source=source,
                policy_version=policy_version,
                updated_at=now,
            )
        )
    if not changed:
        return ()
    await session.execute(
        upsert(
            dialect,
            ConsentState,
            ["customer_key", "purpose"],
            ["granted", "source", "policy_version", "updated_at"],
        ),
        [
            {
                "customer_key": customer_key,
                "purpose": record.purpose,
                "granted": record.granted,
                "source": record.source,
                "policy_version": record.policy_version,
                "updated_at": record.updated_at,
            }
            for record in changed
        ],
    )
    await session.execute(
        insert(ConsentChange),
        [
            {
                "customer_key": customer_key,
                "purpose": record.purpose,
                "decision": "granted" if record.granted else "denied",
                "source": record.source,
                "policy_version": record.policy_version,
                "recorded_at": record.updated_at,
            }
            for record in changed
        ],
    )
    return tuple(changed)


async def load_consent_history(
    session: Session, customer_key: str, *, limit: int | None = None
) -> tuple[ConsentChangeRecord, ...]:
    """The customer's consent history, oldest first and newest last.

    With ``limit``, the newest ``limit`` rows (still oldest first).
    """
    statement = (
        select(ConsentChange)
        .where(ConsentChange.customer_key == customer_key)
        .order_by(ConsentChange.recorded_at.desc(), ConsentChange.id.desc())
    )
    if limit is not None:
        statement = statement.limit(limit)
    rows = (await session.scalars(statement)).all()
    return tuple(
        ConsentChangeRecord(
            id=row.id,
            purpose=row.purpose,
            decision=row.decision,
            source=row.source,
            policy_version=row.policy_version,
            recorded_at=row.recorded_at,
        )
        for row in reversed(rows)
    )


async def load_tracking_facts(session: Session, customer_keys: Collection[str]) -> TrackingFacts:
    """Tracking answers and erasure times of these customers, in one round trip.

    One ``UNION ALL`` of the consent states and the erasure tombstones (per chunk of
    keys on SQLite and MySQL; one statement on PostgreSQL), so ingestion asks once per
    batch, whatever its size.
    """
    connection = await session.connection()
    return await connection.run_sync(read_tracking_facts, customer_keys)


def read_tracking_facts(connection: Connection, customer_keys: Collection[str]) -> TrackingFacts:
    """:func:`load_tracking_facts` on a synchronous connection."""
    tracking: dict[str, bool] = {}
    erased_at: dict[str, datetime] = {}
    dialect = dialect_of(connection)
    for chunk in _chunks(sorted(set(customer_keys)), dialect):
        # Constants as literal text: a bound NULL or number in a UNION has no type
        # PostgreSQL can infer, and the timestamp columns keep theirs (MySQL's naive
        # DATETIME comes back as UTC through the first SELECT's column type).
        states = select(
            ConsentState.customer_key.label("customer_key"),
            case(
                (ConsentState.granted, literal_column(str(_GRANTED), Integer)),
                else_=literal_column(str(_DENIED), Integer),
            ).label("kind"),
            ConsentState.updated_at.label("at"),
        ).where(
            ConsentState.purpose == TRACKING,
            member_of(ConsentState.customer_key, chunk, dialect),
        )
        tombstones = select(
            ErasureTombstone.customer_key,
            literal_column(str(_ERASED), Integer),
            ErasureTombstone.erased_at,
        ).where(member_of(ErasureTombstone.customer_key, chunk, dialect))
        rows = connection.execute(union_all(states, tombstones))
        for key, kind, at in rows.all():
            if int(kind) == _ERASED:
                erased_at[key] = at
            else:
                tracking[key] = int(kind) == _GRANTED
    return TrackingFacts(tracking=tracking, erased_at=erased_at)
