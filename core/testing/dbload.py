"""Writing to the shared database from a process of its own, as the TUI, the CLI and the server do:
through the product's own store classes, each record tagged so that what arrived can be counted.

Run as ``python -m core.testing.dbload ROLE PATH COUNT START [VARIANT]`` (START: the ``time.time()``
to begin at, so that several writers start together; VARIANT: other database settings, to measure
what they would do, see :data:`VARIANTS`). It prints one JSON line:
what it wrote, how long it took, and every error a user would have seen (an exception out of a
store, or an error the product logged instead of raising, as :func:`core.records.audit.record`
does).

The roles write what their program writes, the way it does:

- ``tui``: one long-lived audit log (as :attr:`core.lab.Lab.audit`) recording bulk results, and
  requests answered after reading the pending ones (a read, then a write);
- ``cli``: a command's life per record: open the stores, write, close (``vm-manager share`` makes
  a link and audits it, ``audit.record`` for the rest);
- ``serve``: long-lived stores: a sign-in (attempt, success, session), a request filed, a flash
  message pushed and popped (read, then write), a refused sign-in collapsed into its entry (read,
  then update).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.auth.sessions import SessionStore, attempt_keys
from core.links.shares import TokenStore
from core.records import audit, database
from core.records.audit import Actor, AuditLog, Item
from core.records.requests import Kind, RequestStore, Status

KEY = "k" * 40  # an HMAC key for the stores that hash (any will do: nothing here is checked by a server)
ROLES = ("tui", "cli", "serve")
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass
class Tally:
    role: str
    written: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Errors(logging.Handler):
    """What the product logged as an error instead of raising (a user reads it on stderr)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.ERROR)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        self.tally.errors.append(record.getMessage()[:200])


def tag(role: str, index: int) -> str:
    """What marks record ``index`` of ``role`` in every table it writes to."""
    return f"{role}-{index}"


def _tui(path: Path, count: int, tally: Tally) -> Callable[[int], None]:
    log = AuditLog(path)
    requests = RequestStore(path)
    actor = Actor("operator", "tui", "local")

    def one(i: int) -> None:
        log.record_many(actor, [Item("start", tag("tui", i), "", "ok", "started")])
        pending = requests.list(status=Status.PENDING)  # the requests screen, then an answer
        if pending:
            try:
                requests.answer(pending[-1].id, approve=False, by="operator", word="no")
            except Exception as exc:  # answered by another operator meanwhile: the TUI says so
                if isinstance(exc, sqlite3.Error):
                    raise
        tally.written += 1

    return one


def _cli(path: Path, count: int, tally: Tally) -> Callable[[int], None]:
    actor = Actor("operator", "cli", "local")

    def one(i: int) -> None:
        store = TokenStore(path, KEY)  # `vm-manager share`: a link, then its audit entry
        try:
            link, _ = store.create_link("uuid-cli", tag("cli", i), 3600)
        finally:
            store.close()
        audit.record(path, actor, [Item("share", tag("cli", i), "", "ok", f"link {link.id}")])
        tally.written += 1

    return one


def _serve(path: Path, count: int, tally: Tally) -> Callable[[int], None]:
    sessions = SessionStore(path, KEY)
    requests = RequestStore(path)
    log = AuditLog(path)

    def one(i: int) -> None:
        name = tag("serve", i)
        attempt = sessions.begin_attempt(attempt_keys(name, "192.0.2.1", None))
        sessions.succeeded(attempt, "192.0.2.1", name)
        _, secret = sessions.create(username=name, role="student", display_name=name, email=None,
                                    source="local", ttl=3600)
        requests.create(name, Kind.NEW_VM, reason=name)
        sessions.push_flash(secret, "ok", name)
        sessions.pop_flash(secret)
        log.record(Actor(name, "web", "192.0.2.1"), "signin", detail="local")
        log.record(Actor("?", "web", "192.0.2.9"), "signin", outcome="refused", detail="bad password",
                   collapse=True)
        tally.written += 1

    return one


WRITERS = {"tui": _tui, "cli": _cli, "serve": _serve}

