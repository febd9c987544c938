"""The student portal through aiohttp's test server on a test-driver lab: sign-in, "My VMs", actions,
consoles, requests, CSRF, failed sign-ins, languages; real SQLite, real local accounts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher
from support.portalweb import PASSWORDS, Student, add_accounts, audit_entries, forms
from support.webtest import Console, StartConsole, cli, eventually, uuid_of

from core.auth.accounts import Accounts, Role
from core.auth.sessions import ACCOUNT_FREE, ADDRESS_FREE, FIRST_DELAY, FREE_FAILURES, KNOWN_TTL
from core.lab import Lab
from core.links.shares import parse_ttl
from core.metadata import LabMeta
from core.model import VMState
from core.records.requests import Kind, RequestStore
from core.settings import Settings
from core.testing import testdriver
from core.virt import eventloop
from core.web.portal import LOGIN_COOKIE, PORTAL, SESSION_COOKIE
from core.web.portal.signin import DEVICE_COOKIE

HOSTILE = ("<img src=x onerror=alert(1)>", "[b]bold")  # libvirt refuses a "/" in a name
SPOOF = "rtl\u202egpj.exe"  # reads "rtlexe.jpg" where the bidi override acts
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
async def lab(web_settings: Settings, tmp_path: Path) -> AsyncIterator[Lab]:
    """alice's VMs (one running, one off, two with hostile names), bob's, and one of nobody."""
    alice, bob = LabMeta("alice", "net101"), LabMeta("bob", "net101")
    uri = testdriver.write(tmp_path / "portal.xml", [
        testdriver.Spec("alice-1", VMState.RUNNING, vcpus=2, memory_mib=1024, meta=alice),
        testdriver.Spec("alice-2", VMState.SHUTOFF, meta=alice),
        testdriver.Spec(HOSTILE[0], VMState.SHUTOFF, meta=alice),
        testdriver.Spec(HOSTILE[1], VMState.SHUTOFF, meta=alice),
        testdriver.Spec("bob-1", VMState.RUNNING, meta=bob),
        testdriver.Spec("nobody-1", VMState.SHUTOFF),
        testdriver.Spec(SPOOF, VMState.SHUTOFF, meta=LabMeta("bob\u2067", "net101")),
    ])
    lab = await Lab.open(web_settings, uri)
    yield lab
    await lab.close()


@pytest.fixture
def proxied(web_settings: Settings) -> Settings:
    """Settings trusting the loopback as a proxy, so that tests choose the client's address."""
    return dataclasses.replace(
        web_settings, web=dataclasses.replace(web_settings.web, trusted_proxies="127.0.0.1")
    )


@pytest.fixture
async def server(console: StartConsole, lab: Lab, proxied: Settings) -> Console:
    add_accounts(proxied)
    return await console(lab, proxied)


def state_of(lab: Lab, name: str) -> VMState:
    return next(vm.state for vm in lab.vms() if vm.name == name)


async def signed_in(server: Console, user: str, address: str = "192.0.2.10") -> Student:
    student = Student(server, address)
    page = await student.sign_in(user)
    assert (page.status, page.location) == (303, "/"), page.text
    return student


# -- sign-in and what a student sees --
async def test_alice_signs_in_and_sees_only_her_vms(server: Console, proxied: Settings) -> None:
    alice = Student(server, "192.0.2.10")
    assert (await alice.get("/")).location == "/login"  # no session: to the sign-in page
    page = await alice.sign_in("alice")
    assert (page.status, page.location) == (303, "/")
    cookie = alice.cookie(SESSION_COOKIE)
    assert cookie is not None
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # http here; https gets Secure (see the next test)
    assert int(cookie["max-age"]) == int(parse_ttl(proxied.web.session_ttl))
    assert cookie.value not in proxied.database_path.read_bytes().decode("latin-1")  # only its HMAC

    page = await alice.get("/")
    assert page.status == 200
    for name in ("alice-1", "alice-2"):
        assert f">{name}<" in page.text
    assert "bob-1" not in page.text
    assert "nobody-1" not in page.text
    assert "Alice Martin" in page.text
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert [e.action for e in audit_entries(proxied, user="alice")] == ["signin"]
    entry = audit_entries(proxied, user="alice")[0]
    assert (entry.source, entry.address, entry.outcome) == ("web", "192.0.2.10", "ok")


async def test_cookies_are_secure_under_https(console: StartConsole, lab: Lab,
                                              web_settings: Settings) -> None:
    settings = dataclasses.replace(web_settings, web=dataclasses.replace(web_settings.web, public_url="https://lab.example.org"))
    add_accounts(settings)
    server = await console(lab, settings)
    alice = Student(server)
    login = await alice.get("/login")
    sent = SimpleCookie(login.headers["Set-Cookie"])[LOGIN_COOKIE]
    assert sent["secure"]
    # (aiohttp's client keeps Secure cookies for https only: hand this one over itself.)
    async with alice.browser.post(f"{server.base}/login", allow_redirects=False,
                                  headers={"Cookie": f"{LOGIN_COOKIE}={sent.value}"},
                                  data={"csrf": login.form("/login").fields["csrf"], "username": "alice",
                                        "password": PASSWORDS["alice"]}) as response:
        assert response.status == 303
        session = response.cookies[SESSION_COOKIE]
    assert session["secure"]
    assert session["httponly"]
    assert session["samesite"] == "Lax"


