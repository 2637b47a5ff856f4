"""A server's process tree from ``/proc`` (standard library only).

Sanic serves from worker processes it starts itself, so a server's CPU time and memory
are those of its whole tree, not of the process the bench started.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # After the command name, which may itself hold spaces or ")".
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    ticks = 0
    for member in process_tree(pid):
        if (fields := _stat_fields(member)) is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLOCK_TICKS


def tree_rss_kb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in kB."""
    total = 0.0
    for member in process_tree(pid):
        try:
            resident = int((Path("/proc") / str(member) / "statm").read_text().split()[1])
        except OSError:
            continue
        total += resident * PAGE_KB
    return total