VARIANTS = {
    "product": "the product's settings (core.records.database)",
    "no-busy-timeout": "no busy timeout: a write that finds the file locked fails at once",
    "busy-0.1": "a busy timeout of 0.1 s",
    "deferred": "BEGIN (deferred) instead of BEGIN IMMEDIATE: a read that upgrades to a write",
    "rollback-journal": "journal_mode=DELETE instead of WAL: readers and the writer exclude each other",
    "sync-full": "synchronous=FULL instead of NORMAL: an fsync at every commit",
}
"""Database settings a writer can use instead of the product's, to measure what they would do."""


def _use(variant: str = "product") -> None:
    """Make this process's stores use ``variant``'s settings (see :data:`VARIANTS`)."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    if variant in ("no-busy-timeout", "busy-0.1"):
        database.BUSY_TIMEOUT = 0.0 if variant == "no-busy-timeout" else 0.1
    if variant == "deferred":
        product = database.transaction

        @contextlib.contextmanager
        def deferred(db: sqlite3.Connection, what: str = "") -> Iterator[sqlite3.Connection]:
            db.execute("BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        database.transaction = deferred
        assert product is not deferred
    if variant in ("rollback-journal", "sync-full"):
        connect = database.connect
        pragma = "PRAGMA journal_mode=DELETE" if variant == "rollback-journal" else "PRAGMA synchronous=FULL"

        def other(path: Path, store: str = "?") -> database.StoreConnection:
            db = connect(path, store)
            db.execute(pragma)
            return db

        database.connect = other


def run(role: str, path: Path, count: int, start: float) -> Tally:
    tally = Tally(role)
    logging.getLogger().addHandler(_Errors(tally))
    try:
        one = WRITERS[role](path, count, tally)
    except sqlite3.Error as exc:  # the program would not have started
        tally.errors.append(f"opening: {type(exc).__name__}: {exc}")
        return tally
    time.sleep(max(0.0, start - time.time()))
    began = time.monotonic()
    for i in range(count):
        try:
            one(i)
        except sqlite3.Error as exc:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
    tally.seconds = time.monotonic() - began
    return tally


def missing(path: Path, count: int) -> dict[str, int]:
    """How many of each writer's ``count`` records are not in the database at ``path``, by what
    they should have left (an audit entry, a link, a session, a request, a collapsed repeat)."""
    db = sqlite3.connect(path)
    try:
        def found(sql: str, role: str) -> int:
            try:
                names = {row[0] for row in db.execute(sql)}
            except sqlite3.OperationalError:  # no such table: its writer never opened its store
                return 0
            return sum(tag(role, i) in names for i in range(count))

        try:
            refused = db.execute("SELECT coalesce(sum(repeats), 0) FROM audit "
                                 "WHERE outcome = 'refused'").fetchone()
        except sqlite3.OperationalError:
            refused = (0,)
        return {
            "tui audit": count - found("SELECT vm_name FROM audit WHERE action = 'start'", "tui"),
            "cli links": count - found("SELECT vm_name FROM links", "cli"),
            "cli audit": count - found("SELECT vm_name FROM audit WHERE action = 'share'", "cli"),
            "serve sessions": count - found("SELECT username FROM web_sessions", "serve"),
            "serve requests": count - found("SELECT reason FROM requests", "serve"),
            "serve audit": count - found("SELECT user FROM audit WHERE action = 'signin' AND outcome = 'ok'",
                                         "serve"),
            "serve refusals": count - int(refused[0]),
        }
    finally:
        db.close()


def together(path: Path, count: int, roles: Sequence[str] = ROLES, variant: str = "product",
             ) -> list[dict[str, Any]]:
    """One writer process per role, all starting at the same moment; what each printed."""
    start = time.time() + 1.5  # each has imported and opened its stores by then
    procs = [subprocess.Popen([sys.executable, "-m", __name__, role, str(path), str(count), str(start),
                               variant], stdout=subprocess.PIPE, text=True, cwd=CHECKOUT)
             for role in roles]
    return [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]


def main(argv: list[str]) -> int:
    role, path, count, start, *variant = argv
    _use(*variant)
    tally = run(role, Path(path), int(count), float(start))
    print(json.dumps({"role": tally.role, "written": tally.written, "errors": tally.errors,
                      "seconds": round(tally.seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
