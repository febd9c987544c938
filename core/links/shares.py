"""Console share links and the browser sessions they open, in SQLite.

A link's token (``secrets.token_urlsafe(32)``, 256 bits) is shown once and stored only as
HMAC-SHA256(SECRET_KEY, token): a copy of the database opens no console. A link is bound to one
VM's UUID (a VM made again under the same name has a new UUID, and the old link fails), has an
expiry, can be revoked, and has a short public id for listing and revoking. Opening a link makes
a console session: another random secret, stored hashed the same way, carried by a cookie.

The HMAC key is SECRET_KEY (:mod:`core.links.secret`). One connection per store, used from one
thread (the server's loop, or the CLI), on the shared database file (:mod:`core.records.database`);
schema changes go through ``_MIGRATIONS``.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.links.secret import keyed_hash
from core.records import database
from core.settings import duration
from core.text import count, format_time

MAX_TTL = 30 * 86400.0
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)
LINK_ID = re.compile(r"[0-9a-f]{8}")

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE links (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        vm_uuid TEXT NOT NULL,
        vm_name TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        revoked REAL
    );
    CREATE INDEX links_vm ON links (vm_uuid);
    CREATE TABLE console_sessions (
        secret_hash BLOB PRIMARY KEY,
        link_id TEXT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE INDEX console_sessions_link ON console_sessions (link_id);
    """,
    # A console link the portal opens for a student names them: it opens only while the VM is theirs.
    """
    ALTER TABLE links ADD COLUMN owner TEXT
    """,
)


def parse_ttl(text: str) -> float:
    """``30m``, ``4h``, ``2d`` (or ``1h30m``) in seconds; InvalidInput otherwise."""
    try:
        seconds = float(duration(text))
    except ValueError:
        raise InvalidInput(f"bad duration {text!r}: write it like 30m, 4h or 2d") from None
    if seconds <= 0:
        raise InvalidInput(f"bad duration {text!r}: it must be longer than zero")
    if seconds > MAX_TTL:
        raise InvalidInput(f"bad duration {text!r}: a share link lasts at most 30 days")
    return seconds


