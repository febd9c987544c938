"""A process killed at each commit point of the shared database, made exact by the fault points
(``VMM_FAILPOINT=kill:commit:STORE.WRITE`` just before COMMIT, ``committed`` just after, ``acted``
between a libvirt action and its audit entry; see :mod:`core.failpoints`).

Each test runs the real program (a ``vm-manager`` command, ``vm-manager serve`` answering a
student's browser) on libvirt's test driver with the kill set, then checks what it left:
SQLite says the file is whole, every step that reached the user (an exit status of 0 and a
printed result, an HTTP answer that reached the browser) has its audit entry and its rows, and
nothing shows half-written (a link and its owner, a session and its CSRF token, a request and its
answer are each written in one transaction, so a kill leaves all of one or none of it).
Provisioning's kills run on the real libvirtd (tests/integration/test_live_provision.py).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from support.cli import vm_manager
from support.crashes import KEY, PASSWORD, Browser, audited, checked
from support.webtest import Serve

from core.auth.accounts import Accounts
from core.auth.sessions import SessionStore
from core.links.shares import TokenStore
from core.settings import Settings
from core.testing import testdriver

KILLED = -9


def cli(env: dict[str, str], *args: str, failpoint: str = "") -> subprocess.CompletedProcess[str]:
    return vm_manager(*args, env=env, **({"VMM_FAILPOINT": failpoint} if failpoint else {}))


# -- commands --

@pytest.mark.parametrize("point", ["acted:start", "commit:audit.record", "committed:audit.record", ""])
def test_an_action_killed_at_each_point(env: dict[str, str], uri: str, settings: Settings,
                                        point: str) -> None:
    """``vm-manager start``: the VM starts in libvirt, then its audit entry, then the result is
    printed. A result printed always has its entry; a kill before it prints nothing."""
    run = cli(env, "-c", uri, "start", "web-b", failpoint=f"kill:{point}" if point else "")
    with checked(settings.database_path) as db:
        entries = audited(db, "start", vm_name="web-b", outcome="ok", user="teacher")
    if not point:
        assert run.returncode == 0, run.stderr
        assert "web-b" in run.stdout
        assert entries == 1
        return
    assert run.returncode == KILLED, run.stderr
    assert run.stdout == ""  # nothing reported
    assert entries == (1 if point.startswith("committed") else 0)  # one whole entry, or none


@pytest.mark.parametrize("point", ["commit:tokens.create_link", "committed:tokens.create_link",
                                   "commit:audit.record", "committed:audit.record", ""])
def test_a_share_killed_at_each_point(env: dict[str, str], uri: str, settings: Settings, point: str) -> None:
    """``vm-manager share`` (no server: straight into the database): a printed link has its row
    (its token opens it) and its audit entry; a kill before it prints leaves no link anyone holds."""
    run = cli(env, "-c", uri, "share", "web-a", failpoint=f"kill:{point}" if point else "")
    with checked(settings.database_path) as db:
        links = db.execute("SELECT id, vm_name, expires, revoked FROM links").fetchall()
        entries = audited(db, "share", vm_name="web-a")
    if not point:
        assert run.returncode == 0, run.stderr
        token = re.search(r"/c/([A-Za-z0-9_-]{43})", run.stdout)
        assert token is not None, run.stdout
        store = TokenStore(settings.database_path, KEY)
        try:
            link = store.link_for_token(token[1])
        finally:
            store.close()
        assert link is not None
        assert link.vm_name == "web-a"
        assert entries == 1
        return
    assert run.returncode == KILLED, run.stderr
    assert "/c/" not in run.stdout  # no token shown: a link made is held by nobody
    made = point != "commit:tokens.create_link"
    assert len(links) == int(made)
    assert all(row[1] == "web-a" and row[2] > 0 and row[3] is None for row in links)  # whole rows
    assert entries == int(point == "committed:audit.record")


@pytest.mark.parametrize("point", ["commit:tokens.revoke", "committed:tokens.revoke", ""])
def test_a_revoke_killed_at_each_point(env: dict[str, str], uri: str, settings: Settings, point: str) -> None:
    assert cli(env, "-c", uri, "share", "web-a").returncode == 0
    run = cli(env, "-c", uri, "revoke", "web-a", failpoint=f"kill:{point}" if point else "")
    with checked(settings.database_path) as db:
        revoked = db.execute("SELECT count(*) FROM links WHERE revoked IS NOT NULL").fetchone()[0]
        entries = audited(db, "revoke", vm_name="web-a")
    if not point:
        assert run.returncode == 0, run.stderr
        assert (revoked, entries) == (1, 1)
        return
    assert run.returncode == KILLED, run.stderr
    assert "revoked" not in run.stdout
    assert (revoked, entries) == (int(point.startswith("committed")), 0)


@pytest.mark.parametrize("point", ["commit:accounts.migrate", "commit:accounts.add", "committed:accounts.add",
                                   "commit:audit.migrate"])
def test_an_account_killed_at_each_point(env: dict[str, str], settings: Settings, point: str) -> None:
    """``vm-manager user add`` (the account, then its audit entry); ``accounts.migrate``: the
    first program to open a new database killed while it makes the tables: the next one makes
    them whole."""
    run = vm_manager("user", "add", "carol", "--password-stdin", env=env, stdin=f"{PASSWORD}\n",
                     VMM_FAILPOINT=f"kill:{point}")
    assert run.returncode == KILLED, run.stderr
    with checked(settings.database_path) as db:
        rows = db.execute("SELECT username, password_hash FROM accounts").fetchall()
    assert run.stdout == ""
    made = point in ("committed:accounts.add", "commit:audit.migrate")
    assert rows == ([("carol", rows[0][1])] if made else [])
    again = vm_manager("user", "add", "dave", "--password-stdin", env=env, stdin=f"{PASSWORD}\n")
    assert again.returncode == 0, again.stderr  # the file works on
    accounts = Accounts(settings.database_path)
    try:
        assert accounts.verify("dave", PASSWORD) is not None
        if rows:
            assert accounts.verify("carol", PASSWORD) is not None  # a whole hash, not half of one
    finally:
        accounts.close()


# -- the server answering a student --

STEPS = ("signin", "console", "request", "signout")
PORTAL_POINTS = {  # each commit point of the visit, and the step it is in
    "commit:sessions.begin_attempt": "signin", "commit:sessions.succeeded": "signin",
    "commit:sessions.create": "signin", "commit:audit.record#1": "signin",
    "committed:audit.record#1": "signin",
    "commit:tokens.create_link": "console", "commit:sessions.add_link": "console",
    "commit:audit.record#2": "console", "committed:audit.record#2": "console",
    "commit:requests.create": "request", "committed:requests.create": "request",
    "commit:audit.record#3": "request",
    "commit:sessions.end": "signout", "committed:sessions.end": "signout",
    "committed:audit.record#4": "signout",
}


@pytest.mark.parametrize("point", [*PORTAL_POINTS, ""])
def test_the_server_killed_at_each_point_of_a_students_visit(env: dict[str, str], uri: str,
                                                             settings: Settings, point: str) -> None:
    accounts = Accounts(settings.database_path)
    accounts.add("alice", PASSWORD)
    accounts.close()
    server = Serve({**env, **({"VMM_FAILPOINT": f"kill:{point}"} if point else {})}, "-c", uri, "serve")
    try:
        server.wait_for("serving consoles at")
        browser = Browser(server.port)
        browser.visit(PASSWORD, testdriver.Spec("web-a").domain_uuid, "a second VM for the project")
        status = server.process.wait(timeout=10) if point else server.stop()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)
    assert status == (KILLED if point else 0)
    killed_in = PORTAL_POINTS.get(point)
    answered = browser.answered
    assert answered == list(STEPS[:STEPS.index(killed_in)] if killed_in else STEPS)  # killed where it says
    with checked(settings.database_path) as db:
        entries = {action: audited(db, action, user="alice", source="web") for action in STEPS}
        links = db.execute("SELECT id, owner, vm_name, revoked FROM links").fetchall()
        requests = db.execute("SELECT username, kind, reason, status FROM requests").fetchall()
        session_rows = db.execute("SELECT username, csrf, expires FROM web_sessions").fetchall()
        session_links = [row[0] for row in db.execute("SELECT link_id FROM web_session_links")]
    # every answer that reached the browser has its audit entry, and its rows
    assert [step for step in STEPS if entries[step]] == answered + (
        [killed_in] if point.startswith("committed:audit") else [])  # written, then killed: not answered
    assert all(count == 1 for count in entries.values() if count)
    sessions = SessionStore(settings.database_path, KEY)
    try:
        live = sessions.get(browser.cookies.get("vmm_session"))
    finally:
        sessions.close()
    if "signin" in answered and killed_in not in (None, "signout"):
        assert live is not None  # the cookie still signs in
        assert (live.username, bool(live.csrf)) == ("alice", True)
    if "signout" in answered:
        assert (live, session_rows, session_links) == (None, [], [])
    # nothing half-written: whole rows, one of each at most
    assert all(name == "alice" and csrf and expires > 0 for name, csrf, expires in session_rows)
    assert max(len(session_rows), len(links), len(requests)) <= 1
    assert all((owner, name) == ("alice", "web-a") for _, owner, name, _ in links)
    assert set(session_links) <= {link[0] for link in links}
    if "console" in answered:
        assert len(links) == 1
    if "request" in answered:
        assert requests == [("alice", "new_vm", "a second VM for the project", "pending")]
    if killed_in in ("signin", "console") or point == "commit:requests.create":
        assert requests == []
