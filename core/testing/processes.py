"""What a process tree holds, read from ``/proc``: for the soak (counts that must come back to their
baseline, RSS whose slope is printed), the load test and the console benchmark (PSS, CPU).

Linux only; a process that exits while it is read counts as holding nothing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields
from pathlib import Path

from core.virt.connection import WORKER_NAME

POOLED = frozenset({WORKER_NAME})
"""OS names of threads of bounded pools (made as needed up to their bound, then kept): counted in
``pool_threads``, apart from the threads that must come back to their baseline."""


def descendants(root: int) -> list[int]:
    """``root`` and every process under it (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def status_field(pid: int, key: str) -> int:
    """One number of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``: kB; ``Threads``), 0 when gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def tree_pss(root: int) -> tuple[float, int]:
    """PSS of ``root`` and its descendants, MiB, and how many processes that is."""
    pids = descendants(root)
    return sum(pss_kib(pid) for pid in pids) / 1024, len(pids)


def cpu_seconds(root: int | None) -> tuple[float, float]:
    """User and system CPU time of ``root``, and of it and every process under it, seconds."""
    if root is None:
        return 0.0, 0.0
    own = total = 0
    for pid in descendants(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks = int(stat[11]) + int(stat[12])  # utime, stime
            total += ticks
            own += ticks if pid == root else 0
    hz = os.sysconf("SC_CLK_TCK")
    return own / hz, total / hz


def _descriptors(pid: int) -> tuple[int, int]:
    """Open file descriptors of ``pid``, and how many of them are sockets."""
    fds = sockets = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            fds += 1
            with contextlib.suppress(OSError):
                sockets += os.readlink(entry.path).startswith("socket:")
    return fds, sockets


@dataclass(frozen=True)
class Counts:
    """One process tree at one moment. ``exact()`` holds what must come back to its baseline after
    work that finished (a leak of one is a leak); the memory figures only drift and are compared
    by slope."""

    fds: int
    sockets: int
    threads: int
    children: int
    rss_kib: int
    pss_kib: int
    pool_threads: int = 0  # of ``threads``: those of the bounded pools (:data:`POOLED`)

    def exact(self) -> dict[str, int]:
        """``threads`` here leaves out the pools' threads: a pool keeps what its busiest moment made."""
        return {"fds": self.fds, "sockets": self.sockets, "threads": self.threads - self.pool_threads,
                "children": self.children}

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _pooled(pid: int) -> int:
    """Threads of ``pid`` whose OS name is a pool's."""
    found = 0
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += Path(task.path, "comm").read_text().strip() in POOLED
    return found


def counts(root: int) -> Counts:
    """Descriptors, sockets, threads and RSS summed over ``root`` and every process under it;
    ``children`` is how many processes are under it."""
    pids = descendants(root)
    fds = sockets = threads = rss = pss = pooled = 0
    for pid in pids:
        own_fds, own_sockets = _descriptors(pid)
        fds, sockets = fds + own_fds, sockets + own_sockets
        threads += status_field(pid, "Threads")
        rss += status_field(pid, "VmRSS")
        pss += pss_kib(pid)
        pooled += _pooled(pid)
    return Counts(fds, sockets, threads, len(pids) - 1, rss, pss, pooled)
