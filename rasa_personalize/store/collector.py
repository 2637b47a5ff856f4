"""The cyclic garbage collector paused while an offline job reads millions of rows.

Each pass of CPython's cyclic collector walks every container object alive, and the
passes come more often the more objects a job allocates: reading ten million
interactions for training spent three quarters of its time in the collector (sampled
with py-spy). The rows read hold no reference cycles, so nothing is lost by pausing it
for the read; it runs again as usual afterwards.

For offline jobs only (training, evaluation): the collector is process-wide, and a
server would pause it for every coroutine at once.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (re-enabled after it if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
