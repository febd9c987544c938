"""The server's languages and the portal's session store, without a server: every string the portal
and the server's own pages show has a French translation, Accept-Language is read by weight, and
failure delays grow and reset."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from support.clock import Clock

from core.auth import sessions
from core.auth.sessions import (
    ADDRESS_FREE,
    DEVICE_TTL,
    FIRST_DELAY,
    FREE_FAILURES,
    KNOWN_ADDRESSES,
    KNOWN_TTL,
    MAX_DELAY,
    MAX_DEVICES,
    Attempt,
    SessionStore,
    address_key,
    attempt_keys,
)
from core.records import database, requests
from core.web import i18n
from core.web.portal import TEMPLATE_DIR

# portal, pages, app, endpoints, i18n..., and the request rules the portal shows
WEB_SOURCES = [*sorted(Path(i18n.__file__).parent.rglob("*.py")), Path(requests.__file__)]
JINJA = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}


def shown_strings() -> set[str]:
    """Every msgid of the server: gettext calls in the portal's templates, _() and N_() in core/web
    and core/records/requests.py."""
    found = {msg for source in WEB_SOURCES for _line, msg, _c, _ctx in extract_from_file(
        "python", source, keywords={"_": None, "N_": None})}
    for template in TEMPLATE_DIR.glob("*.html"):
        found |= {msg for _line, msg, _c, _ctx in extract_from_file(
            "jinja2.ext:babel_extract", template, keywords={"_": None}, options=JINJA)}
    return {m for m in found if isinstance(m, str)}


def test_every_portal_string_has_a_french_translation() -> None:
    strings = shown_strings()
    assert len(strings) > 50, "the extractor found too few strings: is it looking at the right files?"
    with (i18n.LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale="fr")
    missing = sorted(m for m in strings if not (catalog.get(m) and catalog.get(m).string))  # type: ignore[union-attr]
    assert missing == []
    fuzzy = sorted(m.id for m in catalog if m.id and m.fuzzy)
    assert fuzzy == [], "fuzzy entries are not used"
    # Placeholders survive translation (a lost %(name)s would raise at render time).
    fr = i18n.load()["fr"]
    for message in strings:
        if "%(" in message:
            values = {key: 1 for key in _placeholders(message)}
            assert (fr.gettext(message) % values) != message, message


def _placeholders(message: str) -> list[str]:
    import re

    return re.findall(r"%\((\w+)\)", message)


@pytest.mark.parametrize(("header", "expected"), [
    ("fr-FR,fr;q=0.9", "fr"),
    ("fr-CA", "fr"),
    ("en-GB,en;q=0.9,fr;q=0.8", "en"),
    ("de-DE,fr;q=0.3,en;q=0.7", "en"),
    ("de,fr;q=0.5", "fr"),
    ("FR", "fr"),
    ("fr;q=0,en;q=0.1", "en"),  # q=0: not acceptable
    ("fr;q=abc", None),
    ("de, it", None),
    ("*", None),
    ("", None),
])
def test_accept_language(header: str, expected: str | None) -> None:
    assert i18n.from_accept_language(header) == expected


def test_the_switch_wins_then_the_cookie_then_the_browser() -> None:
    assert i18n.choose("en", "fr", "fr") == "en"
    assert i18n.choose(None, "fr", "en") == "fr"
    assert i18n.choose("xx", "yy", "fr-FR") == "fr"
    assert i18n.choose(None, None, "") == "en"


def fail(store: SessionStore, scope: str, key: str) -> None:
    """One sign-in that fails, as the portal runs it (an attempt, then its failure)."""
    attempt = store.begin_attempt([(scope, key)])
    assert attempt.wait == 0, "the attempt was refused before it began"
    store.failed(attempt)


def failed_at_once(path: Path, scope: str, key: str, count: int, at: float) -> None:
    """``count`` failures recorded at the same moment, as several server processes sharing the
    database would record them (one process refuses what it sees waiting)."""
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT INTO signin_failures (scope, key, at) VALUES (?, ?, ?)",
                       [(scope, key, at)] * count)
    db.close()


def test_failure_delays_grow_and_a_success_resets_them(tmp_path: Path) -> None:
    clock = Clock()
    store = SessionStore(tmp_path / "vmm.db", "k" * 40, clock)
    [(_, pair), _, _] = attempt_keys("alice", "192.0.2.1", None)
    try:
        for _ in range(FREE_FAILURES - 1):
            fail(store, "pair", pair)
        assert store.wait("pair", pair) == 0
        fail(store, "pair", pair)
        assert FIRST_DELAY - 1 < store.wait("pair", pair) <= FIRST_DELAY
        assert store.wait("pair", "bob\n192.0.2.1") == 0
        assert store.wait("account", pair) == 0  # scopes are apart
        delays = []
        for _ in range(3):
            clock.offset += store.wait("pair", pair)
            fail(store, "pair", pair)
            delays.append(round(store.wait("pair", pair)))
        assert delays == [2 * FIRST_DELAY, 4 * FIRST_DELAY, 8 * FIRST_DELAY]
        # a burst (from many workers at once): the wait stops growing at its cap
        failed_at_once(tmp_path / "vmm.db", "pair", pair, 10, clock())
        assert MAX_DELAY - 1 < store.wait("pair", pair) <= MAX_DELAY
        store.succeeded(Attempt(0.0, ()), "192.0.2.1", "alice")  # a good sign-in clears the failures
        assert store.wait("pair", pair) == 0
        # An address forgives more (a school behind one NAT); failures are forgotten after the window.
        for _ in range(ADDRESS_FREE - 1):
            fail(store, "address", "192.0.2.1")
        assert store.wait("address", "192.0.2.1") == 0
        fail(store, "address", "192.0.2.1")
        assert store.wait("address", "192.0.2.1") > 0
        clock.offset += 15 * 60 + 1
        assert store.wait("address", "192.0.2.1") == 0
    finally:
        store.close()


def test_addresses_are_counted_as_hosts_hold_them() -> None:
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("-") == "-"  # no address known: counted as it is


def test_a_device_cookie_vouches_for_the_last_accounts_until_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    store = SessionStore(tmp_path / "vmm.db", "k" * 40, clock)
    try:
        cookie = store.device_cookie("alice", 'junk~"quoted";x~' + "a" * 5000)  # what is not an entry goes
        assert cookie.count("~") == 0
        assert store.device_of(cookie, "alice") is not None
        assert store.device_of(cookie, "bob") is None
        for n in range(MAX_DEVICES):
            cookie = store.device_cookie(f"user{n}", cookie)
        assert cookie.count("~") == MAX_DEVICES - 1
        assert store.device_of(cookie, "alice") is None  # the oldest went
        assert store.device_of(cookie, "user0") is not None
        assert SessionStore(tmp_path / "vmm.db", "another key" * 4, clock).device_of(cookie, "user0") is None
        clock.offset += DEVICE_TTL
        assert store.device_of(cookie, "user0") is None
    finally:
        store.close()


def test_an_account_knows_the_newest_addresses_it_signed_in_from_until_they_expire(tmp_path: Path) -> None:
    """Good sign-ins make their address known to the account (the typed name and the account's own);
    each account keeps its newest KNOWN_ADDRESSES, each for KNOWN_TTL; a database of the previous
    schema is brought up to date."""
    path = tmp_path / "vmm.db"
    database.open_store(path, "sessions", sessions._MIGRATIONS[:2]).close()
    clock = Clock(start=1e9)
    store = SessionStore(path, "k" * 40, clock)
    try:
        for n in range(KNOWN_ADDRESSES):
            clock.offset += 1
            store.succeeded(Attempt(0.0, ()), f"192.0.2.{n}", "alice@lab", "alice")
        assert store.known_address("alice", "192.0.2.0")
        assert store.known_address("alice@lab", "192.0.2.0")
        assert not store.known_address("bob", "192.0.2.0")
        assert not store.known_address("alice", "192.0.2.99")
        clock.offset += 1
        store.succeeded(Attempt(0.0, ()), "192.0.2.0", "alice")  # signed in again: the newest now
        clock.offset += 1
        store.succeeded(Attempt(0.0, ()), "2001:db8:1:2::1", "alice")  # one more: the oldest goes
        assert store.known_address("alice", "2001:db8:1:2::ffff")  # its /64
        assert store.known_address("alice", "192.0.2.0")
        assert not store.known_address("alice", "192.0.2.1")
        assert store.known_address("alice@lab", "192.0.2.1")  # the other name's are its own
        clock.offset += KNOWN_TTL - 1
        assert store.known_address("alice", "2001:db8:1:2::1")
        assert not store.known_address("alice", "192.0.2.2")
        store.purge()
        clock.offset += 1
        store.purge()
        db = sqlite3.connect(path)
        assert db.execute("SELECT COUNT(*) FROM signin_addresses").fetchone() == (0,)
        db.close()
    finally:
        store.close()


def test_sessions_are_kept_hashed_and_expire(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "vmm.db"
    store = SessionStore(path, "k" * 40, clock)
    try:
        session, secret = store.create(username="alice", role="student", display_name="", email=None,
                                       source="local", ttl=60)
        assert store.get(secret) == session
        assert secret.encode() not in path.read_bytes()
        assert SessionStore(path, "another key" * 4, clock).get(secret) is None  # the HMAC key matters
        assert store.get(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert store.get("") is None
        assert store.check_csrf(session, session.csrf)
        assert not store.check_csrf(session, session.csrf[:-1])
        assert not store.check_csrf(session, None)
        clock.offset += 61
        assert store.get(secret) is None
        assert store.purge() == 1
    finally:
        store.close()


def test_an_attempt_counts_from_its_start(tmp_path: Path) -> None:
    """Attempts under way count as failures: the sixth at once is told to wait before any ended."""
    clock = Clock()
    store = SessionStore(tmp_path / "vmm.db", "k" * 40, clock)
    keys = attempt_keys("alice", "192.0.2.1", None)
    try:
        running = [store.begin_attempt(keys) for _ in range(FREE_FAILURES)]
        assert all(a.wait == 0 and len(a.rows) == 3 for a in running)
        refused = store.begin_attempt(keys)
        assert FIRST_DELAY - 1 < refused.wait <= FIRST_DELAY
        assert refused.rows == ()  # a refused attempt is not counted again
        # Another account from the address is not held by them, until the address's own limit.
        assert store.begin_attempt(attempt_keys("bob", "192.0.2.1", None)).wait == 0
        store.dropped(running[0])  # the directory did not answer: it no longer counts
        assert store.begin_attempt(keys).wait == 0  # five again, the new one among them
        store.succeeded(running[1], "192.0.2.1", "alice")  # a success clears the account, and is no failure
        assert store.wait("account", "alice") == 0
        assert store.begin_attempt(keys).wait == 0
        for n in range(ADDRESS_FREE - 7):  # six on the address so far (bob's among them): one short
            assert store.begin_attempt(attempt_keys(f"user{n}", "192.0.2.1", None)).wait == 0
        assert store.wait("address", "192.0.2.1") == 0
        fail(store, "address", "192.0.2.1")
        clock.offset += FIRST_DELAY + 1
        assert store.wait("address", "192.0.2.1") == 0
        store.failed(running[2])  # timed when found out: the wait runs from now again
        assert FIRST_DELAY - 1 < store.wait("address", "192.0.2.1") <= FIRST_DELAY
    finally:
        store.close()
