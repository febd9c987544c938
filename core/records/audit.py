"""The audit log: every action, from the TUI, the CLI and the web, with who, what, which VM, when,
from where, and the outcome, in the shared SQLite file.

Lifecycle actions are recorded by :meth:`core.lab.Lab.act` itself (one entry per VM), so no caller
can forget; callers record what only they know (sign-ins, console links, requests).

What anyone can cause without signing in (refused sign-ins) is recorded *collapsed*: a repeat of
the same entry (same who, from where, what, outcome and detail) within COLLAPSE_WINDOW of the
entry's first time adds one to its ``repeats`` and moves its ``last`` time, instead of writing a
row. Entries older than VMM_AUDIT_DAYS are purged by the server (:meth:`AuditLog.purge`).
"""

from __future__ import annotations

import getpass
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.records import database

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "failed", "refused", "abandoned")  # abandoned: the TUI quit before it finished
SOURCES = ("tui", "cli", "web")
COLLAPSE_WINDOW = 15 * 60.0  # repeats of a collapsed entry within this of its first time join it

_MIGRATIONS = (
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        user TEXT NOT NULL,
        source TEXT NOT NULL,
        address TEXT NOT NULL,
        action TEXT NOT NULL,
        vm_name TEXT NOT NULL,
        vm_uuid TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_user ON audit (user);
    CREATE INDEX audit_vm ON audit (vm_name)
    """,
    # Collapsed repeats: how many times the entry happened, and when it last did (NULL: once).
    """
    ALTER TABLE audit ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE audit ADD COLUMN last REAL;
    CREATE INDEX audit_last ON audit (last)
    """,
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a signed-in web user, or the operator at the terminal."""

    user: str
    source: str  # one of SOURCES
    address: str  # the web client's address; the SSH client's, or "local", at a terminal

    @classmethod
    def local(cls, source: str) -> Actor:
        """The operator at this terminal: the user behind sudo, and where their SSH session comes from."""
        user = os.environ.get("SUDO_USER") or _login_name()
        ssh = os.environ.get("SSH_CLIENT", "").split()
        return cls(user, source, ssh[0] if ssh else "local")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid:{os.getuid()}"


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: float
    user: str
    source: str
    address: str
    action: str
    vm_name: str
    vm_uuid: str
    outcome: str
    detail: str
    repeats: int = 1
    """How many times it happened (collapsed repeats: see the module docstring)."""
    last: float | None = None
    """When it last happened, for an entry with repeats."""

    def as_json(self) -> dict[str, object]:
        at = datetime.fromtimestamp(self.at).astimezone().isoformat(timespec="seconds")
        last = (None if self.last is None
                else datetime.fromtimestamp(self.last).astimezone().isoformat(timespec="seconds"))
        return {"id": self.id, "at": at, "user": self.user, "source": self.source, "address": self.address,
                "action": self.action, "vm": self.vm_name, "uuid": self.vm_uuid,
                "outcome": self.outcome, "detail": self.detail, "repeats": self.repeats, "last": last}

    @property
    def times(self) -> str:
        """How many times it happened and until when (``×12 until 10:42:05``); "" for once."""
        if self.repeats <= 1 or self.last is None:
            return ""
        return f"×{self.repeats} until {datetime.fromtimestamp(self.last).strftime('%H:%M:%S')}"


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to record (the actor and the time are the call's)."""

    action: str
    vm_name: str = ""
    vm_uuid: str = ""
    outcome: str = "ok"
    detail: str = ""
    collapse: bool = False
    """Join a repeat of the same entry within COLLAPSE_WINDOW instead of writing a row (for what
    can be caused without signing in)."""


_FIELDS = "at, user, source, address, action, vm_name, vm_uuid, outcome, detail"
_COLUMNS = f"id, {_FIELDS}, repeats, last"
_SAME = ("user = ? AND source = ? AND address = ? AND action = ? AND vm_name = ? AND vm_uuid = ? AND "
         "outcome = ? AND detail = ?")


class AuditLog:
    """Append-only; one connection, safe to use from the core's thread and the caller's."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = database.open_store(path, "audit", _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def record(self, actor: Actor, action: str, *, vm_name: str = "", vm_uuid: str = "",
               outcome: str = "ok", detail: str = "", collapse: bool = False) -> Entry:
        return self.record_many(actor, [Item(action, vm_name, vm_uuid, outcome, detail, collapse)])[0]

    def record_many(self, actor: Actor, items: Sequence[Item]) -> list[Entry]:
        """Several entries in one transaction (a bulk action over a class)."""
        now = self._clock()
        rows = []
        for item in items:
            if item.outcome not in OUTCOMES:
                raise ValueError(f"audit outcome {item.outcome!r} is not one of {OUTCOMES}")
            rows.append((now, actor.user, actor.source, actor.address, item.action, item.vm_name,
                         item.vm_uuid, item.outcome, item.detail[:2000]))
        entries = []
        with database.transaction(self._db, "record"):
            for item, row in zip(items, rows, strict=True):
                if item.collapse and (entry := self._join(now, row[1:])) is not None:
                    entries.append(entry)
                    continue
                cursor = self._db.execute(f"INSERT INTO audit ({_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                          row)
                entries.append(Entry(int(cursor.lastrowid or 0), *row))
        return entries

    def _join(self, now: float, same: tuple[object, ...]) -> Entry | None:
        """Count a repeat, at ``now``, of the newest entry begun within COLLAPSE_WINDOW whose
        fields after its time are ``same``; the entry, or None when there is none."""
        found = self._db.execute(f"SELECT id FROM audit WHERE at > ? AND {_SAME} ORDER BY id DESC LIMIT 1",
                                 (now - COLLAPSE_WINDOW, *same)).fetchone()
        if found is None:
            return None
        self._db.execute("UPDATE audit SET repeats = repeats + 1, last = ? WHERE id = ?", (now, found[0]))
        return Entry(*self._db.execute(f"SELECT {_COLUMNS} FROM audit WHERE id = ?", found).fetchone())

    def purge(self, days: int) -> int:
        """Delete the entries older than ``days`` days (by when they last happened); how many."""
        cutoff = self._clock() - days * 86400.0
        with database.transaction(self._db, "purge"):
            return self._db.execute("DELETE FROM audit WHERE coalesce(last, at) < ?", (cutoff,)).rowcount

    def entries(self, *, since: float | None = None, user: str | None = None, vm: str | None = None,
                limit: int = 1000) -> list[Entry]:
        """The newest ``limit`` entries matching, oldest first; ``vm`` matches a name or a UUID."""
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if vm is not None:
            where.append("(vm_name = ? OR vm_uuid = ?)")
            args += [vm, vm.lower()]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM audit {clause} ORDER BY id DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [Entry(*row) for row in reversed(rows)]

    def last_id(self) -> int:
        """The newest entry's id (0 when empty): a cheap "anything new?" for views that follow the log."""
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0])

    def last_change(self) -> tuple[int, float]:
        """The newest entry's id and the latest repeat's time: changes when anything is written."""
        row = self._db.execute("SELECT coalesce(max(id), 0), coalesce(max(last), 0) FROM audit").fetchone()
        return int(row[0]), float(row[1])


def record(path: Path, actor: Actor, items: Sequence[Item]) -> None:
    """Open the log, write, close: for a caller without a Lab. A failure to write is logged, never
    raised: the action it records has happened either way."""
    if not items:
        return
    try:
        audit = AuditLog(path)
        try:
            audit.record_many(actor, items)
        finally:
            audit.close()
    except (sqlite3.Error, OSError) as exc:
        log.error("audit log not written (%s): %s", exc, items)
