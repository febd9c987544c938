"""The one SQLite file of the server and the CLI: how it is opened, and how its tables evolve.

Several stores share ``Settings.database_path`` (share links, sign-in sessions, local accounts,
resource requests, the audit log), each with its own connection and its own tables. Each store
names itself and lists its schema changes; :func:`migrate` applies the missing ones and records
the store's version in the ``schema_versions`` table, so stores evolve independently.
WAL lets the server, the TUI and the CLI use the file at once.

The settings, and why (``scripts/bench_database.py``: the TUI's, a command's and the server's
writes, 1,000 records each at the same moment, three runs; 9,000 records per line):

- every write in :func:`transaction`, begun with ``BEGIN IMMEDIATE``: a plain ``BEGIN`` that reads
  and then writes cannot wait for the lock (SQLite refuses at once a snapshot that another
  writer made stale): 2,570 "database is locked" and 8,688 rows lost, against none;
- a busy timeout of BUSY_TIMEOUT (5 s): without one, 4,420 errors; 0.1 s still lost 3 records to
  4 errors, so fifty times that (a writer holds the lock for milliseconds: nothing slow, such
  as a password hash, is done inside a transaction);
- ``journal_mode=WAL``: a rollback journal makes readers and the writer exclude each other
  (763 errors and 7.5 times slower: 16.5 s against 2.2 s). The switch of a new file to WAL takes
  no busy timeout: :func:`connect` waits for it (three programs opening a new file at the same
  instant: one failed in 4 and in 7 of 30 trials in two series before, in none of 30 since);
- ``synchronous=NORMAL``: in WAL mode a commit survives the program being killed (the crash
  tests kill -9 at every commit point), and only a power loss may undo the last commits, never
  corrupt the file; FULL (an fsync at every commit) took 5.5 s against 2.2 s.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core import failpoints
from core.errors import ConfigError

BUSY_TIMEOUT = 5.0


class StoreConnection(sqlite3.Connection):
    """A connection that knows which store it serves (what its commit points are named by), with
    a lock for its transactions: threads that share it (the core's and the caller's) take turns,
    where one's BEGIN inside the other's transaction would fail."""

    store = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()


def connect(path: Path, store: str = "?") -> StoreConnection:
    """Open (and make, mode 0600) the database; autocommit, WAL, foreign keys on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False,
                         factory=StoreConnection)
    db.store = store
    if fresh:
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    try:
        _write_ahead_log(db, path)
    except BaseException:
        db.close()
        raise
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _write_ahead_log(db: sqlite3.Connection, path: Path) -> None:
    """``journal_mode=WAL``, waiting up to BUSY_TIMEOUT for it: the switch of a new file takes no
    busy timeout, SQLite answers "database is locked" at once while another program holds the
    file (the TUI, the server and a command opening a new database at the same moment)."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)
    if mode != "wal":
        raise ConfigError(f"{path}: SQLite cannot keep a write-ahead log there (journal mode {mode}); "
                          "put VMM_DATA_DIR on a local file system")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, what: str) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on any error): writers queue instead of failing late.

    ``what`` names the write (``create_link``): its commit points are the fault points
    ``commit`` (just before COMMIT) and ``committed`` (just after) for ``STORE.WHAT``
    (``VMM_FAILPOINT=kill:commit:tokens.create_link``, see :mod:`core.failpoints`).
    """
    point = f"{getattr(db, 'store', '?')}.{what}"
    with db.lock if isinstance(db, StoreConnection) else contextlib.nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            failpoints.hit("commit", point)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    failpoints.hit("committed", point)


def migrate(db: sqlite3.Connection, store: str, migrations: Sequence[str], where: Path) -> None:
    """Bring ``store``'s tables to ``len(migrations)``; ConfigError if a newer version wrote them."""
    with transaction(db, "migrate"):
        db.execute("CREATE TABLE IF NOT EXISTS schema_versions "
                   "(store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_versions WHERE store = ?", (store,)).fetchone()
        version = row[0] if row else 0
        if version > len(migrations):
            raise ConfigError(f"{where} was written by a newer vm-manager ({store} schema {version})")
        for script in migrations[version:]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        db.execute("INSERT INTO schema_versions (store, version) VALUES (?, ?) "
                   "ON CONFLICT (store) DO UPDATE SET version = excluded.version", (store, len(migrations)))


def open_store(path: Path, store: str, migrations: Sequence[str]) -> StoreConnection:
    """:func:`connect`, then :func:`migrate` ``store``: what each store's constructor calls."""
    db = connect(path, store)
    try:
        migrate(db, store, migrations, path)
    except BaseException:
        db.close()
        raise
    return db
