"""When a customer's metrics and tags reflect an event: the bookkeeping of a paced bench.

The bench posts events on a schedule and polls the profiles of a sample of customers.
A customer's profile counts the interactions its metrics were computed from
(``interaction_count``), and the worker writes metrics and tags in one transaction, so
the k-th event posted for a customer is reflected (metrics and tags) once a poll reads a
count of at least k. Events of one customer are stored in the order they were posted as
long as one worker reads the stream; with several, two batches of the same customer may
commit out of order, and the count then credits the earlier event a little early (by at
most the gap between those commits).

Standard library only, no I/O: the bench feeds it times and counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class FreshnessTracker:
    """Events posted for tracked customers, waiting until their profiles count them.

    Args:
        counts: Each tracked customer's interaction count before the first event posted
            here (0 when it has no profile yet).
    """

    counts: dict[str, int]
    # customer -> (ordinal, posted at) of its events not reflected yet, oldest first.
    _waiting: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)
    _posted: dict[str, int] = field(default_factory=dict)
    # (posted at, seconds until reflected) of every reflected event.
    reflected: list[tuple[float, float]] = field(default_factory=list)

    def posted(self, customer: str, at: float) -> None:
        """An event of ``customer`` was posted at ``at`` (ignored for untracked ones)."""
        if customer not in self.counts:
            return
        ordinal = self.counts[customer] + self._posted.get(customer, 0) + 1
        self._posted[customer] = self._posted.get(customer, 0) + 1
        self._waiting.setdefault(customer, deque()).append((ordinal, at))

    def observed(self, customer: str, count: int, at: float) -> None:
        """A poll at ``at`` read ``count`` interactions in ``customer``'s metrics."""
        waiting = self._waiting.get(customer)
        while waiting and waiting[0][0] <= count:
            _, posted_at = waiting.popleft()
            self.reflected.append((posted_at, at - posted_at))

    @property
    def tracked(self) -> list[str]:
        return list(self.counts)

    @property
    def pending(self) -> int:
        """Events posted and not reflected yet."""
        return sum(len(waiting) for waiting in self._waiting.values())

    def oldest_pending(self, now: float) -> float:
        """Seconds the oldest unreflected event has waited (0 when none waits)."""
        oldest = [waiting[0][1] for waiting in self._waiting.values() if waiting]
        return now - min(oldest) if oldest else 0.0
