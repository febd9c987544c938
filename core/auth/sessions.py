"""Sign-in sessions of the student portal, their CSRF tokens, and the limit on failed sign-ins.

Everything lives in the shared SQLite file, so every worker, a restarted server and the CLI see the
same sessions and the same failure counts (``vm-manager user passwd|del`` ends an account's sessions
here: :meth:`SessionStore.end_user`). A browser holds only a random secret (cookie
``vmm_session``); the table keeps its HMAC, as :mod:`core.links.shares` does for share links, so a
copy of the database opens no session. An LDAP session keeps the name its user was found by at
sign-in, so that the directory is searched again the same way (:mod:`core.auth.standing`).

Failed sign-ins are counted in buckets (:data:`FREE`), each forgiving a few failures in
FAILURE_WINDOW and then asking for a wait that doubles with each further failure: per account
and address together (one guesser on one account), per address (one guesser on many names; IPv6
by /64), per account (many addresses on one account). None of them lets a stranger keep an owner
out: a browser that signed in to an account before carries a signed *device* cookie for it
(:meth:`SessionStore.device_cookie`), and its attempts on that account are counted in a bucket of
their own and nowhere else; without the cookie (a new browser, a lab PC wiped every night), an
address the account signed in from before (:meth:`SessionStore.known_address`, for KNOWN_TTL, the
newest KNOWN_ADDRESSES of each account) counts its attempts on that account only in their
account-and-address bucket, so neither a spray of made-up names from the same NAT address nor
failures on the account from elsewhere hold it, only failures on that account from that very
address do. (The price: from such an address, one password tried once on each account that signed
in from there is held by nothing; repeated guesses on one account are.)

Buckets depend only on what was typed and where from, never on whether the account exists: an
address becomes known to an account only by a good sign-in to it from there, so a wait tells a
stranger elsewhere nothing about which names are taken. (Someone sharing such an address can
tell a name that signed in from it from one that did not: once the address's own budget is spent,
only the first is still heard.)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

from core.links.secret import as_bytes, keyed_hash
from core.records import database

SECRET = secrets.token_urlsafe  # 32 bytes: 43 characters
SECRET_BYTES = 32
FAILURE_WINDOW = 15 * 60.0  # failures older than this are forgotten
FREE_FAILURES = 5  # failures of one account from one address (or one device) before attempts wait
ADDRESS_FREE = 20  # failures from one address, on any names: a school behind one NAT mistypes too
ACCOUNT_FREE = 20  # failures on one account from every address together
FREE = {"pair": FREE_FAILURES, "device": FREE_FAILURES, "address": ADDRESS_FREE, "account": ACCOUNT_FREE}
"""Failures each bucket forgives in FAILURE_WINDOW (``scope`` -> count)."""
FIRST_DELAY = 30.0  # the wait after a bucket's free failures; it doubles with each further one
MAX_DELAY = FAILURE_WINDOW
MAX_KEY = 200  # longest account or address we store (typed names can be anything)
DEVICE_TTL = 90 * 86400.0  # how long a device cookie vouches for a browser
MAX_DEVICES = 5  # accounts one browser's device cookie holds (a shared lab PC: the last five)
KNOWN_TTL = DEVICE_TTL  # how long a good sign-in from an address vouches for that address
KNOWN_ADDRESSES = 20  # addresses remembered per account (the newest)
DEVICE_ENTRY = re.compile(r"([A-Za-z0-9_-]{16})\.(\d{1,12})\.([0-9a-f]{32})")

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE web_sessions (
        secret_hash BLOB PRIMARY KEY,
        username TEXT NOT NULL,
        role TEXT NOT NULL,
        display_name TEXT NOT NULL,
        email TEXT,
        source TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        flash TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX web_sessions_expires ON web_sessions (expires);
    CREATE TABLE web_session_links (
        secret_hash BLOB NOT NULL REFERENCES web_sessions (secret_hash) ON DELETE CASCADE,
        link_id TEXT NOT NULL
    );
    CREATE INDEX web_session_links_session ON web_session_links (secret_hash);
    CREATE TABLE signin_failures (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX signin_failures_key ON signin_failures (scope, key, at)
    """,
    # When an LDAP session's role was last read from the directory (NULL: at its sign-in).
    """
    ALTER TABLE web_sessions ADD COLUMN checked REAL;
    CREATE INDEX web_sessions_user ON web_sessions (username)
    """,
    # The addresses (address_key) each account (lowercased, as typed) signed in from, and when last.
    """
    CREATE TABLE signin_addresses (
        account TEXT NOT NULL,
        address TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (account, address)
    )
    """,
    # The name an LDAP session's user was found by at sign-in (how the directory is searched again).
    "ALTER TABLE web_sessions ADD COLUMN found_by TEXT",
)


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: who (as sign-in identified them), its CSRF token, until when."""

    username: str
    role: str
    display_name: str
    email: str | None
    source: str
    csrf: str
    created: float
    expires: float
    checked: float | None = None
    """When the role was last read from the directory (LDAP sessions); None: at sign-in."""
    found_by: str | None = None
    """LDAP sessions: the name LDAP_USER_FILTER found the user by at sign-in."""


_SESSION_COLUMNS = "username, role, display_name, email, source, csrf, created, expires, checked, found_by"


class SessionStore:
    """Sessions and failed sign-ins; ``key`` is the HMAC key (SECRET_KEY)."""

    def __init__(self, path: Path, key: str, clock: Callable[[], float] = time.time) -> None:
        self._key = key.encode()
        self._clock = clock
        self._db = database.open_store(path, "sessions", _MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def _hash(self, purpose: str, secret: str) -> bytes:
        return keyed_hash(self._key, purpose, secret)

    # -- sessions --
    def create(self, *, username: str, role: str, display_name: str, email: str | None, source: str,
               ttl: float, found_by: str | None = None) -> tuple[Session, str]:
        """A new session for ``ttl`` seconds; returns it and its secret (the cookie, never stored)."""
        now = self._clock()
        secret = SECRET(SECRET_BYTES)
        session = Session(username, role, display_name, email, source, SECRET(SECRET_BYTES), now, now + ttl,
                          found_by=found_by)
        with database.transaction(self._db, "create"):
            self._db.execute(
                "INSERT INTO web_sessions (secret_hash, username, role, display_name, email, source, csrf, "
                "created, expires, found_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._hash("web-session", secret), username, role, display_name, email, source,
                 session.csrf, now, session.expires, found_by))
        return session, secret

    def get(self, secret: str | None) -> Session | None:
        """The live session of a cookie, or None (unknown, expired or signed out)."""
        if not secret or len(secret) > 100:
            return None
        row = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE secret_hash = ?",
                               (self.handle(secret),)).fetchone()
        if row is None or row[7] <= self._clock():
            return None
        return Session(*row)

    def handle(self, secret: str) -> bytes:
        """What the table keeps of a cookie's secret: how a session is named to the methods below
        (which a server may also call for sessions it found otherwise, see :meth:`opened`)."""
        return self._hash("web-session", secret)

    def opened(self, link_ids: Iterable[str]) -> list[tuple[bytes, Session]]:
        """The live sessions (handle, session) that opened any of the console links ``link_ids``."""
        ids = sorted(set(link_ids))
        if not ids:
            return []
        rows = self._db.execute(
            f"SELECT DISTINCT secret_hash, {_SESSION_COLUMNS} FROM web_sessions JOIN web_session_links "
            f"USING (secret_hash) WHERE link_id IN ({_marks(ids)}) AND expires > ?",
            (*ids, self._clock())).fetchall()
        return [(bytes(row[0]), Session(*row[1:])) for row in rows]

    def mark_checked(self, handle: bytes) -> None:
        """The session's role was read from the directory again just now."""
        with database.transaction(self._db, "mark_checked"):
            self._db.execute("UPDATE web_sessions SET checked = ? WHERE secret_hash = ?",
                             (self._clock(), handle))

    def end(self, handle: bytes) -> list[str]:
        """Delete the session ``handle``; returns the console links it opened."""
        with database.transaction(self._db, "end"):
            links = [row[0] for row in self._db.execute(
                "SELECT link_id FROM web_session_links WHERE secret_hash = ?", (handle,))]
            self._db.execute("DELETE FROM web_sessions WHERE secret_hash = ?", (handle,))
        return links

    def end_user(self, username: str, source: str) -> tuple[int, list[str]]:
        """End every session of ``username`` signed in through ``source`` (``local``: its password
        changed, it was deleted): how many there were, and the console links they opened."""
        with database.transaction(self._db, "end_user"):
            links = [str(row[0]) for row in self._db.execute(
                "SELECT link_id FROM web_session_links JOIN web_sessions USING (secret_hash) "
                "WHERE username = ? AND source = ?", (username, source))]
            ended = self._db.execute("DELETE FROM web_sessions WHERE username = ? AND source = ?",
                                     (username, source)).rowcount
        return ended, links

    def delete(self, secret: str | None) -> list[str]:
        """Sign out: the session is gone server-side; returns the console links it opened."""
        if not secret or len(secret) > 100:
            return []
        return self.end(self.handle(secret))

    def add_link(self, secret: str, link_id: str) -> None:
        """Remember a console link opened by this session (revoked when it signs out)."""
        with database.transaction(self._db, "add_link"):
            self._db.execute("INSERT INTO web_session_links (secret_hash, link_id) VALUES (?, ?)",
                             (self._hash("web-session", secret), link_id))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(as_bytes(session.csrf), as_bytes(str(token)))

    def push_flash(self, secret: str, kind: str, text: str) -> None:
        """A message for the next page this session loads (post/redirect/get)."""
        digest = self._hash("web-session", secret)
        with database.transaction(self._db, "push_flash"):
            row = self._db.execute("SELECT flash FROM web_sessions WHERE secret_hash = ?",
                                   (digest,)).fetchone()
            if row is None:
                return
            messages = json.loads(row[0])[-9:] + [[kind, text]]
            self._db.execute("UPDATE web_sessions SET flash = ? WHERE secret_hash = ?",
                             (json.dumps(messages), digest))

    def pop_flash(self, secret: str) -> list[tuple[str, str]]:
        digest = self._hash("web-session", secret)
        with database.transaction(self._db, "pop_flash"):
            row = self._db.execute("SELECT flash FROM web_sessions WHERE secret_hash = ?",
                                   (digest,)).fetchone()
            if row is None or row[0] == "[]":
                return []
            self._db.execute("UPDATE web_sessions SET flash = '[]' WHERE secret_hash = ?", (digest,))
        return [(str(kind), str(text)) for kind, text in json.loads(row[0])]

    def purge(self) -> int:
        """Delete expired sessions and forgotten failures."""
        now = self._clock()
        with database.transaction(self._db, "purge"):
            gone = self._db.execute("DELETE FROM web_sessions WHERE expires <= ?", (now,)).rowcount
            self._db.execute("DELETE FROM signin_failures WHERE at < ?", (now - FAILURE_WINDOW,))
            self._db.execute("DELETE FROM signin_addresses WHERE at <= ?", (now - KNOWN_TTL,))
        return gone

    # -- the pre-session CSRF of the sign-in form: a signed double-submit cookie --
    def login_token(self, cookie: str) -> str:
        """The form field that goes with the sign-in cookie ``cookie`` (an HMAC of it)."""
        return keyed_hash(self._key, "login-csrf", cookie).hex()

    def check_login_token(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or len(cookie) > 100:
            return False
        return hmac.compare_digest(as_bytes(self.login_token(cookie)), as_bytes(str(token)))

    # -- failed sign-ins --
    def wait(self, scope: str, key: str) -> float:
        """Seconds before the next sign-in attempt counted in bucket ``(scope, key)`` is heard.

        Up to ``FREE[scope]`` failures in FAILURE_WINDOW cost nothing; after that each attempt must
        wait FIRST_DELAY after the last failure, doubled with each further failure (at most MAX_DELAY).
        An attempt still being checked counts as a failure (see :meth:`begin_attempt`).
        """
        now = self._clock()
        row = self._db.execute("SELECT COUNT(*), MAX(at) FROM signin_failures WHERE scope = ? AND key = ? "
                               "AND at > ?", (scope, key[:MAX_KEY], now - FAILURE_WINDOW)).fetchone()
        count, last = int(row[0]), row[1]
        free = FREE.get(scope, FREE_FAILURES)
        if count < free or last is None:
            return 0.0
        delay = min(MAX_DELAY, FIRST_DELAY * 2.0 ** (count - free))
        return max(0.0, float(last) + delay - now)

    def begin_attempt(self, keys: Sequence[tuple[str, str]]) -> Attempt:
        """Check the wait of every ``(scope, key)`` and, when none must wait, count the attempt
        against each of them at once, in one transaction: while its password is being checked it
        is a failure, so parallel attempts cannot all pass the check before any failure is known.
        End it with :meth:`failed` (the failure stays, timed now) or :meth:`succeeded`."""
        with database.transaction(self._db, "begin_attempt"):
            wait = max((self.wait(scope, key) for scope, key in keys), default=0.0)
            if wait > 0:
                return Attempt(wait, ())
            now = self._clock()
            rows = tuple(int(self._db.execute(
                "INSERT INTO signin_failures (scope, key, at) VALUES (?, ?, ?)",
                (scope, key[:MAX_KEY], now)).lastrowid or 0) for scope, key in keys)
        return Attempt(0.0, rows)

    def failed(self, attempt: Attempt) -> None:
        """The attempt failed: it stays a failure, timed when it was found out."""
        self._update_rows("failed", "UPDATE signin_failures SET at = ? WHERE rowid IN ({})", attempt,
                          self._clock())

    def dropped(self, attempt: Attempt) -> None:
        """The attempt was neither good nor bad (the directory did not answer): it no longer counts."""
        self._update_rows("dropped", "DELETE FROM signin_failures WHERE rowid IN ({})", attempt)

    def succeeded(self, attempt: Attempt, address: str, *accounts: str) -> None:
        """A good sign-in from ``address``: the attempt no longer counts, the failures of
        ``accounts``, everywhere and from this address, are cleared (the address's own are not:
        a guesser cannot wipe its slate by signing in to an account of its own), and the address
        is known to ``accounts`` from now on (:meth:`known_address`)."""
        now = self._clock()
        where = address_key(address)[:MAX_KEY]
        with database.transaction(self._db, "succeeded"):
            if attempt.rows:
                self._db.execute(f"DELETE FROM signin_failures WHERE rowid IN ({_marks(attempt.rows)})",
                                 attempt.rows)
            for account in dict.fromkeys(accounts):
                key = account[:MAX_KEY]
                self._db.execute("DELETE FROM signin_failures WHERE (scope = 'account' AND key = ?) OR "
                                 "(scope = 'pair' AND key = ?)", (key, _pair(account, address)[:MAX_KEY]))
                self._db.execute("INSERT INTO signin_addresses (account, address, at) VALUES (?, ?, ?) "
                                 "ON CONFLICT (account, address) DO UPDATE SET at = excluded.at",
                                 (key, where, now))
                self._db.execute("DELETE FROM signin_addresses WHERE account = ? AND address NOT IN "
                                 "(SELECT address FROM signin_addresses WHERE account = ? "
                                 "ORDER BY at DESC LIMIT ?)", (key, key, KNOWN_ADDRESSES))

    def known_address(self, account: str, address: str) -> bool:
        """Whether ``account`` (lowercased, as typed) signed in from ``address`` (its
        :func:`address_key`) in the last KNOWN_TTL."""
        row = self._db.execute("SELECT 1 FROM signin_addresses WHERE account = ? AND address = ? AND at > ?",
                               (account[:MAX_KEY], address_key(address)[:MAX_KEY],
                                self._clock() - KNOWN_TTL)).fetchone()
        return row is not None

    # -- device cookies: a browser that signed in to an account before --
    def device_cookie(self, account: str, cookie: str | None) -> str:
        """The device cookie ``cookie`` with a new entry vouching that this browser signed in to
        ``account`` (``nonce.issued.mac``), first; the newest MAX_DEVICES entries are kept."""
        nonce = secrets.token_urlsafe(12)
        issued = str(int(self._clock()))
        kept = [entry for entry, _ in _device_entries(cookie)][:MAX_DEVICES - 1]
        return "~".join([f"{nonce}.{issued}.{self._device_mac(account, nonce, issued)}", *kept])

    def device_of(self, cookie: str | None, account: str) -> str | None:
        """The nonce of the entry of device cookie ``cookie`` that vouches for ``account`` (not
        expired, its signature good), or None."""
        for _, (nonce, issued, mac) in _device_entries(cookie):
            if float(issued) + DEVICE_TTL <= self._clock():
                continue
            if hmac.compare_digest(as_bytes(mac), as_bytes(self._device_mac(account, nonce, issued))):
                return nonce
        return None

    def _device_mac(self, account: str, nonce: str, issued: str) -> str:
        return keyed_hash(self._key, "signin-device", f"{account}\n{nonce}\n{issued}").hex()[:32]

    def _update_rows(self, what: str, statement: str, attempt: Attempt, *first: object) -> None:
        if attempt.rows:
            with database.transaction(self._db, what):
                self._db.execute(statement.format(_marks(attempt.rows)), (*first, *attempt.rows))


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt under way (its rows count as failures until it ends), or, when ``wait``
    is above zero, one refused before it began: how many seconds to wait."""

    wait: float
    rows: tuple[int, ...]


def attempt_keys(account: str, address: str, device: str | None,
                 known: bool = False) -> list[tuple[str, str]]:
    """The buckets an attempt on ``account`` (lowercased, as typed) from ``address`` counts in:
    its device's alone when the browser has a device cookie for that account (``device``: its
    nonce); that account from that address alone when the account signed in from there before
    (``known``: :meth:`SessionStore.known_address`); else that, the address, and the account."""
    if device is not None:
        return [("device", f"{account}\n{device}")]
    if known:
        return [("pair", _pair(account, address))]
    return [("pair", _pair(account, address)), ("address", address_key(address)), ("account", account)]


def address_key(address: str) -> str:
    """What an address is counted as: itself, but an IPv6 address as its /64 (a single host
    commonly holds a whole /64 and could otherwise draw a fresh address for every guess)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _device_entries(cookie: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """The well-formed entries of a device cookie, each with its parts (nonce, issued, mac)."""
    entries = (cookie or "")[:MAX_DEVICES * 80].split("~")[:MAX_DEVICES]
    return [(entry, match.groups()) for entry in entries if (match := DEVICE_ENTRY.fullmatch(entry))]


def _pair(account: str, address: str) -> str:
    return f"{account}\n{address_key(address)}"


def _marks(rows: Sized) -> str:
    return ",".join("?" * len(rows))