async def test_cookies_are_secure_behind_a_trusted_https_proxy(server: Console, lab: Lab,
                                                                console: StartConsole,
                                                                web_settings: Settings) -> None:
    """PUBLIC_URL unset (http links), but nginx (a trusted proxy) says the browser came over https:
    every cookie gets Secure. The same header from an untrusted address changes nothing."""
    def secure(response: aiohttp.ClientResponse, name: str) -> bool:
        cookies: SimpleCookie = SimpleCookie()
        for value in response.headers.getall("Set-Cookie", []):
            cookies.load(value)
        assert name in cookies, response.headers
        return bool(cookies[name]["secure"])

    async def cookies_seen(target: Console, proto: str | None) -> dict[str, bool]:
        """Whether each cookie the server sets along a student's way came with Secure."""
        browser = target.browser()
        headers = {"X-Forwarded-For": "192.0.2.50", **({"X-Forwarded-Proto": proto} if proto else {})}
        seen: dict[str, bool] = {}
        async with browser.get(f"{target.base}/login", headers=headers) as response:
            seen[LOGIN_COOKIE] = secure(response, LOGIN_COOKIE)
            login_cookie = response.cookies[LOGIN_COOKIE].value
            csrf = next(f for f in forms(await response.text()) if f.action == "/login").fields["csrf"]
        async with browser.post(f"{target.base}/login", allow_redirects=False,
                                headers={**headers, "Cookie": f"{LOGIN_COOKIE}={login_cookie}"},
                                data={"csrf": csrf, "username": "alice", "password": PASSWORDS["alice"]}
                                ) as response:
            assert response.status == 303
            seen[SESSION_COOKIE] = secure(response, SESSION_COOKIE)
            signed_in = {**headers, "Cookie": f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE].value}"}
        async with browser.get(f"{target.base}/?lang=fr", headers=signed_in) as response:
            seen["vmm_lang"] = secure(response, "vmm_lang")
            csrf = next(f for f in forms(await response.text()) if f.method == "post").fields["csrf"]
        vm = uuid_of(lab, "alice-1")
        async with browser.post(f"{target.base}/vms/{vm}/console", allow_redirects=False, headers=signed_in,
                                data={"csrf": csrf}) as response:
            assert response.status == 303
            seen["portal console"] = secure(response, "vmm_console")
        _link, token = target.link(vm, "alice-1")
        async with browser.get(f"{target.base}/c/{token}", allow_redirects=False,
                               headers=headers) as response:
            seen["share link"] = secure(response, "vmm_console")
        return seen

    assert set((await cookies_seen(server, "https")).values()) == {True}
    assert set((await cookies_seen(server, None)).values()) == {False}
    assert set((await cookies_seen(server, "http")).values()) == {False}
    untrusted_settings = dataclasses.replace(
        web_settings, web=dataclasses.replace(web_settings.web, trusted_proxies="10.0.0.0/8")
    )
    untrusted = await console(lab, untrusted_settings)  # the same database: alice's account is there
    assert set((await cookies_seen(untrusted, "https")).values()) == {False}


async def test_wrong_password_is_refused_and_recorded(server: Console, proxied: Settings) -> None:
    alice = Student(server, "192.0.2.11")
    page = await alice.sign_in("alice", "not-her-password")
    assert page.status == 401
    assert "Wrong user name or password." in page.text
    assert alice.cookie(SESSION_COOKIE) is None
    assert (await alice.get("/")).location == "/login"
    page = await alice.sign_in("Hunter2 Hunter2!", "x")  # a password typed as a name stays out
    assert page.status == 401
    entries = audit_entries(proxied)
    assert [(e.user, e.action, e.outcome, e.address) for e in entries] == [
        ("alice", "signin", "refused", "192.0.2.11"), ("?", "signin", "refused", "192.0.2.11")]


