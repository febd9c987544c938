"""The student portal with LDAP sign-in, end to end: a real OpenLDAP slapd of our own (tests/slapd.py),
the real server, real VMs on libvirtd for the consoles. No local account exists: every identity
comes from the directory.

alice signs in and sees only her VMs; bob's VM is refused to her by page, API and console; LDAP
filter characters typed as a name fail cleanly through the form, before any LDAP connection; a
member of the operator group gets the operator's view.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import ldap3
import pytest
from support.livelab import Outside, Watch
from support.portalweb import Student, audit_entries
from support.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS,
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    Slapd,
    group_of_names,
    lab_entries,
)
from support.webtest import Console, StartConsole, closed, greeting

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.testing import testdriver
from core.web.console.proxy import CLOSE_REVOKED
from core.web.console.routes import COOKIE
from core.web.portal import CONSOLE_CHECK, SESSION_COOKIE

TEACHERS = f"cn=teachers,{GROUPS}"
GREETING = b"RFB 003.008\n"
HOSTILE = ["*", ")(", "\\", "\0", "alice*", "*)(uid=*", "alice)(|(uid=*", "al\\2aice", "(uid=alice)",
           "alice\0", "alice)(uid=bob"]


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """The standard lab directory (alice, bob, carol) and a teachers group with carol in it;
    ``stats`` logs every connection, to prove what never reached the server."""
    entries = lab_entries()
    carol = next(e.dn for e in entries if e.dn.startswith("uid=carol,"))
    with Slapd(tmp_path_factory.mktemp("slapd"), [*entries, group_of_names("teachers", [carol])],
               loglevel="stats") as running:
        yield running


@pytest.fixture
def ldap_settings(web_settings: Settings, directory: Slapd) -> Settings:
    """The portal signing in against the directory; the loopback trusted as a proxy, so that tests
    choose the client's address."""
    return dataclasses.replace(
        web_settings,
        ldap=dataclasses.replace(
            web_settings.ldap,
            host=directory.url,
            base_dn=SUFFIX,
            bind_user_dn=SERVICE_DN,
            bind_user_password=SERVICE_PASSWORD,
            operator_group=TEACHERS,
        ),
        web=dataclasses.replace(web_settings.web, trusted_proxies="127.0.0.1"),
    )


@pytest.fixture
async def driver_lab(web_settings: Settings, tmp_path: Path) -> AsyncIterator[Lab]:
    """A test-driver lab (no QEMU): alice's VMs, bob's and one of nobody."""
    uri = testdriver.write(tmp_path / "ldap-lab.xml", [
        testdriver.Spec("alice-1", VMState.RUNNING, meta=LabMeta("alice", "net101")),
        testdriver.Spec("alice-2", VMState.SHUTOFF, meta=LabMeta("alice", "net101")),
        testdriver.Spec("bob-1", VMState.RUNNING, meta=LabMeta("bob", "net101")),
        testdriver.Spec("nobody-1", VMState.SHUTOFF),
    ])
    lab = await Lab.open(web_settings, uri)
    yield lab
    await lab.close()


async def signed_in(server: Console, user: str, address: str) -> Student:
    student = Student(server, address)
    page = await student.sign_in(user, PASSWORDS[user])
    assert (page.status, page.location) == (303, "/"), page.text
    return student


async def running(lab: Lab, outside: Outside, label: str, owner: str) -> tuple[str, str]:
    """A tiny VM of ``owner``, running and in the Lab's inventory: its UUID and name."""
    dom = outside.define(label, start=True, meta=LabMeta(owner, "net101"))
    watch = Watch(lab)
    try:
        await watch.vm_in(dom.UUIDString(), VMState.RUNNING)
    finally:
        watch.close()
    return dom.UUIDString(), dom.name()


