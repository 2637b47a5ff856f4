"""Erasing a customer everywhere the plugin keeps them: SQL, Redis and model artifacts.

:func:`erase_customer` is the one place that does it; the CLI (``personalize privacy
erase``), the HTTP API (``DELETE /personalize/profiles/<customer>``) and the chat flow
call it. In order:

1. **Tombstones first**, committed on their own: every key involved (the key asked for,
   the customer's own and their aliases') gets an ``erasure_tombstones`` row, and from
   then on ingestion drops the customer's events dated at or before it (late, replayed
   or still queued ones).
2. **Interactions in batches**, one transaction each, so a customer with a long history
   never holds one long transaction.
3. **Everything else** in one transaction with the customer rows locked: events stored
   meanwhile, profile, tags, segment assignments, precomputed recommendations, aliases,
   the customer, consent states and history (one history row "erased" is left per key).
4. **Redis** (when configured): cached profile and its version, precomputed lists, and
   the customer's events still queued in the event stream or its dead letters. Session
   counters are per conversation, keyed by a hash of the sender id, and cannot be found
   by customer: they expire a day after the conversation's last update.
5. **Model artifacts**: the customer's key and factor row removed from every ALS
   version (:mod:`rasa_personalize.recommend.erasure`); servers load the copy at their
   next model check.
6. **An audit row** ``privacy.erase`` with the counts.

Running it again is a no-op with zero counts: the tombstone stays as it was. A step that
could not reach Redis or the models is reported in :attr:`ErasureReceipt.failed` (the
SQL part is done): erase again once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from rasa_personalize.cache.precomputed import delete_precomputed
from rasa_personalize.cache.profiles import forget_profiles, redis_client
from rasa_personalize.clock import utc_now
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.scrub import remove_customer_events
from rasa_personalize.extras import require_redis
from rasa_personalize.privacy.audit import Actor, record_audit
from rasa_personalize.recommend.erasure import erase_from_models
from rasa_personalize.store.erasure import (
    DEFAULT_BATCH,
    ERASED_TABLES,
    delete_customer_rows,
    delete_interaction_batch,
    find_erasure_targets,
    write_tombstones,
)
from rasa_personalize.store.types import SessionFactory

if TYPE_CHECKING:
    from redis.asyncio import Redis as RedisClient

    from rasa_personalize.settings import Settings

logger = logging.getLogger(__name__)

ERASE_ACTION: Final = "privacy.erase"
DEFAULT_EVENT_STREAM: Final = "personalize:events"
# A client made from a URL here serves one erasure: generous, as for a batch job.
REDIS_TIMEOUT_S: Final = 5.0

RedisStatus = Literal["done", "not configured", "failed"]


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure removed, per store. Names the customer by key only.

    Attributes:
        customer_key: The key asked for.
        erased_at: The erasure's time (the tombstones hold it, or an earlier one).
        keys: How many keys were involved (the customer's, their aliases', the one asked).
        tables: Rows deleted per SQL table (``rasa_personalize.store.erasure.ERASED_TABLES``).
        tombstones: Tombstones written (0 when erasing again: the old ones stay).
        redis_keys: Redis keys deleted (cached profile, its version, precomputed list).
        stream_events: Queued events removed from the event stream and its dead letters.
        artifacts: Model versions rewritten without the customer.
        redis: ``done``, ``not configured``, or ``failed`` (see ``failed``).
        failed: Steps that could not be done, with the error's class (erase again).
    """

    customer_key: str
    erased_at: datetime
    keys: int
    tables: Mapping[str, int]
    tombstones: int
    redis_keys: int = 0
    stream_events: int = 0
    artifacts: int = 0
    redis: RedisStatus = "not configured"
    failed: tuple[str, ...] = field(default=())

    @property
    def sql_rows(self) -> int:
        """Rows deleted over every table."""
        return sum(self.tables.values())

    @property
    def found(self) -> bool:
        """Whether anything was held about the customer (False: erasing was a no-op)."""
        return bool(self.sql_rows or self.redis_keys or self.stream_events or self.artifacts)

    @property
    def complete(self) -> bool:
        """Whether every step ran (Redis and models reached)."""
        return not self.failed

    @property
    def outcome(self) -> str:
        """``erased``, ``not_found`` or ``incomplete``, as the audit log records it."""
        if self.failed:
            return "incomplete"
        return "erased" if self.found else "not_found"

    def counts(self) -> dict[str, Any]:
        """The counts alone (the audit row's detail): no key, no id."""
        return {
            "keys": self.keys,
            "tables": dict(self.tables),
            "tombstones": self.tombstones,
            "redis_keys": self.redis_keys,
            "stream_events": self.stream_events,
            "artifacts": self.artifacts,
            "redis": self.redis,
            "failed": list(self.failed),
        }

    def to_dict(self) -> dict[str, Any]:
        """The receipt as JSON-ready values."""
        return {
            "customer_key": self.customer_key,
            "erased_at": self.erased_at.isoformat(),
            "found": self.found,
            "outcome": self.outcome,
            "sql_rows": self.sql_rows,
            **self.counts(),
        }


