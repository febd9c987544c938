"""The audit log: every action, from the TUI, the CLI and the web, with who, what, which VM, when,
from where, and the outcome, in the shared SQLite file.

Lifecycle actions are recorded by :meth:`core.lab.Lab.act` itself (one entry per VM), so no caller
can forget; callers record what only they know (sign-ins, console links, requests).
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

OUTCOMES = ("ok", "failed", "refused")
SOURCES = ("tui", "cli", "web")

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

    def as_json(self) -> dict[str, object]:
        at = datetime.fromtimestamp(self.at).astimezone().isoformat(timespec="seconds")
        return {"id": self.id, "at": at, "user": self.user, "source": self.source, "address": self.address,
                "action": self.action, "vm": self.vm_name, "uuid": self.vm_uuid,
                "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to record (the actor and the time are the call's)."""

    action: str
    vm_name: str = ""
    vm_uuid: str = ""
    outcome: str = "ok"
    detail: str = ""


_COLUMNS = "id, at, user, source, address, action, vm_name, vm_uuid, outcome, detail"


class AuditLog:
    """Append-only; one connection, safe to use from the core's thread and the caller's."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = database.open_store(path, "audit", _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def record(self, actor: Actor, action: str, *, vm_name: str = "", vm_uuid: str = "",
               outcome: str = "ok", detail: str = "") -> Entry:
        return self.record_many(actor, [Item(action, vm_name, vm_uuid, outcome, detail)])[0]

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
        with database.transaction(self._db):
            for row in rows:
                cursor = self._db.execute(
                    f"INSERT INTO audit ({_COLUMNS.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row)
                entries.append(Entry(int(cursor.lastrowid or 0), *row))
        return entries

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