def describe_ttl(text: str) -> str:
    """What a duration means in words (``4h``: ``4 hours``; ``1h30m``: ``1 hour 30 minutes``);
    InvalidInput as :func:`parse_ttl`."""
    left = int(parse_ttl(text))
    words = []
    for unit, noun in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if left >= unit:
            words.append(count(left // unit, noun))
            left %= unit
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    vm_uuid: str
    vm_name: str
    created: float
    expires: float
    revoked: float | None
    owner: str | None = None
    """The student a portal console link was opened for (it opens only while the VM is theirs);
    None for share links and operators' links."""

    def active(self, now: float) -> bool:
        return self.revoked is None and now < self.expires

    def opens_for(self, vm_owner: str) -> bool:
        """Whether this link may open the console of a VM whose owner is now ``vm_owner``."""
        return self.owner is None or self.owner == vm_owner

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "vm": self.vm_uuid, "name": self.vm_name, "created": format_time(self.created),
                "expires": format_time(self.expires), "revoked": self.revoked is not None}


@dataclass(frozen=True, slots=True)
class Revocation:
    """What revoking by one id, token or VM did: whether it named any link (``found``) and the
    links it revoked, ``(id, VM name)`` (none when they had expired or were revoked already)."""

    kind: str  # "id" | "token" | "vm"
    value: str
    found: bool
    revoked: tuple[tuple[str, str], ...]


def revoke_target(arg: str) -> tuple[str, str]:
    """What a ``vm-manager revoke`` argument names: ``("token", t)`` for a token or a share URL,
    ``("id", i)`` for a link id, else ``("vm", arg)``: a VM's name or glob."""
    token = arg.rstrip("/").rpartition("/c/")[2] if "/c/" in arg else arg
    if TOKEN.fullmatch(token):
        return "token", token
    if LINK_ID.fullmatch(arg):
        return "id", arg
    return "vm", arg


class TokenStore:
    """Share links and console sessions; ``key`` is the HMAC key (SECRET_KEY)."""

    def __init__(self, path: Path, key: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._key = key.encode()
        self._clock = clock
        self._db = database.open_store(path, "tokens", _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def _hash(self, purpose: str, secret: str) -> bytes:
        return keyed_hash(self._key, purpose, secret)

    # -- links --
    def create_link(self, vm_uuid: str, vm_name: str, ttl: float, *,
                    owner: str | None = None) -> tuple[Link, str]:
        """A new link to one VM for ``ttl`` seconds; returns it and its token (shown once, never stored).

        ``owner``: the student the portal opens it for; it then opens only while the VM is theirs."""
        now = self._clock()
        token = secrets.token_urlsafe(32)
        with database.transaction(self._db, "create_link"):
            while True:
                link = Link(secrets.token_hex(4), vm_uuid, vm_name, now, now + ttl, None, owner)
                try:
                    self._db.execute(
                        "INSERT INTO links (id, token_hash, vm_uuid, vm_name, created, expires, owner) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (link.id, self._hash("link", token), vm_uuid, vm_name, now, link.expires, owner))
                    break
                except sqlite3.IntegrityError:  # an id already taken: draw again
                    continue
        return link, token

    def link_for_token(self, token: str, *, active_only: bool = True) -> Link | None:
        """The link of ``token`` (by default only while it is valid)."""
        if not TOKEN.fullmatch(token):
            return None
        row = self._db.execute(f"SELECT {_COLUMNS} FROM links WHERE token_hash = ?",
                               (self._hash("link", token),)).fetchone()
        link = _link(row)
        if link is None or (active_only and not link.active(self._clock())):
            return None
        return link

    def get(self, link_id: str) -> Link | None:
        if not LINK_ID.fullmatch(link_id):
            return None
        return _link(self._db.execute(f"SELECT {_COLUMNS} FROM links WHERE id = ?", (link_id,)).fetchone())

    def links(self, *, vm_uuid: str | None = None, active_only: bool = True) -> list[Link]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM links ORDER BY created").fetchall()
        now = self._clock()
        found = [link for row in rows if (link := _link(row)) is not None]
        return [link for link in found if (vm_uuid is None or link.vm_uuid == vm_uuid)
                and (not active_only or link.active(now))]

    def inactive(self, link_ids: Iterable[str]) -> set[str]:
        """Which of ``link_ids`` are expired, revoked or gone (the server's periodic check)."""
        ids = set(link_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT id FROM links WHERE id IN ({marks}) AND revoked IS NULL "
                                "AND expires > ?", (*ids, self._clock())).fetchall()
        return ids - {row[0] for row in rows}

    def revoke(self, *, ids: Sequence[str] = (), tokens: Sequence[str] = (),
               vm_uuids: Sequence[str] = ()) -> list[Link]:
        """Revoke links by id, token or VM; returns those that were active until now. An id or a token
        that is not of their shape names no link."""
        ids = [i for i in ids if LINK_ID.fullmatch(i)]
        hashes = [self._hash("link", t) for t in tokens if TOKEN.fullmatch(t)]
        now = self._clock()
        revoked: list[Link] = []
        with database.transaction(self._db, "revoke"):
            for column, values in (("id", list(ids)), ("token_hash", hashes), ("vm_uuid", list(vm_uuids))):
                for value in values:
                    rows = self._db.execute(
                        f"SELECT {_COLUMNS} FROM links WHERE {column} = ? AND revoked IS NULL", (value,))
                    revoked += [link for row in rows.fetchall() if (link := _link(row)) is not None]
                    self._db.execute(f"UPDATE links SET revoked = ? WHERE {column} = ? AND revoked IS NULL",
                                     (now, value))
        return [link for link in revoked if link.expires > now]

    def revoke_one(self, kind: str, value: str) -> tuple[bool, list[Link]]:
        """Revoke by ``id``, ``token`` or ``vm`` (a UUID): whether ``value`` named any link, and
        the links this revoked (none when they were expired or revoked already)."""
        if kind == "id":
            return self.get(value) is not None, self.revoke(ids=[value])
        if kind == "token":
            return self.link_for_token(value, active_only=False) is not None, self.revoke(tokens=[value])
        if kind == "vm":
            return bool(self.links(vm_uuid=value, active_only=False)), self.revoke(vm_uuids=[value])
        raise ValueError(f"cannot revoke by {kind!r}")

    def revoke_many(self, *, ids: Sequence[str] = (), tokens: Sequence[str] = (),
                    vm_uuids: Sequence[str] = ()) -> list[Revocation]:
        """:meth:`revoke_one` for each id, token and VM UUID, in that order."""
        results = []
        for kind, values in (("id", ids), ("token", tokens), ("vm", vm_uuids)):
            for value in values:
                found, revoked = self.revoke_one(kind, value)
                links = tuple((link.id, link.vm_name) for link in revoked)
                results.append(Revocation(kind, value, found, links))
        return results

    # -- console sessions --
    def open_session(self, link: Link) -> str:
        """A new session secret for a browser that opened ``link``; it lasts as long as the link."""
        secret = secrets.token_urlsafe(32)
        with database.transaction(self._db, "open_session"):
            self._db.execute("INSERT INTO console_sessions (secret_hash, link_id, created, expires) "
                             "VALUES (?, ?, ?, ?)",
                             (self._hash("session", secret), link.id, self._clock(), link.expires))
        return secret

    def session_link(self, secret: str, vm_uuid: str, *, vm_owner: str) -> Link | None:
        """The link behind a session cookie, when the session, its link and the VM all match, and
        a student's link only while ``vm_owner`` (the VM's owner now) is that student."""
        if not TOKEN.fullmatch(secret):
            return None
        row = self._db.execute(
            "SELECT links.id, vm_uuid, vm_name, links.created, links.expires, revoked, owner, "
            "console_sessions.expires FROM console_sessions "
            "JOIN links ON links.id = console_sessions.link_id WHERE console_sessions.secret_hash = ?",
            (self._hash("session", secret),)).fetchone()
        if row is None:
            return None
        link = _link(row[:-1])
        now = self._clock()
        if link is None or link.vm_uuid != vm_uuid or not link.active(now) or row[-1] <= now:
            return None
        if not link.opens_for(vm_owner):
            return None
        return link

    def purge(self, older_than: float = 86400.0) -> int:
        """Delete links (and their sessions) expired or revoked more than ``older_than`` s ago."""
        cutoff = self._clock() - older_than
        with database.transaction(self._db, "purge"):
            cursor = self._db.execute("DELETE FROM links WHERE expires < ? OR revoked < ?", (cutoff, cutoff))
        return cursor.rowcount


_COLUMNS = "id, vm_uuid, vm_name, created, expires, revoked, owner"


def _link(row: Sequence[Any] | None) -> Link | None:
    """A row of ``_COLUMNS``, or None (SQLite gives untyped values)."""
    if row is None:
        return None
    link_id, uuid, name, created, expires, revoked, owner = row
    return Link(str(link_id), str(uuid), str(name), float(created), float(expires),
                None if revoked is None else float(revoked), None if owner is None else str(owner))