async def erase_customer(
    sessions: SessionFactory,
    *,
    customer_key: str,
    actor: Actor,
    model_dir: Path | None,
    redis: RedisClient | str | None = None,
    event_stream: str = DEFAULT_EVENT_STREAM,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> ErasureReceipt:
    """Erase the customer ``customer_key`` reaches from SQL, Redis and the models.

    Args:
        sessions: The store's session factory (statements may take a while: use a
            factory without the hot path's statement limit).
        customer_key: ``identity.customer_key(secret, external id)``; an alias's key
            erases the customer it was merged into.
        actor: Who asked (recorded in the audit log):
            ``rasa_personalize.privacy.audit.Actor``.
        model_dir: ``settings.model_dir`` (None: no model artifacts to clean).
        redis: A redis.asyncio client, or a URL (a client is made and closed here), or
            None without Redis.
        event_stream: ``settings.event_stream``.
        now: The erasure's time (default: now): events dated up to it are dropped.
        batch_size: Interactions deleted per transaction.

    Raises:
        DatabaseError: the store failed (the steps done stay done; erase again).
        MissingExtraError: a Redis URL was given without the ``redis`` extra.
    """
    now = now or utc_now()
    async with sessions.begin() as session:
        targets = await find_erasure_targets(session, customer_key)
        tombstones = await write_tombstones(session, targets.keys, now, renew=targets.has_rows)
    interactions = 0
    while targets.customer_ids:
        async with sessions.begin() as session:
            deleted = await delete_interaction_batch(session, targets.customer_ids, batch_size)
        interactions += deleted
        if deleted < batch_size:
            break
    async with sessions.begin() as session:
        final, tables = await delete_customer_rows(session, customer_key, now)
    tables["interactions"] += interactions
    keys = sorted(set(targets.keys) | set(final.keys))
    failed: list[str] = []
    redis_keys, stream_events, redis_status = await _erase_in_redis(
        redis, event_stream, keys, failed
    )
    artifacts = 0
    if model_dir is not None:
        try:
            artifacts = len(await asyncio.to_thread(erase_from_models, model_dir, keys))
        except (OSError, PersonalizeError) as error:
            failed.append(f"models: {type(error).__name__}")
            logger.error("Erasure could not clean the models (%s).", type(error).__name__)
    receipt = ErasureReceipt(
        customer_key=customer_key,
        erased_at=now,
        keys=len(keys),
        tables={table: tables[table] for table in ERASED_TABLES},
        tombstones=tombstones,
        redis_keys=redis_keys,
        stream_events=stream_events,
        artifacts=artifacts,
        redis=redis_status,
        failed=tuple(failed),
    )
    async with sessions.begin() as session:
        await record_audit(
            session,
            actor,
            ERASE_ACTION,
            receipt.outcome,
            customer_key=customer_key,
            detail=receipt.counts(),
            now=now,
        )
    return receipt


async def _erase_in_redis(
    redis: RedisClient | str | None, event_stream: str, keys: list[str], failed: list[str]
) -> tuple[int, int, RedisStatus]:
    """(keys deleted, stream events removed, status); a failure is appended to ``failed``."""
    if redis is None:
        return 0, 0, "not configured"
    require_redis()
    from redis.exceptions import RedisError  # noqa: PLC0415  # an extra: only with Redis

    client = redis_client(redis, REDIS_TIMEOUT_S) if isinstance(redis, str) else redis
    try:
        deleted = await forget_profiles(client, keys)
        deleted += await delete_precomputed(client, keys)
        removed = await remove_customer_events(client, event_stream, keys)
    except (RedisError, OSError) as error:
        failed.append(f"redis: {type(error).__name__}")
        logger.error("Erasure could not reach Redis (%s).", type(error).__name__)
        return 0, 0, "failed"
    finally:
        if isinstance(redis, str):
            await client.aclose()
    return deleted, removed, "done"


async def erase_with_settings(
    settings: Settings,
    sessions: SessionFactory,
    customer_key: str,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> ErasureReceipt:
    """:func:`erase_customer` with the model directory, Redis and stream of ``settings``."""
    return await erase_customer(
        sessions,
        customer_key=customer_key,
        actor=actor,
        model_dir=settings.model_dir,
        redis=settings.redis_url,
        event_stream=settings.event_stream,
        now=now,
    )