async def test_typed_names_stay_out_of_the_log_and_the_audit_unless_they_name_an_account(
        server: Console, proxied: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A password typed into the name field may well look like a name: a name that finds no
    account is written nowhere (log file, audit log); a wrong password for a real account names
    the account, as typed in any case."""
    caplog.set_level(logging.DEBUG)
    visitor = Student(server, "192.0.2.12")
    assert (await visitor.sign_in("Tr0ub4dor-horse", "x-password")).status == 401
    assert (await visitor.sign_in("ALICE", "not-her-password")).status == 401
    assert "Tr0ub4dor" not in caplog.text
    assert "tr0ub4dor" not in caplog.text
    assert "sign-in refused for 'alice'" in caplog.text
    entries = audit_entries(proxied)
    assert [(e.user, e.outcome) for e in entries] == [("?", "refused"), ("alice", "refused")]


async def test_bobs_vm_is_out_of_alices_reach(server: Console, lab: Lab, proxied: Settings) -> None:
    alice = await signed_in(server, "alice")
    bob_vm = uuid_of(lab, "bob-1")
    missing = "00000000-0000-4000-8000-000000000000"
    links_before = server.store.links(active_only=False)

    for uuid in (bob_vm, bob_vm.upper(), missing):
        for action in ("halt", "start", "reset", "console"):
            page = await alice.submit(f"/vms/{uuid}/{action}", confirm="yes")
            assert page.status == 404, (uuid, action)
        assert (await alice.get(f"/vms/{uuid}/reset")).status == 404
    # A VM that is not hers and one that does not exist look the same.
    other = await alice.submit(f"/vms/{bob_vm}/halt")
    nothing = await alice.submit(f"/vms/{missing}/halt")
    assert other.text == nothing.text
    # Nothing happened to bob's VM; no console link or console cookie was made for it.
    assert state_of(lab, "bob-1") == VMState.RUNNING
    assert server.store.links(active_only=False) == links_before
    assert not [c for c in alice.browser.cookie_jar if c["path"].startswith("/console/")]
    # The console route itself does not open without a console session.
    page = await alice.get(f"/console/{bob_vm}?retry=1")
    assert page.status == 403
    # The refusals are on record, as alice's, from her address.
    refused = [e for e in audit_entries(proxied, user="alice") if e.outcome == "refused"]
    assert {e.action for e in refused} == {"halt", "start", "reset", "console"}
    assert all(e.address == "192.0.2.10" and e.source == "web" for e in refused)
    assert not [e for e in audit_entries(proxied, vm="bob-1")]


async def test_posts_need_the_sessions_csrf_token(server: Console, lab: Lab) -> None:
    alice = await signed_in(server, "alice")
    bob = await signed_in(server, "bob", "192.0.2.20")
    vm = uuid_of(lab, "alice-1")
    for data in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": await bob.csrf()}):
        page = await alice.post(f"/vms/{vm}/halt", data)
        assert page.status == 403, data
        assert "Form expired" in page.text
        page = await alice.post("/requests", {**data, "kind": "new_vm", "reason": "please"})
        assert page.status == 403
        assert (await alice.post("/logout", data)).status == 403
    assert state_of(lab, "alice-1") == VMState.RUNNING
    assert RequestStore(server.settings.database_path).list() == []
    assert (await alice.get("/")).status == 200  # still signed in: the logouts were refused

    # The sign-in form too: its token goes with its cookie (signed double-submit).
    stranger = Student(server)
    form = (await stranger.get("/login")).form("/login")
    tampered = form.fields["csrf"][:-1] + ("1" if form.fields["csrf"].endswith("0") else "0")
    for token in ("", "0" * 64, tampered):
        page = await stranger.post("/login", {"csrf": token, "username": "alice",
                                              "password": PASSWORDS["alice"]})
        assert page.status == 403
    other = Student(server)  # another browser's token, without that browser's cookie
    page = await other.post("/login", {"csrf": form.fields["csrf"], "username": "alice",
                                       "password": PASSWORDS["alice"]})
    assert page.status == 403
    assert other.cookie(SESSION_COOKIE) is None
    assert stranger.cookie(LOGIN_COOKIE) is not None


# -- failed sign-ins --
async def returning(server: Console, user: str, address: str) -> Student:
    """A browser that signed in as ``user`` from ``address`` and signed out: it keeps its device cookie."""
    student = await signed_in(server, user, address)
    assert student.cookie(DEVICE_COOKIE) is not None
    assert (await student.submit("/logout")).location == "/login"
    return student


async def test_failures_from_many_addresses_do_not_lock_the_owner_out(server: Console) -> None:
    """The issue's shape: five wrong passwords for alice from five addresses, then her right one
    from a sixth (a browser that never signed in) gets in."""
    for n in range(FREE_FAILURES):
        page = await Student(server, f"198.51.100.{n + 1}").sign_in("alice", "wrong")
        assert page.status == 401
    assert (await Student(server, "198.51.100.99").sign_in("alice")).location == "/"


async def test_one_guesser_on_one_account_is_slowed(server: Console) -> None:
    """Guessing alice's password from one address waits after FREE_FAILURES, the wait doubling;
    alice elsewhere and bob from that very address are not held up by it."""
    guesser = Student(server, "198.51.100.9")
    for _ in range(FREE_FAILURES):
        assert (await guesser.sign_in("alice", "wrong")).status == 401
    page = await guesser.sign_in("alice")  # even the right password waits now
    assert page.status == 429
    assert "Too many failed sign-ins" in page.text
    assert 0 < int(page.headers["Retry-After"]) <= FIRST_DELAY + 1
    assert guesser.cookie(SESSION_COOKIE) is None
    assert (await Student(server, "198.51.100.9").sign_in("bob")).status == 303  # bob is not held up
    assert (await Student(server, "198.51.100.98").sign_in("alice")).status == 303  # alice elsewhere

    server.clock.offset += FIRST_DELAY + 1
    assert (await guesser.sign_in("alice", "wrong again")).status == 401
    page = await guesser.sign_in("alice")  # the sixth failure doubles the wait
    assert page.status == 429
    assert FIRST_DELAY < int(page.headers["Retry-After"]) <= 2 * FIRST_DELAY + 1
    server.clock.offset += 2 * FIRST_DELAY + 1
    assert (await guesser.sign_in("alice")).location == "/"
    # The success reset the account: new failures start from zero.
    assert (await Student(server, "198.51.100.97").sign_in("alice", "wrong")).status == 401
    assert (await Student(server, "198.51.100.96").sign_in("alice")).status == 303


async def test_many_guessers_on_one_account_are_slowed_but_not_its_owners_browser(server: Console) -> None:
    """ACCOUNT_FREE failures on alice from as many addresses hold every browser that never signed
    in to her account (the guessers' own next ones too), and go on holding them as long as the
    guessing goes on; the browser she signed in with before is not held."""
    alice = await returning(server, "alice", "192.0.2.10")
    for n in range(ACCOUNT_FREE):
        assert (await Student(server, f"198.51.100.{n + 1}").sign_in("alice", "wrong")).status == 401
    for round_ in range(3):  # one more failure each time the wait ends keeps the account held
        held = await Student(server, "203.0.113.50").sign_in("alice")
        assert held.status == 429, round_
        server.clock.offset += int(held.headers["Retry-After"])
        assert (await Student(server, f"198.51.101.{round_}").sign_in("alice", "wrong")).status == 401
    assert (await Student(server, "203.0.113.50").sign_in("alice")).status == 429
    assert (await alice.sign_in("alice")).location == "/"  # her own browser: counted apart, never held
    assert (await alice.submit("/logout")).location == "/login"
    # Her browser is itself limited like any other guesser of her account.
    for _ in range(FREE_FAILURES):
        assert (await alice.sign_in("alice", "wrong")).status == 401
    assert (await alice.sign_in("alice")).status == 429


async def test_failures_on_made_up_names_do_not_lock_an_address_out(server: Console,
                                                                     proxied: Settings) -> None:
    """The issue's shape: six failures on made-up names from one address (a school behind one NAT),
    then bob's right password from that address gets in. A guesser that goes on is held at
    ADDRESS_FREE, on any name alike (a wait tells nothing of which names exist), while a browser
    that signed in from there before keeps its own budget, for as long as the guessing goes on."""
    bob = await returning(server, "bob", "203.0.113.5")
    guesser = Student(server, "203.0.113.5")
    for n in range(FREE_FAILURES + 1):
        assert (await guesser.sign_in(f"user{n}", "guess")).status == 401
    assert (await Student(server, "203.0.113.5").sign_in("olga")).location == "/"

    for n in range(FREE_FAILURES + 1, ADDRESS_FREE):
        assert (await guesser.sign_in(f"user{n}", "guess")).status == 401
    for round_ in range(3):
        made_up = await Student(server, "203.0.113.5").sign_in("zoe", "guess")
        real = await Student(server, "203.0.113.5").sign_in("alice", "guess")
        assert (made_up.status, real.status) == (429, 429), round_
        assert made_up.headers["Retry-After"] == real.headers["Retry-After"]
        assert (await Student(server, "203.0.113.5").sign_in("alice")).status == 429  # a new browser waits
        assert (await bob.sign_in("bob")).location == "/", round_  # bob's browser does not
        assert (await bob.submit("/logout")).location == "/login"
        server.clock.offset += int(real.headers["Retry-After"])
        assert (await guesser.sign_in(f"again{round_}", "guess")).status == 401
    assert (await Student(server, "203.0.113.6").sign_in("alice")).status == 303  # elsewhere: fine
    # The waits name nobody in the audit log: the names were not even checked; repeats are one entry.
    refused = [e for e in audit_entries(proxied) if e.detail == "too many failed sign-ins"]
    assert [(e.user, e.address) for e in refused] == [("?", "203.0.113.5")]
    assert refused[0].repeats == 3 * 3


async def test_an_ipv6_guesser_is_counted_by_its_64(server: Console) -> None:
    """A host holds a whole /64: drawing a fresh address for each guess is one address still."""
    for n in range(ADDRESS_FREE):
        assert (await Student(server, f"2001:db8:1:2::{n + 1:x}").sign_in(f"user{n}", "guess")).status == 401
    assert (await Student(server, "2001:db8:1:2:ffff::1").sign_in("alice")).status == 429
    assert (await Student(server, "2001:db8:1:3::1").sign_in("alice")).status == 303


async def test_a_device_cookie_vouches_only_for_its_account_and_cannot_be_forged(server: Console) -> None:
    """The cookie bob's browser got does not give alice's account (or a tampered cookie) a budget."""
    bob = await returning(server, "bob", "198.51.100.30")
    cookie = bob.cookie(DEVICE_COOKIE)
    assert cookie is not None
    assert cookie["path"] == "/login"
    assert cookie["httponly"]
    for n in range(ACCOUNT_FREE):
        assert (await Student(server, f"198.51.101.{n + 1}").sign_in("alice", "wrong")).status == 401
    assert (await bob.sign_in("alice")).status == 429  # bob's cookie is not alice's
    forged = Student(server, "198.51.100.31")
    nonce, issued, mac = cookie.value.split("~")[0].split(".")
    forged.browser.cookie_jar.update_cookies({DEVICE_COOKIE: f"{nonce}.{issued}.{'0' * len(mac)}"})
    assert (await forged.sign_in("alice")).status == 429


async def held_by_strangers(server: Console, account: str, address: str) -> None:
    """The issue's attack without the owner's device cookie to get round it: 25 attempts on
    ``account`` from five other addresses, and 25 on made-up names from ``address``. Every browser
    the account and the address do not know is held by them afterwards."""
    statuses = [(await Student(server, f"198.51.100.{n % 5 + 1}").sign_in(account, "wrong")).status
                for n in range(ACCOUNT_FREE + 5)]
    assert statuses == [401] * ACCOUNT_FREE + [429] * 5
    statuses = [(await Student(server, address).sign_in(f"user{n}", "guess")).status
                for n in range(ADDRESS_FREE + 5)]
    assert statuses == [401] * ADDRESS_FREE + [429] * 5


async def test_an_address_the_owner_signed_in_from_keeps_its_own_budget(server: Console) -> None:
    """Without her device cookie (a new browser, a lab PC wiped overnight), alice is heard from an
    address she signed in from before, however her account and that address are held by others;
    a new browser anywhere else is held as before, and a guesser at her address by its own bucket."""
    await returning(server, "alice", "203.0.113.5")  # that browser is gone: only fresh ones below
    await held_by_strangers(server, "alice", "203.0.113.5")
    assert (await Student(server, "203.0.113.60").sign_in("alice")).status == 429  # a new address waits
    assert (await Student(server, "203.0.113.5").sign_in("bob")).status == 429  # bob never signed in there
    assert (await Student(server, "203.0.113.5").sign_in("alice")).location == "/"
    # Her account's budget at that address is that of one guesser on it there.
    for _ in range(FREE_FAILURES):
        assert (await Student(server, "203.0.113.5").sign_in("alice", "wrong")).status == 401
    assert (await Student(server, "203.0.113.5").sign_in("alice")).status == 429


async def test_a_known_ipv6_address_is_its_64(server: Console) -> None:
    await returning(server, "alice", "2001:db8:5:6::1")
    await held_by_strangers(server, "alice", "2001:db8:5:6::2")
    assert (await Student(server, "2001:db8:5:7::1").sign_in("alice")).status == 429
    assert (await Student(server, "2001:db8:5:6:ffff::9").sign_in("alice")).location == "/"


async def test_a_known_address_is_forgotten_after_known_ttl(server: Console) -> None:
    """KNOWN_TTL after her last sign-in from it, alice's address is one like any other again."""
    await returning(server, "alice", "203.0.113.5")
    server.clock.offset += KNOWN_TTL - 60
    await held_by_strangers(server, "alice", "203.0.113.5")
    assert (await Student(server, "203.0.113.5").sign_in("alice", "wrong")).status == 401  # still heard
    server.clock.offset += 60
    assert (await Student(server, "198.51.100.9").sign_in("alice", "wrong")).status == 401  # held again
    assert (await Student(server, "203.0.113.5").sign_in("alice")).status == 429


async def test_a_flood_of_refused_sign_ins_is_one_audit_entry(server: Console, proxied: Settings) -> None:
    """The issue's shape: a guesser without an account posting sign-ins as fast as it can writes
    one audit entry per kind of refusal, with a count, not one row per request."""
    flooder = Student(server, "203.0.113.9")
    token = (await flooder.get("/login")).form("/login").fields["csrf"]
    statuses = []
    for n in range(ADDRESS_FREE + 300):
        page = await flooder.post("/login", {"csrf": token, "username": f"user{n}", "password": "guess"})
        statuses.append(page.status)
    assert (statuses.count(401), statuses.count(429)) == (ADDRESS_FREE, 300)
    entries = audit_entries(proxied)
    assert [(e.user, e.address, e.detail, e.repeats) for e in entries] == [
        ("?", "203.0.113.9", "wrong user name or password", ADDRESS_FREE),
        ("?", "203.0.113.9", "too many failed sign-ins", 300)]


async def test_parallel_failed_signins_are_limited_too(server: Console, proxied: Settings) -> None:
    """40 wrong passwords posted at once, for one account from 40 addresses, then to 40 accounts
    from one address: an attempt counts from its start, so only the first few are heard at all."""
    async def burst(students: list[Student], names: list[str]) -> list[int]:
        forms = [(await s.get("/login")).form("/login") for s in students]  # each its own CSRF cookie
        pages = await asyncio.gather(*(s.post("/login", {"csrf": f.fields["csrf"], "username": name,
                                                           "password": "wrong-password"})
                                       for s, f, name in zip(students, forms, names, strict=True)))
        return sorted(p.status for p in pages)

    statuses = await burst([Student(server, f"198.51.100.{n + 1}") for n in range(40)], ["alice"] * 40)
    assert statuses.count(401) <= ACCOUNT_FREE, statuses
    assert statuses.count(429) >= 40 - ACCOUNT_FREE, statuses
    assert (await Student(server, "198.51.100.200").sign_in("alice")).status == 429  # even the right one
    guesser = [Student(server, "203.0.113.77") for _ in range(40)]
    statuses = await burst(guesser, [f"user{n}" for n in range(40)])
    assert statuses.count(401) <= ADDRESS_FREE, statuses
    assert statuses.count(429) >= 40 - ADDRESS_FREE, statuses
    assert (await Student(server, "203.0.113.77").sign_in("bob")).status == 429
    refused = [e for e in audit_entries(proxied) if e.detail == "too many failed sign-ins"]
    assert sum(e.repeats for e in refused) >= (40 - ACCOUNT_FREE) + (40 - ADDRESS_FREE)
    # A success clears its account; the attempt in flight that succeeded is no failure.
    server.clock.offset += FIRST_DELAY * 2 ** (40 - FREE_FAILURES) + 1
    assert (await Student(server, "198.51.100.201").sign_in("alice")).location == "/"
    for n in range(FREE_FAILURES - 1):
        assert (await Student(server, f"198.51.100.{210 + n}").sign_in("alice", "wrong")).status == 401
    assert (await Student(server, "198.51.100.220").sign_in("alice")).location == "/"


async def test_a_class_behind_one_address_signs_in_at_once(console: StartConsole, lab: Lab,
                                                              proxied: Settings) -> None:
    """40 students of one school (one NAT address, new browsers) post the right password at the same
    moment: every one is signed in. An attempt counts as a failure while its password is checked;
    only VMM_SIGNIN_CONCURRENCY of them are checked at once, so the others are not yet counted and
    the address's limit is never reached by students who typed well."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # to make 40 accounts quickly
    accounts = Accounts(proxied.database_path, hasher=cheap)
    try:
        for n in range(40):
            accounts.add(f"pupil{n}", f"pupil-secret-{n}")
    finally:
        accounts.close()
    server = await console(lab, proxied)
    pupils = [Student(server, "203.0.113.5") for _ in range(40)]
    forms = [(await p.get("/login")).form("/login") for p in pupils]
    pages = await asyncio.gather(*(p.post("/login", {"csrf": f.fields["csrf"], "username": f"pupil{n}",
                                                     "password": f"pupil-secret-{n}"})
                                   for n, (p, f) in enumerate(zip(pupils, forms, strict=True))))
    assert [page.location for page in pages] == ["/"] * 40, sorted(page.status for page in pages)


async def test_passwords_are_checked_at_most_signin_concurrency_at_once(
        console: StartConsole, lab: Lab, proxied: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each argon2 check holds its memory (64 MiB by default): 12 sign-ins posted together are
    checked VMM_SIGNIN_CONCURRENCY (here 3) at a time, never more, and all of them get in."""
    from core.web.portal import signin

    add_accounts(proxied)
    bounded = dataclasses.replace(proxied, web=dataclasses.replace(proxied.web, signin_concurrency=3))
    server = await console(lab, bounded)
    running, most = 0, 0
    lock = threading.Lock()
    real = signin.authenticate

    def watched(*args: Any) -> Any:  # the real check, counted, and held a little longer
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.2)
            return real(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(signin, "authenticate", watched)
    students = [Student(server, f"198.51.100.{n + 1}") for n in range(12)]
    forms = [(await s.get("/login")).form("/login") for s in students]
    pages = await asyncio.gather(*(s.post("/login", {"csrf": f.fields["csrf"], "username": "alice",
                                                     "password": PASSWORDS["alice"]})
                                   for s, f in zip(students, forms, strict=True)))
    assert [page.location for page in pages] == ["/"] * 12
    assert most == 3


async def test_a_sign_in_that_the_directory_cannot_answer_counts_as_no_failure(
        console: StartConsole, lab: Lab, proxied: Settings) -> None:
    """LDAP down (503): the attempt counted while it ran is withdrawn, so an outage locks nobody out."""
    from aiohttp.test_utils import unused_port

    down = dataclasses.replace(
        proxied,
        ldap=dataclasses.replace(
            proxied.ldap,
            host=f"ldap://127.0.0.1:{unused_port()}",
            base_dn="dc=lab",
            bind_user_dn="cn=vmm,dc=lab",
            bind_user_password="x",
        ),
    )
    server = await console(lab, down)
    for n in range(FREE_FAILURES + 2):
        assert (await Student(server, "192.0.2.99").sign_in("zoe", f"pass-{n}")).status == 503
    assert server.app[PORTAL].sessions.wait("address", "192.0.2.99") == 0
    assert server.app[PORTAL].sessions.wait("account", "zoe") == 0


# -- session lifetime --
async def test_an_expired_session_goes_back_to_the_sign_in(server: Console, lab: Lab,
                                                           proxied: Settings) -> None:
    alice = await signed_in(server, "alice")
    csrf = await alice.csrf()
    server.clock.offset += parse_ttl(proxied.web.session_ttl) + 1
    page = await alice.get("/")
    assert page.location == "/login"
    page = await alice.post(f"/vms/{uuid_of(lab, 'alice-1')}/halt", {"csrf": csrf})
    assert page.location == "/login"
    assert state_of(lab, "alice-1") == VMState.RUNNING
    assert (await alice.get("/login")).status == 200


async def test_sign_out_ends_the_session_server_side(server: Console, lab: Lab, proxied: Settings) -> None:
    alice = await signed_in(server, "alice")
    secret = alice.cookie(SESSION_COOKIE)
    assert secret is not None
    kept = secret.value
    console = await alice.submit(f"/vms/{uuid_of(lab, 'alice-1')}/console")
    assert console.status == 303
    [link] = server.store.links()
    page = await alice.submit("/logout")
    assert (page.status, page.location) == (303, "/login")
    assert alice.cookie(SESSION_COOKIE) is None or alice.cookie(SESSION_COOKIE).value == ""  # type: ignore[union-attr]
    # The old cookie, replayed by anyone, opens nothing any more.
    thief = Student(server, "192.0.2.66")
    thief.browser.cookie_jar.update_cookies({SESSION_COOKIE: kept})
    assert (await thief.get("/")).location == "/login"
    assert (await thief.get("/requests")).location == "/login"
    # The consoles it opened close with it.
    assert server.store.links() == []
    assert server.store.get(link.id).revoked is not None  # type: ignore[union-attr]
    assert [e.action for e in audit_entries(proxied, user="alice")] == ["signin", "console", "signout"]


async def test_user_passwd_and_del_end_the_accounts_sessions_and_consoles(
        server: Console, lab: Lab, proxied: Settings, env: dict[str, str]) -> None:
    """The issue's shape: an operator signed in and opened another student's console; ``user
    passwd``, then ``user del --yes`` from the CLI (another process): the old cookie lists nothing
    and opens nothing, and re-added as a student the account gets no operator's session back."""
    olga = await signed_in(server, "olga", "192.0.2.40")
    bobs = uuid_of(lab, "bob-1")
    assert (await olga.submit(f"/vms/{bobs}/console")).location == f"/console/{bobs}"
    [link] = server.store.links()
    before = olga.cookie(SESSION_COOKIE).value  # type: ignore[union-attr]

    done = await asyncio.to_thread(cli, env, "user", "passwd", "olga", "--password-stdin",
                                   stdin="olga-new-secret\n")
    assert done.returncode == 0, done.stderr
    assert "1 portal session ended, 1 console link revoked, 0 consoles closed" in done.stdout  # the server's
    assert server.store.get(link.id).revoked is not None  # type: ignore[union-attr]
    assert (await olga.get("/")).location == "/login"
    assert (await olga.get(f"/console/{bobs}?retry=1")).status == 403
    again = Student(server, "192.0.2.40")
    assert (await again.sign_in("olga", "olga-new-secret")).location == "/"
    second = again.cookie(SESSION_COOKIE).value  # type: ignore[union-attr]

    done = await asyncio.to_thread(cli, env, "user", "del", "olga", "--yes")
    assert done.returncode == 0, done.stderr
    assert "1 portal session ended" in done.stdout
    added = await asyncio.to_thread(cli, env, "user", "add", "olga", "--password-stdin",
                                    stdin="olga-student-1\n")
    assert added.returncode == 0, added.stderr
    for kept in (before, second):  # either old cookie, replayed by anyone
        thief = Student(server, "192.0.2.66")
        thief.browser.cookie_jar.update_cookies({SESSION_COOKIE: kept})
        assert (await thief.get("/")).location == "/login"
    student = Student(server, "192.0.2.40")
    assert (await student.sign_in("olga", "olga-student-1")).location == "/"
    page = await student.get("/")
    assert "(operator)" not in page.text
    assert "bob-1" not in page.text
    ended = [e.detail for e in audit_entries(proxied) if e.action == "session-end"]
    assert ended == ["account olga: 1 session (password changed)",
                     "account olga: 1 session (account deleted)"]


async def test_an_account_changed_by_other_means_ends_its_session_at_its_next_use(
        server: Console, lab: Lab, proxied: Settings) -> None:
    """Whatever changes an account (not only the CLI): a session checks its account at each use,
    and one whose password was set since, whose role differs, or whose account is gone ends,
    with the consoles it opened."""
    alice = await signed_in(server, "alice")
    assert (await alice.submit(f"/vms/{uuid_of(lab, 'alice-1')}/console")).status == 303
    [link] = server.store.links()
    bob = await signed_in(server, "bob", "192.0.2.20")
    olga = await signed_in(server, "olga", "192.0.2.30")
    accounts = Accounts(proxied.database_path)
    try:
        accounts.set_password("alice", "alice-secret-new")
        accounts.delete("bob")
        accounts.add("bob", "bob-secret-new", role=Role.OPERATOR)  # made again, an operator now
        accounts.delete("olga")
    finally:
        accounts.close()
    for student in (alice, bob, olga):
        assert (await student.get("/")).location == "/login"
    assert server.store.get(link.id).revoked is not None  # type: ignore[union-attr]
    ended = {e.user: e.detail for e in audit_entries(proxied) if e.action == "session-end"}
    assert ended == {"alice": "the account's password was changed",
                     "bob": "the account's role is now operator", "olga": "the account was deleted"}


# -- actions --
async def test_start_halt_and_reset_reach_the_vm_and_are_audited(server: Console, lab: Lab,
                                                                 proxied: Settings) -> None:
    alice = await signed_in(server, "alice", "192.0.2.30")
    one, two = uuid_of(lab, "alice-1"), uuid_of(lab, "alice-2")

    page = await alice.submit(f"/vms/{one}/halt")
    assert (page.status, page.location) == (303, "/")
    await eventually(lambda: state_of(lab, "alice-1") == VMState.SHUTOFF, what="alice-1 off")
    assert "alice-1 is halted." in (await alice.get("/")).text  # the flash, shown once
    assert "alice-1 is halted." not in (await alice.get("/")).text

    assert (await alice.submit(f"/vms/{two}/start")).status == 303
    await eventually(lambda: state_of(lab, "alice-2") == VMState.RUNNING, what="alice-2 running")

    # Reset asks first: the button leads to a page, a POST without the confirmation back to it.
    confirm = await alice.get(f"/vms/{two}/reset")
    assert confirm.status == 200
    assert confirm.form(f"/vms/{two}/reset").fields["confirm"] == "yes"
    page = await alice.post(f"/vms/{two}/reset", {"csrf": confirm.csrf})
    assert page.location == f"/vms/{two}/reset"
    assert "reset" not in [e.action for e in audit_entries(proxied, user="alice")]
    page = await alice.post(f"/vms/{two}/reset", {"csrf": confirm.csrf, "confirm": "yes"})
    assert page.status == 303

    entries = {e.action: e for e in audit_entries(proxied, user="alice")}
    assert set(entries) == {"signin", "halt", "start", "reset"}
    for action, name in (("halt", "alice-1"), ("start", "alice-2"), ("reset", "alice-2")):
        entry = entries[action]
        assert (entry.source, entry.address, entry.vm_name) == ("web", "192.0.2.30", name), entry
    assert entries["halt"].outcome == "ok"
    assert entries["start"].outcome == "ok"
    # The test driver's VM was not made from a template: the reset fails, and says so.
    assert entries["reset"].outcome == "failed"
    assert "Reset of alice-2 failed" in (await alice.get("/")).text


async def test_console_button_opens_a_console_session(server: Console, lab: Lab, proxied: Settings) -> None:
    alice = await signed_in(server, "alice")
    vm = uuid_of(lab, "alice-1")
    page = await alice.submit(f"/vms/{vm}/console")
    assert (page.status, page.location) == (303, f"/console/{vm}")  # no token in any URL
    cookie = next(c for c in alice.browser.cookie_jar if c.key == "vmm_console")
    assert cookie["path"] == f"/console/{vm}"
    assert cookie["samesite"] == "Strict"
    assert cookie["httponly"] is True
    link = server.store.session_link(cookie.value, vm, vm_owner="alice")
    assert link is not None
    assert link.vm_uuid == vm
    assert link.owner == "alice"  # a student's link: it opens only while the VM is hers
    assert server.store.session_link(cookie.value, vm, vm_owner="bob") is None
    # The console lasts as long as the sign-in (not VMM_SHARE_TTL), and ends with it.
    assert server.clock() + parse_ttl(proxied.web.session_ttl) - 60 < link.expires
    assert link.expires <= server.clock() + parse_ttl(proxied.web.session_ttl)
    [entry] = [e for e in audit_entries(proxied, user="alice") if e.action == "console"]
    assert (entry.vm_name, entry.outcome, entry.address) == ("alice-1", "ok", "192.0.2.10")
    # An off VM has no console: a message, and no link.
    off = await alice.submit(f"/vms/{uuid_of(lab, 'alice-2')}/console")
    assert off.location == "/"
    assert "alice-2 is not running" in (await alice.get("/")).text
    assert len(server.store.links()) == 1


# -- requests --
async def test_a_request_is_stored_audited_and_shown(server: Console, lab: Lab, proxied: Settings) -> None:
    alice = await signed_in(server, "alice")
    vm = uuid_of(lab, "alice-1")
    form = (await alice.get("/requests")).form("/requests")
    page = await alice.post("/requests", {"csrf": form.fields["csrf"], "kind": "memory", "vm": vm,
                                          "amount": "2048", "reason": "the database needs <more> RAM"})
    assert (page.status, page.location) == (303, "/requests")
    store = RequestStore(proxied.database_path)
    try:
        [made] = store.list()
    finally:
        store.close()
    assert (made.username, made.kind, made.vm_uuid, made.vm_name, made.amount) == (
        "alice", Kind.MEMORY, vm, "alice-1", 2048)
    assert made.email == "alice@example.org"
    [entry] = [e for e in audit_entries(proxied, user="alice") if e.action == "request"]
    assert (entry.vm_name, entry.source, entry.address) == ("alice-1", "web", "192.0.2.10")
    assert f"#{made.id}" in entry.detail
    shown = (await alice.get("/requests")).text
    assert f"Request #{made.id} is filed" in shown
    assert "2048 MiB of memory for alice-1" in shown
    assert "the database needs &lt;more&gt; RAM" in shown
    assert "pending" in shown

    # bob's VM, a bad amount, an empty reason: nothing is filed.
    for data in ({"kind": "vcpus", "vm": uuid_of(lab, "bob-1"), "amount": "4", "reason": "x"},
                 {"kind": "vcpus", "vm": vm, "amount": "many", "reason": "x"},
                 {"kind": "vcpus", "vm": vm, "amount": "99", "reason": "x"},
                 {"kind": "new_vm", "reason": "  "},
                 {"kind": "root", "reason": "x"}):
        page = await alice.submit("/requests", **data)
        assert page.location == "/requests", data
    store = RequestStore(proxied.database_path)
    try:
        assert len(store.list()) == 1
        store.answer(made.id, approve=False, by="olga", word="not this term")
    finally:
        store.close()
    shown = (await alice.get("/requests")).text
    assert "rejected" in shown
    assert "not this term" in shown

    bob = await signed_in(server, "bob", "192.0.2.20")
    assert "alice-1" not in (await bob.get("/requests")).text


# -- operators --
async def test_an_operator_sees_every_vm_and_request(server: Console, lab: Lab) -> None:
    alice = await signed_in(server, "alice")
    page = await alice.submit("/requests", kind="new_vm", reason="a second VM for the project")
    assert page.status == 303
    olga = await signed_in(server, "olga", "192.0.2.40")
    page = await olga.get("/")
    assert "All VMs" in page.text
    for name in ("alice-1", "alice-2", "bob-1", "nobody-1"):
        assert f">{name}<" in page.text
    assert ">bob<" in page.text  # the owner column
    requests = (await olga.get("/requests")).text
    assert "a second VM for the project" in requests
    assert ">alice<" in requests
    # and may act on any VM
    assert (await olga.submit(f"/vms/{uuid_of(lab, 'bob-1')}/halt")).status == 303
    await eventually(lambda: state_of(lab, "bob-1") == VMState.SHUTOFF, what="bob-1 off")


# -- escaping, languages, headers --
async def test_vm_names_are_text_not_markup(server: Console, lab: Lab) -> None:
    alice = await signed_in(server, "alice")
    page = (await alice.get("/")).text
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert ">[b]bold<" in page  # plain text: no markup language turns it bold
    hostile = uuid_of(lab, HOSTILE[0])
    confirm = (await alice.get(f"/vms/{hostile}/reset")).text
    assert "<img" not in confirm
    assert "Reset &lt;img src=x onerror=alert(1)&gt;?" in confirm
    await alice.submit(f"/vms/{hostile}/start")
    assert "<img" not in (await alice.get("/")).text  # nor in a flash message
    # What a student types is text on the operator's page too.
    assert (await alice.submit("/requests", kind="new_vm", reason=SCRIPT)).status == 303
    olga = await signed_in(server, "olga", "192.0.2.40")
    requests = (await olga.get("/requests")).text
    assert SCRIPT not in requests
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in requests
    assert "<img" not in (await olga.get("/")).text


async def test_bidi_overrides_read_escaped_on_every_page(server: Console, lab: Lab) -> None:
    """A name, an owner or a reason with a bidi override shows it escaped (``core.text.printable``),
    as the terminal does: autoescaping makes markup text, not the text's direction."""
    olga = await signed_in(server, "olga", "192.0.2.40")
    pages = [(await olga.get("/")).text, (await olga.get(f"/vms/{uuid_of(lab, SPOOF)}/reset")).text]
    assert ">rtl\\u202egpj.exe<" in pages[0]
    assert ">bob\\u2067<" in pages[0]
    assert "Reset rtl\\u202egpj.exe?" in pages[1]  # inside a translated sentence too
    alice = await signed_in(server, "alice")
    assert (await alice.submit("/requests", kind="new_vm", reason="for \u202eevil")).status == 303
    pages.append((await olga.get("/requests")).text)
    assert "for \\u202eevil" in pages[2]
    for page in pages:
        assert not set(page) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


async def test_french_from_the_browser_and_the_switch(server: Console) -> None:
    french = Student(server, language="fr-FR,fr;q=0.9")
    page = await french.get("/login")
    assert '<html lang="fr">' in page.text
    assert "Se connecter" in page.text
    assert (await french.sign_in("alice", "wrong")).text.count("Identifiant ou mot de passe incorrect.") == 1
    page = await french.sign_in("alice")
    page = await french.get("/")
    assert "Mes VM" in page.text
    assert "en marche" in page.text  # alice-1's state
    assert "1024 Mio" in page.text
    assert 'href="?lang=en"' in page.text  # the switch

    page = await french.get("/?lang=en")  # the switch wins over the browser, and is kept
    assert "My VMs" in page.text
    assert "running" in page.text
    assert (await french.get("/requests")).text.count("My requests") == 1
    page = await french.get("/?lang=fr")
    assert "Mes VM" in page.text
    assert (await french.get("/?lang=xx")).status == 200  # an unknown language changes nothing
    assert "Mes VM" in (await french.get("/")).text

    english = Student(server, language="de-DE,en;q=0.8,fr;q=0.5")
    assert "Sign in" in (await english.get("/login")).text
    assert '<html lang="en">' in (await Student(server).get("/login")).text


async def test_a_refused_request_says_why_in_french(server: Console, lab: Lab) -> None:
    """The reasons a request is refused are the page's language too, not core's English."""
    french = Student(server, "192.0.2.10", language="fr-FR,fr;q=0.9")
    assert (await french.sign_in("alice")).location == "/"
    vm = uuid_of(lab, "alice-1")
    cases = [
        ({"kind": "new_vm", "reason": "   "},
         "La demande n’a pas été enregistrée : dites pourquoi vous en avez besoin (le motif est vide)"),
        ({"kind": "new_vm", "reason": "x" * 501},
         "La demande n’a pas été enregistrée : le motif dépasse 500 caractères"),
        ({"kind": "new_vm", "reason": "bad\x07bell"},
         "La demande n’a pas été enregistrée : le motif contient des caractères de contrôle"),
        ({"kind": "vcpus", "vm": vm, "amount": "99", "reason": "x"},
         "La demande n’a pas été enregistrée : demandez de 1 à 16 vCPU"),
        ({"kind": "memory", "vm": vm, "amount": "lots", "reason": "x"},
         "La demande n’a pas été enregistrée : demandez de 256 à 65536 Mio de mémoire"),
    ]
    for data, shown in cases:
        page = await french.submit("/requests", **data)
        assert page.location == "/requests", data
        text = (await french.get("/requests")).text
        assert shown in text, (data, text[-2000:])
        for english in ("reason is empty", "longer than", "control characters", "ask for "):
            assert english not in text
    assert RequestStore(server.settings.database_path).list() == []


async def test_share_links_and_console_pages_keep_their_policy(server: Console, lab: Lab) -> None:
    vm = uuid_of(lab, "alice-1")
    _link, token = server.link(vm, "alice-1")
    visitor = Student(server)
    async with visitor.browser.get(f"{server.base}/c/{token}", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/console/{vm}"
        assert "form-action 'none'" in response.headers["Content-Security-Policy"]
    login = await visitor.get("/login")
    assert "form-action 'self'" in login.headers["Content-Security-Policy"]
    assert "script-src 'self'" in login.headers["Content-Security-Policy"]
    assert "<script" not in login.text  # the portal's pages work without JavaScript


async def test_a_vm_being_halted_says_so_and_its_halt_button_is_off(server: Console, lab: Lab,
                                                                    proxied: Settings) -> None:
    """The mark a halt under way puts on the record (tests/integration/test_live_halt.py makes it
    with a guest that ignores ACPI; the test driver stops at once, so it is put here by hand)."""
    alice = await signed_in(server, "alice", "192.0.2.31")
    uuid = uuid_of(lab, "alice-1")
    key = next(vm.key for vm in lab.vms() if vm.uuid == uuid)

    async def mark() -> None:
        assert lab.inventory.begin_halt(key, time.time() + 42.5) is None

    async def unmark() -> None:
        lab.inventory.end_halt(key)

    await eventloop.run_on_core(mark())
    try:
        row = (await alice.get("/")).text.split(f'data-uuid="{uuid}"')[1].split("</tr>")[0]
        assert re.search(r"halting: powered off in 4[12] s", row), row
        assert re.search(r'<button type="submit" disabled>Halt</button>', row), row
        page = await alice.submit(f"/vms/{uuid}/halt")  # a form sent before the page said so
        assert page.location == "/"
        assert "alice-1 is already halting: it is powered off in 4" in (await alice.get("/")).text
        assert state_of(lab, "alice-1") == VMState.RUNNING
        assert "halt" not in [e.action for e in audit_entries(proxied, user="alice")]  # nothing sent
    finally:
        await eventloop.run_on_core(unmark())
    row = (await alice.get("/")).text.split(f'data-uuid="{uuid}"')[1].split("</tr>")[0]
    assert "halting" not in row
    assert '<button type="submit">Halt</button>' in row