@pytest.mark.integration
async def test_alice_signs_in_from_ldap_and_reaches_only_her_vm(
        console: StartConsole, live_lab: Lab, outside: Outside, ldap_settings: Settings) -> None:
    hers, her_name = await running(live_lab, outside, "ldap-alice", "alice")
    his, his_name = await running(live_lab, outside, "ldap-bob", "bob")
    server = await console(live_lab, ldap_settings)
    alice = await signed_in(server, "alice", "192.0.2.10")

    page = await alice.get("/")
    assert page.status == 200
    assert f">{her_name}<" in page.text
    assert his_name not in page.text
    assert "Alice Liddell" in page.text  # the directory's cn
    assert "My VMs" in page.text
    [signin] = [e for e in audit_entries(ldap_settings, user="alice") if e.action == "signin"]
    assert (signin.outcome, signin.detail, signin.address) == ("ok", "ldap", "192.0.2.10")

    # Her console opens, through the portal, to her VM's own VNC.
    opened = await alice.submit(f"/vms/{hers}/console")
    assert (opened.status, opened.location) == (303, f"/console/{hers}")
    ws = await server.websocket(alice.browser, hers)
    assert await greeting(ws) == GREETING

    # bob's VM: by page, by API (every action, and the console), by console URL.
    assert (await alice.get(f"/vms/{his}/reset")).status == 404
    for action in ("start", "halt", "reset", "console"):
        assert (await alice.submit(f"/vms/{his}/{action}", confirm="yes")).status == 404, action
    assert not [c for c in alice.browser.cookie_jar if c["path"] == f"/console/{his}"]
    assert (await alice.get(f"/console/{his}?retry=1")).status == 403
    assert (await server.status(alice.browser, his))[0] == 403
    secret = next(c.value for c in alice.browser.cookie_jar if c["path"] == f"/console/{hers}")
    stolen = {"Cookie": f"{COOKIE}={secret}"}  # her console cookie, sent for his console
    assert (await server.status(alice.browser, his, headers=stolen))[0] == 403
    async with alice.browser.post(f"{server.base}/console/{his}/status",
                                  headers={**stolen, "Origin": server.base}) as response:
        assert response.status == 403
        assert (await response.json())["final"] is True
    assert outside.state(his) == VMState.RUNNING
    assert [link.vm_uuid for link in server.store.links()] == [hers]
    refused = {e.action for e in audit_entries(ldap_settings, user="alice") if e.outcome == "refused"}
    assert refused == {"start", "halt", "reset", "console"}
    await ws.close()

    # bob, signed in from the directory too, sees his VM and not hers.
    bob = await signed_in(server, "bob", "192.0.2.20")
    page = await bob.get("/")
    assert f">{his_name}<" in page.text
    assert her_name not in page.text


async def test_ldap_filter_characters_fail_cleanly_through_the_form(
        console: StartConsole, driver_lab: Lab, ldap_settings: Settings, directory: Slapd,
        caplog: pytest.LogCaptureFixture) -> None:
    """Typed as a user name on the sign-in form: refused like a wrong password (401, the form again),
    no session, no LDAP connection at all, nothing of it in the log; the portal still works after."""
    caplog.set_level(logging.DEBUG)
    server = await console(driver_lab, ldap_settings)
    before = directory.seen()
    for n, name in enumerate(HOSTILE):
        visitor = Student(server, f"198.51.100.{n + 1}")  # an address each: the failure limit stays out
        page = await visitor.sign_in(name, PASSWORDS["alice"])
        assert page.status == 401, (name, page.text)
        assert "Wrong user name or password." in page.text
        assert 'name="username"' in page.text
        assert visitor.cookie(SESSION_COOKIE) is None
        assert (await visitor.get("/")).location == "/login"
    assert directory.settle(before) == before, "a hostile name reached the LDAP server"
    assert "sign-in refused for an invalid name" in caplog.text
    for name in HOSTILE:
        if len(name) > 2:
            assert name not in caplog.text
    assert "(uid=\\2a" not in directory.log()
    refusals = [e for e in audit_entries(ldap_settings) if e.action == "signin"]
    assert len(refusals) == len(HOSTILE)
    assert {(e.user, e.outcome) for e in refusals} == {("?", "refused")}
    # An empty password is refused before any bind, through the form as well.
    page = await Student(server, "198.51.100.100").sign_in("alice", "")
    assert page.status == 401
    assert directory.settle(before) == before
    # The directory is still there for a real name: a search and a bind, nothing more.
    await signed_in(server, "alice", "198.51.100.101")
    assert directory.settle(before + 2) == before + 2


