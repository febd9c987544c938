"""A request's whole way: a student files it on the portal, the operators get a mail, an operator
approves it in the TUI (Pilot), the student gets a mail and sees the answer on the page.

Real parts throughout: the aiohttp server, SQLite, local accounts, aiosmtpd, Textual's Pilot; the
TUI has its own connection to the same test-driver file, as an operator's terminal would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.portalweb import Student, add_accounts, audit_entries
from support.smtp import Inbox, smtp_inbox
from support.webtest import StartConsole, eventually

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.records.requests import RequestStore, Status
from core.settings import Settings
from core.testing import testdriver
from tui.app import VMManagerApp
from tui.screens.prompt import PromptScreen
from tui.screens.requests import RequestsScreen


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as made:
        yield made


async def test_a_request_goes_from_the_student_page_to_the_tui_and_back(
        console: StartConsole, web_settings: Settings, tmp_path: Path, inbox: Inbox) -> None:
    settings = dataclasses.replace(
        web_settings,
        web=dataclasses.replace(web_settings.web, trusted_proxies="127.0.0.1"),
        smtp=dataclasses.replace(
            web_settings.smtp,
            host="127.0.0.1",
            port=inbox.port,
            starttls=False,
            sender="vmm@lab.test",
            operator_email="olga@lab.test",
        ),
    )
    add_accounts(settings)
    uri = testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec("alice-1", VMState.RUNNING, vcpus=2, memory_mib=1024,
                        meta=LabMeta("alice", "net101"))])
    server_lab = await Lab.open(settings, uri)
    try:
        server = await console(server_lab, settings)
        alice = Student(server, "192.0.2.10")
        assert (await alice.sign_in("alice")).location == "/"
        vm = server_lab.vms()[0]
        page = await alice.submit("/requests", kind="vcpus", vm=vm.uuid, amount="4", reason="parallel builds")
        assert page.status == 303
        await eventually(lambda: len(inbox.messages) == 1, what="the operators' mail")
        assert inbox.messages[0]["To"] == "olga@lab.test"
        assert "4 vCPUs for alice-1" in inbox.messages[0]["Subject"]

        operator_lab = await Lab.open(settings, uri)  # the TUI closes it when it quits
        app = VMManagerApp(lab=operator_lab)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+r")
            await eventually(lambda: isinstance(app.screen, RequestsScreen), what="the requests view")
            screen = app.screen
            assert isinstance(screen, RequestsScreen)
            [shown] = screen.requests
            assert (shown.username, shown.summary(), shown.reason) == ("alice", "4 vCPUs for alice-1",
                                                                       "parallel builds")
            await pilot.press("a")
            await eventually(lambda: isinstance(app.screen, PromptScreen), what="the answer prompt")
            await pilot.press(*"granted", "enter")
            await eventually(lambda: len(inbox.messages) == 2, what="the student's mail")
        assert inbox.messages[1]["To"] == "alice@example.org"
        assert "approved" in inbox.messages[1]["Subject"]
        store = RequestStore(settings.database_path)
        try:
            [answered] = store.list()
        finally:
            store.close()
        assert (answered.status, answered.answer) == (Status.APPROVED, "granted")

        page = (await alice.get("/requests")).text  # the student sees the answer
        assert "status-approved" in page
        assert "granted" in page
        actions = [(e.action, e.source) for e in audit_entries(settings)]
        assert ("signin", "web") in actions
        assert ("request", "web") in actions
        assert ("request-vcpus", "tui") in actions
        assert ("request-approve", "tui") in actions
    finally:
        await server_lab.close()


async def test_an_approved_request_shows_from_the_next_boot_on_the_students_page(
        console: StartConsole, web_settings: Settings, tmp_path: Path) -> None:
    add_accounts(web_settings)
    uri = testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec("alice-1", VMState.RUNNING, vcpus=2, memory_mib=1024,
                        meta=LabMeta("alice", "net101"))])
    lab = await Lab.open(web_settings, uri)
    try:
        server = await console(lab, web_settings)
        alice = Student(server, "192.0.2.10")
        assert (await alice.sign_in("alice")).location == "/"
        vm = lab.vms()[0]
        page = await alice.submit("/requests", kind="memory", vm=vm.uuid, amount="2048", reason="builds")
        assert page.status == 303
        store = RequestStore(web_settings.database_path)
        try:
            [asked] = store.list()
        finally:
            store.close()
        await lab.answer_request(asked.id, approve=True)
        await eventually(lambda: lab.vms()[0].next_memory_mib == 2048, what="the memory of the next boot")
        shown = (await alice.get("/")).text
        assert "1024 MiB" in shown  # what it runs with now
        assert "2048 MiB from the next boot" in shown
    finally:
        await lab.close()
