"""The one SQLite file of the server and the CLI: how it is opened, and how its tables evolve.

Several stores share ``Settings.database_path`` (share links, sign-in sessions, local accounts,
resource requests, the audit log), each with its own connection and its own tables. Each store
names itself and lists its schema changes; :func:`migrate` applies the missing ones and records
the store's version in the ``schema_versions`` table, so stores evolve independently.
WAL lets the server, the TUI and the CLI use the file at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from core.errors import ConfigError

BUSY_TIMEOUT = 5.0


def connect(path: Path) -> sqlite3.Connection:
    """Open (and make, mode 0600) the database; autocommit, WAL, foreign keys on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
    if fresh:
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on any error): writers queue instead of failing late."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection, store: str, migrations: Sequence[str], where: Path) -> None:
    """Bring ``store``'s tables to ``len(migrations)``; ConfigError if a newer version wrote them."""
    with transaction(db):
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


def open_store(path: Path, store: str, migrations: Sequence[str]) -> sqlite3.Connection:
    """:func:`connect`, then :func:`migrate` ``store``: what each store's constructor calls."""
    db = connect(path)
    try:
        migrate(db, store, migrations, path)
    except BaseException:
        db.close()
        raise
    return db