async def test_a_member_of_the_operator_group_gets_the_operators_view(
        console: StartConsole, driver_lab: Lab, ldap_settings: Settings) -> None:
    server = await console(driver_lab, ldap_settings)
    carol = await signed_in(server, "carol", "192.0.2.30")
    page = await carol.get("/")
    assert "All VMs" in page.text
    assert "(operator)" in page.text
    for name in ("alice-1", "alice-2", "bob-1", "nobody-1"):
        assert f">{name}<" in page.text
    assert ">bob<" in page.text  # the owner column
    assert ">alice<" in page.text
    bob_vm = next(vm.uuid for vm in driver_lab.vms() if vm.name == "bob-1")
    assert (await carol.submit(f"/vms/{bob_vm}/console")).location == f"/console/{bob_vm}"
    [link] = server.store.links()
    assert link.owner is None  # an operator's console link names nobody: it survives reassignment

    alice = await signed_in(server, "alice", "192.0.2.31")  # not in the group: a student
    page = await alice.get("/")
    assert "My VMs" in page.text
    assert "(operator)" not in page.text
    assert "bob-1" not in page.text
    assert (await alice.submit(f"/vms/{bob_vm}/console")).status == 404

    without_group = dataclasses.replace(
        ldap_settings, ldap=dataclasses.replace(ldap_settings.ldap, operator_group=None)
    )
    other = await console(driver_lab, without_group)
    carol_again = Student(other, "192.0.2.32")
    assert (await carol_again.sign_in("carol", PASSWORDS["carol"])).location == "/"
    assert "My VMs" in (await carol_again.get("/")).text  # the group decides, not the person


async def test_the_directory_down_is_a_503_not_a_refusal(console: StartConsole, driver_lab: Lab,
                                                         ldap_settings: Settings) -> None:
    from aiohttp.test_utils import unused_port

    down = dataclasses.replace(ldap_settings, ldap=dataclasses.replace(ldap_settings.ldap, host=f"ldap://127.0.0.1:{unused_port()}"))
    server = await console(driver_lab, down)
    page = await Student(server, "192.0.2.40").sign_in("alice", PASSWORDS["alice"])
    assert page.status == 503
    assert "unavailable" in page.text


