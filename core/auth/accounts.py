"""Local accounts, in the shared SQLite file: for labs without LDAP, and a break-glass operator.

Passwords are stored only as argon2id hashes (``argon2.PasswordHasher``), rehashed on the next good
sign-in when the hasher's parameters change. An unknown name costs one hash like a known one, so
timing does not tell which accounts exist. One connection per store, used from one thread.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from core.errors import InvalidInput, NotFound
from core.names import check_username
from core.records import database
from core.text import CONTROL


class Role(enum.StrEnum):
    """What a signed-in user may see: their own VMs (students) or every VM and request (operators)."""

    STUDENT = "student"
    OPERATOR = "operator"


MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is only work for the server
MAX_DISPLAY_NAME = 200
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

log = logging.getLogger(__name__)

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('student', 'operator')),
        display_name TEXT NOT NULL DEFAULT '',
        email TEXT,
        created REAL NOT NULL,
        password_changed REAL NOT NULL
    );
    """,
)
_COLUMNS = "username, role, display_name, email, created"


class AccountExists(InvalidInput):
    """``add`` of a name that is taken (an InvalidInput, told apart for exit codes)."""


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: Role
    display_name: str
    email: str | None
    created: float

    def as_json(self) -> dict[str, object]:
        return {"username": self.username, "role": self.role.value, "display_name": self.display_name,
                "email": self.email, "created": self.created}


class Accounts:
    """The local accounts of the database at ``path`` (``hasher``: argon2 parameters, for tests)."""

    def __init__(self, path: Path, *, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self._hasher = hasher or PasswordHasher()
        self._db = database.open_store(path, "accounts", _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def add(self, username: str, password: str, *, role: Role = Role.STUDENT, display_name: str = "",
            email: str | None = None) -> Account:
        """A new account; InvalidInput when the name is taken or invalid, or the password too short."""
        check_username(username)
        check_password(password)
        display_name = _check_display_name(display_name)
        email = _check_email(email)
        role = Role(role)
        digest = self._hasher.hash(password)
        now = time.time()
        with database.transaction(self._db, "add"):
            if self._db.execute("SELECT 1 FROM accounts WHERE username = ?", (username,)).fetchone():
                raise AccountExists(f"a local account {username!r} exists already")
            self._db.execute("INSERT INTO accounts (username, password_hash, role, display_name, email, "
                             "created, password_changed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (username, digest, role.value, display_name, email, now, now))
        log.info("local account %r added (%s)", username, role.value)
        return Account(username, role, display_name, email, now)

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` a new password; NotFound when there is no such account."""
        check_password(password)
        digest = self._hasher.hash(password)
        with database.transaction(self._db, "passwd"):
            cursor = self._db.execute("UPDATE accounts SET password_hash = ?, password_changed = ? "
                                      "WHERE username = ?", (digest, time.time(), username))
        if cursor.rowcount == 0:
            raise NotFound(f"no local account {username!r}")
        log.info("local account %r: password changed", username)

    def delete(self, username: str) -> None:
        with database.transaction(self._db, "delete"):
            cursor = self._db.execute("DELETE FROM accounts WHERE username = ?", (username,))
        if cursor.rowcount == 0:
            raise NotFound(f"no local account {username!r}")
        log.info("local account %r deleted", username)

    def list(self) -> list[Account]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY username").fetchall()
        return [_account(row) for row in rows]

    def get(self, username: str) -> Account | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM accounts WHERE username = ?", (username,)).fetchone()
        return None if row is None else _account(row)

    def standing(self, username: str) -> tuple[Role, float] | None:
        """The account's role and when its password was last set (at its making, or by
        :meth:`set_password`), or None when there is no such account: what a session signed in
        before must still match."""
        row = self._db.execute("SELECT role, max(created, password_changed) FROM accounts WHERE username = ?",
                               (username,)).fetchone()
        return None if row is None else (Role(str(row[0])), float(row[1]))

    def verify(self, username: str, password: str) -> Account | None:
        """The account when ``password`` is its password, else None (an unknown name costs the same
        hash). A good password stored with older parameters is hashed again with the current ones."""
        if not password or len(password) > MAX_PASSWORD:
            return None
        row = self._db.execute(f"SELECT password_hash, {_COLUMNS} FROM accounts WHERE username = ?",
                               (username,)).fetchone()
        if row is None:
            dummy_verify(password, self._hasher)
            return None
        digest = str(row[0])
        try:
            self._hasher.verify(digest, password)
        except VerifyMismatchError:
            return None
        except (VerificationError, InvalidHashError):
            log.warning("local account %r has a password hash that can't be checked: set a new password "
                        "with `vm-manager user passwd`", username)
            return None
        if self._hasher.check_needs_rehash(digest):
            rehashed = self._hasher.hash(password)  # before the transaction: others wait while it lasts
            with database.transaction(self._db, "rehash"):
                self._db.execute("UPDATE accounts SET password_hash = ? WHERE username = ? AND "
                                 "password_hash = ?", (rehashed, username, digest))
            log.info("local account %r: password hash upgraded to the current parameters", username)
        return _account(row[1:])


def check_password(password: str) -> str:
    """``password`` if it may be a local account's password; InvalidInput says why not."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"the password is too long: at most {MAX_PASSWORD} characters")
    return password


def dummy_verify(password: str, hasher: PasswordHasher | None = None) -> None:
    """Spend the time of one password check for a name that has no account."""
    hasher = hasher or PasswordHasher()
    with contextlib.suppress(VerificationError):
        hasher.verify(_dummy_hash(hasher.time_cost, hasher.memory_cost, hasher.parallelism), password)


@functools.cache
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher.hash(secrets.token_urlsafe(24))


def _check_display_name(name: str) -> str:
    if CONTROL.search(name):
        raise InvalidInput("the display name contains a control character")
    name = name.strip()
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput(f"the display name is too long: at most {MAX_DISPLAY_NAME} characters")
    return name


def _check_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    if CONTROL.search(email):
        raise InvalidInput(f"invalid email address {email!r}: it contains a control character")
    email = email.strip()
    if not _EMAIL.fullmatch(email) or len(email) > 254:
        raise InvalidInput(f"invalid email address {email!r}: write it as name@example.org")
    return email


def _account(row: Sequence[Any]) -> Account:
    """A row of ``_COLUMNS`` (SQLite gives untyped values)."""
    username, role, display_name, email, created = row
    return Account(str(username), Role(str(role)), str(display_name or ""),
                   None if email is None else str(email), float(created))
