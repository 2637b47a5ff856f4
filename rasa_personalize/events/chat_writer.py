"""Chat-side events of many conversations, stored together: one transaction per batch.

Every recommendation shown is stored ("shown" per product) in the background of the
answer. One transaction per action made a busy server queue its own writes behind each
other on a single-writer store (SQLite) and pay a commit and several driver round trips
per turn. The writer keeps one flush running: what arrives while a batch is being
written goes into the next one, so batches grow with the load and stay at one when the
shop is quiet (group commit).

Writes that nothing waits for (the products shown, an experiment's exposure: stored in
the background of the answer) may also *linger*: their batch waits up to
:data:`LINGER_S` for company, unless a write that an answer waits for arrives or the
batch is full. A commit costs about as much as storing 40 shown products, so at a busy
counter this halves the CPU of storing each turn's products (docs/benchmarks.md); a quiet
shop gets its rows 20 ms later, which no answer notices.

Each write keeps its own outcome: the event ids that were new (a retried action stores
nothing twice), an empty set when tracking consent or an erasure says no, or None when
the store could not be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.privacy.consent import ConsentDefault
from rasa_personalize.store.catalogue import ChatWrite
from rasa_personalize.store.errors import is_outage
from rasa_personalize.store.sql_store import SqlStore

logger = logging.getLogger(__name__)

# Writes per transaction at most: big enough for a burst, small enough to stay well
# inside one action budget.
MAX_BATCH: Final = 200
# How long a batch of background writes waits for more before it is stored.
LINGER_S: Final = 0.02

Outcome = set[str] | None
Guard = Callable[[Awaitable[list[set[str]]]], Awaitable[list[set[str]]]]


class ChatEventWriter:
    """Stores :class:`ChatWrite` values in shared transactions, through a guard.

    ``guard`` bounds each transaction (the engine's store breaker and action budget) and
    raises :class:`StoreUnavailableError` when the store cannot take it.
    """

    def __init__(
        self,
        store: SqlStore,
        consent_default: ConsentDefault,
        guard: Guard,
        max_batch: int = MAX_BATCH,
        linger_s: float = LINGER_S,
    ) -> None:
        self._store_batch = store.store_chat_batch
        self._default_granted = consent_default == "granted"
        self._guard = guard
        self._max_batch = max_batch
        self._linger_s = linger_s
        # Set when the queue must be stored at once: a write an answer waits for, or a
        # full batch.
        self._now = asyncio.Event()
        self._queue: list[tuple[ChatWrite, asyncio.Future[Outcome]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, write: ChatWrite, *, linger: bool = False) -> Outcome:
        """Store one action's events; their new ids, or None with the store unavailable.

        ``linger``: nothing is waiting for this write but a background task, so its batch
        may wait up to ``linger_s`` for more writes (see the module docstring).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((write, done))
        if not linger or len(self._queue) >= self._max_batch:
            self._now.set()
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        batch: list[tuple[ChatWrite, asyncio.Future[Outcome]]] = []
        try:
            while self._queue:
                if not self._now.is_set() and self._linger_s > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._now.wait(), self._linger_s)
                # A write that cannot wait, arriving from here on, sets it again.
                self._now.clear()
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                outcomes = await self._outcomes([write for write, _ in batch])
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if not done.done():
                        done.set_result(outcome)
        finally:
            self._flusher = None
            # Cancelled (a shutdown): the batch in flight and the rest of the queue are
            # answered as unknown, so that no action waits for an answer that never comes.
            for _, done in (*batch, *self._queue):
                if not done.done():
                    done.set_result(None)
            self._queue.clear()

    async def _outcomes(self, writes: Sequence[ChatWrite]) -> list[Outcome]:
        try:
            return list(await self._guard(self._store(writes)))
        except StoreUnavailableError as error:
            if len(writes) > 1 and error.__cause__ is not None and not is_outage(error.__cause__):
                # One write's values were refused: the others must not pay for it.
                return [outcome for write in writes for outcome in await self._outcomes([write])]
            return [None] * len(writes)
        except Exception:
            # A bug, not an outage: logged once for the batch, and nothing is counted.
            logger.exception("Storing %d chat-side writes failed", len(writes))
            return [None] * len(writes)

    async def _store(self, writes: Sequence[ChatWrite]) -> list[set[str]]:
        # Without tracking consent, or from before an erasure, nothing is stored.
        return await self._store_batch(writes, self._default_granted)
