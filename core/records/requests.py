"""Resource requests: a student asks for more vCPUs or memory for a VM, or for another VM.

Students create them on the web portal; operators answer in the TUI (approve: the change goes into
the VM's definition, effective at its next boot, see :meth:`core.lab.Lab.apply_request`; reject:
with a word). Stored in the shared SQLite file, so the server and the TUI see the same requests.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, NotFound, TranslatableError
from core.records import database
from core.text import N_, count


class Kind(enum.StrEnum):
    VCPUS = "vcpus"
    MEMORY = "memory"
    NEW_VM = "new_vm"


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


LIMITS: dict[Kind, tuple[int, int]] = {Kind.VCPUS: (1, 16), Kind.MEMORY: (256, 65536)}
"""What a request may ask for: vCPUs, and memory in MiB (inclusive)."""
MAX_REASON = 500
MAX_ANSWER = 200
_UNITS = {Kind.VCPUS: N_("ask for %(low)d to %(high)d vCPUs"),
          Kind.MEMORY: N_("ask for %(low)d to %(high)d MiB of memory")}


class RequestRefused(InvalidInput, TranslatableError):
    """A request that does not make sense (the portal says why in the page's language)."""


_MIGRATIONS = (
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL,
        email TEXT,
        kind TEXT NOT NULL,
        vm_uuid TEXT,
        vm_name TEXT,
        amount INTEGER,
        reason TEXT NOT NULL,
        created REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        answered_by TEXT,
        answer TEXT NOT NULL DEFAULT '',
        answered REAL
    );
    CREATE INDEX requests_user ON requests (username);
    CREATE INDEX requests_status ON requests (status)
    """,
)
_COLUMNS = ("id, username, email, kind, vm_uuid, vm_name, amount, reason, created, status, answered_by, "
            "answer, answered")


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    username: str
    email: str | None
    kind: Kind
    vm_uuid: str | None
    vm_name: str | None
    amount: int | None
    reason: str
    created: float
    status: Status
    answered_by: str | None
    answer: str
    answered: float | None

    def summary(self) -> str:
        """``4 vCPUs for info1-alice``, ``2048 MiB of memory for …``, ``another VM``."""
        if self.kind is Kind.VCPUS:
            return f"{count(self.amount or 0, 'vCPU')} for {self.vm_name}"
        if self.kind is Kind.MEMORY:
            return f"{self.amount} MiB of memory for {self.vm_name}"
        return "another VM"


def _request(row: Sequence[Any]) -> Request:
    """A row of ``_COLUMNS`` (SQLite gives untyped values: each is converted to its field's type)."""
    (rid, username, email, kind, vm_uuid, vm_name, amount, reason, created, status, by, answer,
     answered) = row
    return Request(int(rid), str(username), email, Kind(kind), vm_uuid, vm_name,
                   None if amount is None else int(amount), str(reason), float(created),
                   Status(status), by, str(answer), None if answered is None else float(answered))


def _clean_text(text: str, limit: int, too_long: str, control: str) -> str:
    cleaned = " ".join(text.split())
    if len(cleaned) > limit:
        raise RequestRefused(too_long, limit=limit)
    if any(ord(c) < 32 or ord(c) == 127 for c in cleaned):
        raise RequestRefused(control)
    return cleaned


class RequestStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = database.open_store(path, "requests", _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def create(self, username: str, kind: Kind | str, *, reason: str, vm_uuid: str | None = None,
               vm_name: str | None = None, amount: int | None = None, email: str | None = None) -> Request:
        """A new pending request; InvalidInput (and nothing stored) when it does not make sense."""
        try:
            kind = Kind(kind)
        except ValueError:
            raise InvalidInput(f"unknown request kind {kind!r}") from None
        reason = _clean_text(reason, MAX_REASON, N_("the reason is longer than %(limit)d characters"),
                             N_("the reason holds control characters"))
        if not reason:
            raise RequestRefused(N_("say why you need it (the reason is empty)"))
        if kind is Kind.NEW_VM:
            vm_uuid = vm_name = None
            amount = None
        else:
            if not vm_uuid or not vm_name:
                raise RequestRefused(N_("choose the VM this request is for"))
            low, high = LIMITS[kind]
            if amount is None or not low <= amount <= high:
                raise RequestRefused(_UNITS[kind], low=low, high=high)
        with database.transaction(self._db, "create"):
            cursor = self._db.execute(
                "INSERT INTO requests (username, email, kind, vm_uuid, vm_name, amount, reason, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (username, email, kind.value, vm_uuid, vm_name, amount, reason, self._clock()))
        found = self.get(int(cursor.lastrowid or 0))
        assert found is not None
        return found

    def get(self, request_id: int) -> Request | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else _request(row)

    def list(self, *, username: str | None = None, status: Status | None = None) -> list[Request]:
        """Newest first."""
        where, args = [], []
        if username is not None:
            where.append("username = ?")
            args.append(username)
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM requests {clause} ORDER BY id DESC", args)
        return [_request(row) for row in rows.fetchall()]

    def answer(self, request_id: int, *, approve: bool, by: str, word: str = "") -> Request:
        """Approve or reject a pending request (only once: a second answer is InvalidInput)."""
        word = _clean_text(word, MAX_ANSWER, "the answer is longer than %(limit)d characters",
                           "the answer holds control characters")  # the operator's: English
        status = Status.APPROVED if approve else Status.REJECTED
        with database.transaction(self._db, "answer"):
            cursor = self._db.execute(
                "UPDATE requests SET status = ?, answered_by = ?, answer = ?, answered = ? "
                "WHERE id = ? AND status = 'pending'", (status.value, by, word, self._clock(), request_id))
        found = self.get(request_id)
        if found is None:
            raise NotFound(f"no request #{request_id}")
        if cursor.rowcount != 1:
            raise InvalidInput(f"request #{request_id} was {found.status} already")
        return found

    def version(self) -> tuple[int, int]:
        """(newest id, requests answered): changes whenever a request is made or answered."""
        row = self._db.execute("SELECT coalesce(max(id), 0), count(answered) FROM requests").fetchone()
        return int(row[0]), int(row[1])


class NewRequests:
    """The requests made since the last :meth:`poll` (the first one only notes where things are).

    For the TUI, which learns of requests the web server's process stores: one cheap query a poll,
    and no database is made where none is yet.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: RequestStore | None = None
        self._seen: int | None = None

    def poll(self) -> list[Request]:
        if self._store is None:
            if not self.path.exists():
                self._seen = 0
                return []
            self._store = RequestStore(self.path)
        newest, _ = self._store.version()
        if self._seen is None or newest <= self._seen:
            self._seen = newest if self._seen is None else self._seen
            return []
        fresh = [r for r in self._store.list(status=Status.PENDING) if r.id > self._seen]
        self._seen = newest
        return sorted(fresh, key=lambda r: r.id)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
