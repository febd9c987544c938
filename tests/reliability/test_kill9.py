"""kill -9 from outside, at a random (seeded) moment, of ``vm-manager serve`` answering students,
of a command writing share links, and of the TUI acting on a class: several times each, then the
same checks as at the commit points (test_commit_kills.py): the file is whole, everything that
reached the user has its audit entry and its rows, nothing shows half-written.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from support.cli import CHECKOUT, vm_manager
from support.crashes import KEY, PASSWORD, Browser, audited, checked
from support.tuitest import tui_in_pane
from support.webtest import Serve

from core.auth.accounts import Accounts
from core.links.shares import TokenStore
from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.testing import testdriver

SEED = 13
KILLS = 3


def test_serve_killed_while_students_visit(env: dict[str, str], uri: str, settings: Settings) -> None:
    """Visits one after the other (sign in, console, request, sign out) while the server is
    killed at a random moment, then started again: KILLS times."""
    accounts = Accounts(settings.database_path)
    accounts.add("alice", PASSWORD)
    accounts.close()
    chance = random.Random(SEED)
    answered: Counter[str] = Counter()
    filed: list[str] = []  # the reasons of the requests whose page came back
    for round_ in range(KILLS):
        server = Serve(env, "-c", uri, "serve")
        try:
            server.wait_for("serving consoles at")
            stop = threading.Event()

            def visits(port: int = server.port, round_: int = round_, stop: threading.Event = stop) -> None:
                n = 0
                while not stop.is_set():
                    browser = Browser(port)
                    reason = f"round {round_} visit {n}"
                    browser.visit(PASSWORD, testdriver.Spec("web-a").domain_uuid, reason)
                    answered.update(browser.answered)
                    if "request" in browser.answered:
                        filed.append(reason)
                    n += 1

            visitor = threading.Thread(target=visits)
            visitor.start()
            time.sleep(chance.uniform(0.5, 2.0))
        finally:
            server.process.kill()
            server.process.wait(timeout=10)
            stop.set()
        visitor.join(timeout=30)
    assert answered["signout"] >= KILLS  # whole visits were made
    with checked(settings.database_path) as db:
        for step in ("signin", "console", "request", "signout"):
            assert audited(db, step, user="alice", source="web") >= answered[step], step
        reasons = {row[0] for row in db.execute("SELECT reason FROM requests")}
        sessions = db.execute("SELECT username, csrf, expires FROM web_sessions").fetchall()
    assert set(filed) <= reasons
    assert all(name == "alice" and csrf and expires > 0 for name, csrf, expires in sessions)


def test_a_command_killed_while_it_writes_share_links(env: dict[str, str], tmp_path: Path,
                                                      settings: Settings) -> None:
    """``vm-manager share 'web-*'`` (20 links, each its own transaction, then their audit
    entries) killed in the middle of its writes, again and again: a link printed opens and is
    audited. Where it is killed is seeded: it pauses a second after its Nth link (N random) and is
    killed from outside while the test sees N links in the file."""
    lab = testdriver.write(tmp_path / "class.xml", [
        testdriver.Spec(f"web-{n:02}", VMState.RUNNING, meta=LabMeta(f"s{n}", "net101")) for n in range(20)])
    chance = random.Random(SEED)
    printed: list[str] = []
    for _ in range(KILLS + 1):
        before = _links(settings)
        nth = chance.randint(1, 20)
        command = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "-c", lab, "share", "web-*"], cwd=CHECKOUT, text=True,
            env={**env, "VMM_FAILPOINT": f"slow:committed:tokens.create_link#{nth}"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while _links(settings) < before + nth and command.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        command.kill()
        out, err = command.communicate(timeout=30)
        assert command.returncode == -9, err  # killed in the middle: it had more to write
        assert _links(settings) == before + nth
        printed += re.findall(r"/c/([A-Za-z0-9_-]{43})", out)
    finished = vm_manager("-c", lab, "share", "web-*", env=env)
    assert finished.returncode == 0, finished.stderr
    printed += re.findall(r"/c/([A-Za-z0-9_-]{43})", finished.stdout)
    assert len(printed) == 20  # those of the killed runs were never shown
    store = TokenStore(settings.database_path, KEY)
    try:
        links = [store.link_for_token(token) for token in printed]
    finally:
        store.close()
    with checked(settings.database_path) as db:
        details = {row[0] for row in db.execute("SELECT detail FROM audit WHERE action = 'share'")}
    for link in links:
        assert link is not None
        assert any(detail.startswith(f"link {link.id} ") for detail in details), link


def _links(settings: Settings) -> int:
    """How many links the file holds now (0 before it exists)."""
    if not settings.database_path.exists():
        return 0
    db = sqlite3.connect(settings.database_path)
    try:
        return int(db.execute("SELECT count(*) FROM links").fetchone()[0])
    except sqlite3.OperationalError:  # no such table yet
        return 0
    finally:
        db.close()


def test_the_tui_killed_while_it_acts_on_a_class(tmp_path: Path, settings: Settings) -> None:
    """The TUI (in tmux) suspending and resuming a class of 6 again and again, killed at a
    random moment: each bulk action is recorded whole (one entry per VM, in one transaction)."""
    lab = testdriver.write(tmp_path / "class.xml", [
        testdriver.Spec(f"tui-{n}", VMState.RUNNING, meta=LabMeta(f"s{n}", "net101")) for n in range(6)])
    chance = random.Random(SEED)
    for _ in range(KILLS):
        with tui_in_pane(settings, lab) as terminal:
            terminal.wait(lambda screen: "tui-5" in screen)
            deadline = time.monotonic() + chance.uniform(1.0, 3.0)
            while time.monotonic() < deadline:
                for key in ("p", "u"):  # suspend, resume: every VM marked
                    terminal.keys("C-a", key)
                    time.sleep(0.1)
            os.kill(terminal.pid, signal.SIGKILL)
    with checked(settings.database_path) as db:
        batches = db.execute("SELECT action, at, count(*), count(DISTINCT vm_name) FROM audit "
                             "GROUP BY action, at").fetchall()
    assert batches  # it acted
    assert {action for action, *_ in batches} <= {"suspend", "resume"}
    assert all((entries, vms) == (6, 6) for _, _, entries, vms in batches), batches