async def test_a_changed_role_or_a_user_gone_from_the_directory_ends_the_session(
        console: StartConsole, driver_lab: Lab, ldap_settings: Settings, tmp_path: Path) -> None:
    """The directory is asked again once VMM_LDAP_RECHECK_INTERVAL has passed: carol, taken out
    of the operator group, loses her session and the console she opened on bob's VM; alice, put
    in it, signs in again as an operator; bob, deleted, is signed out. Before the bound nothing is
    asked; a directory that does not answer then ends nothing."""
    entries = lab_entries()
    dn = {e.dn.split(",")[0].removeprefix("uid="): e.dn for e in entries if e.dn.startswith("uid=")}
    with Slapd(tmp_path / "slapd", [*entries, group_of_names("teachers", [dn["carol"]])]) as changing:
        settings = dataclasses.replace(ldap_settings, ldap=dataclasses.replace(ldap_settings.ldap,
                                                                                 host=changing.url))
        interval = settings.ldap.recheck_interval
        server = await console(driver_lab, settings)
        carol = await signed_in(server, "carol", "192.0.2.30")
        alice = await signed_in(server, "alice", "192.0.2.31")
        bob = await signed_in(server, "bob", "192.0.2.32")
        bobs = next(vm.uuid for vm in driver_lab.vms() if vm.name == "bob-1")
        assert (await carol.submit(f"/vms/{bobs}/console")).location == f"/console/{bobs}"
        [link] = server.store.links()

        admin = ldap3.Connection(ldap3.Server(changing.url), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
        try:
            admin.modify(TEACHERS, {"member": [(ldap3.MODIFY_REPLACE, [dn["alice"]])]})
            admin.delete(dn["bob"])
        finally:
            admin.unbind()
        server.clock.offset += interval - 5  # within the bound: the sessions are as they were
        assert "(operator)" in (await carol.get("/")).text
        assert "(operator)" not in (await alice.get("/")).text
        assert (await bob.get("/")).status == 200

        server.clock.offset += 10
        for gone in (carol, alice, bob):
            assert (await gone.get("/")).location == "/login"
        assert server.store.get(link.id).revoked is not None  # type: ignore[union-attr]
        ended = {e.user: e.detail for e in audit_entries(settings) if e.action == "session-end"}
        assert ended == {"carol": "the user's role is now student",
                         "alice": "the user's role is now operator",
                         "bob": "the user is no longer in the directory"}
        alice = await signed_in(server, "alice", "192.0.2.31")
        assert "(operator)" in (await alice.get("/")).text
        carol = await signed_in(server, "carol", "192.0.2.30")
        assert "(operator)" not in (await carol.get("/")).text
        assert (await Student(server, "192.0.2.32").sign_in("bob", PASSWORDS["bob"])).status == 401

    server.clock.offset += interval + 1  # the directory is down now: the sessions go on
    assert "(operator)" in (await alice.get("/")).text
    assert (await carol.get("/")).status == 200


async def test_a_user_the_filter_no_longer_finds_loses_the_session(
        console: StartConsole, driver_lab: Lab, ldap_settings: Settings, tmp_path: Path) -> None:
    """Sign-in finds users by their mail, never a disabled one (LDAP_USER_FILTER); after the bound
    the directory is searched again the same way: alice, disabled since, is signed out and cannot
    sign in again, bob, who signed in by his mail too, stays."""
    entries = lab_entries()
    for entry in entries:
        if entry.dn.startswith("uid="):
            entry.attrs["mail"] = [f"{entry.attrs['uid'][0]}@lab.test"]
    with Slapd(tmp_path / "slapd", entries) as changing:
        settings = dataclasses.replace(ldap_settings, ldap=dataclasses.replace(
            ldap_settings.ldap, host=changing.url,
            user_filter="(&(objectClass=inetOrgPerson)(mail={username})(!(description=disabled)))"))
        server = await console(driver_lab, settings)
        students = {}
        for n, user in enumerate(("alice", "bob")):
            students[user] = Student(server, f"192.0.2.{50 + n}")
            page = await students[user].sign_in(f"{user}@lab.test", PASSWORDS[user])
            assert (page.status, page.location) == (303, "/"), page.text
        admin = ldap3.Connection(ldap3.Server(changing.url), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
        try:
            admin.modify(f"uid=alice,{PEOPLE}", {"description": [(ldap3.MODIFY_ADD, ["disabled"])]})
        finally:
            admin.unbind()
        server.clock.offset += settings.ldap.recheck_interval - 5
        assert (await students["alice"].get("/")).status == 200  # within the bound: not asked
        server.clock.offset += 10
        assert (await students["alice"].get("/")).location == "/login"
        assert (await students["bob"].get("/")).status == 200
        ended = {e.user: e.detail for e in audit_entries(settings) if e.action == "session-end"}
        assert ended == {"alice": "the user is no longer in the directory"}
        page = await Student(server, "192.0.2.50").sign_in("alice@lab.test", PASSWORDS["alice"])
        assert page.status == 401


@pytest.mark.integration
async def test_a_demoted_operators_open_console_closes_after_the_bound(
        console: StartConsole, live_lab: Lab, outside: Outside, ldap_settings: Settings,
        tmp_path: Path) -> None:
    """carol, an operator, watches alice's VM and loads no page; taken out of the operator group,
    her console closes once the bound has passed (the server checks the sessions behind open
    consoles), not before."""
    hers, _ = await running(live_lab, outside, "ldap-demoted", "alice")
    entries = lab_entries()
    carol_dn = next(e.dn for e in entries if e.dn.startswith("uid=carol,"))
    with Slapd(tmp_path / "slapd", [*entries, group_of_names("teachers", [carol_dn])]) as changing:
        settings = dataclasses.replace(ldap_settings, ldap=dataclasses.replace(ldap_settings.ldap,
                                                                                 host=changing.url))
        server = await console(live_lab, settings)
        carol = await signed_in(server, "carol", "192.0.2.30")
        assert (await carol.submit(f"/vms/{hers}/console")).location == f"/console/{hers}"
        ws = await server.websocket(carol.browser, hers)
        assert await greeting(ws) == GREETING
        admin = ldap3.Connection(ldap3.Server(changing.url), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
        try:
            admin.modify(TEACHERS, {"member": [(ldap3.MODIFY_REPLACE, [f"uid=alice,{PEOPLE}"])]})
        finally:
            admin.unbind()
        await asyncio.sleep(CONSOLE_CHECK + 1)  # a check within the bound asks nothing
        await ws.send_bytes(GREETING)
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
        server.clock.offset += settings.ldap.recheck_interval
        assert await closed(ws, within=CONSOLE_CHECK + 5) == CLOSE_REVOKED
        assert (await carol.get("/")).location == "/login"
