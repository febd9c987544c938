"""The requests view (answering students' requests) and the audit log view, driven by Pilot.

Requests are put in the shared database as the web portal puts them; the approval reaches the VM's
definition on the test driver, and the student's mail a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import libvirt
import pytest
from support.smtp import Inbox, smtp_inbox
from support.tuitest import FIXED_TIME, HOSTILE_CLICK, SIZE, notifications, vm_named, wait_until
from textual.widgets import DataTable, Input

from core.lab import Lab
from core.records.audit import Actor, AuditLog
from core.records.requests import Kind, RequestStore, Status
from core.settings import Settings
from core.virt import domainxml
from tui.app import VMManagerApp
from tui.screens.audit import AuditScreen
from tui.screens.prompt import PromptScreen
from tui.screens.requests import RequestsScreen


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as made:
        yield made


@pytest.fixture
async def mailing_lab(settings: Settings, lab_uri: str, inbox: Inbox) -> AsyncIterator[Lab]:
    configured = dataclasses.replace(
        settings,
        smtp=dataclasses.replace(
            settings.smtp, host="127.0.0.1", port=inbox.port, starttls=False, sender="vmm@lab.test"
        ),
    )
    opened = await Lab.open(configured, lab_uri)
    yield opened
    await opened.close()


def config_of(lab: Lab, name: str) -> domainxml.DomainInfo:
    vm = next(vm for vm in lab.vms() if vm.name == name)
    xml = lab.hosts[vm.host].domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    return domainxml.parse(xml)


async def test_an_operator_approves_and_rejects_requests(mailing_lab: Lab, inbox: Inbox) -> None:
    lab = mailing_lab
    alice = next(vm for vm in lab.vms() if vm.name == "net101-alice")
    store = RequestStore(lab.settings.database_path)
    try:
        more = store.create("alice", Kind.VCPUS, vm_uuid=alice.uuid, vm_name=alice.name, amount=4,
                            reason="parallel builds", email="alice@lab.test")
        other = store.create("bob", Kind.NEW_VM, reason=f"a router {HOSTILE_CLICK}", email="bob@lab.test")
        app = VMManagerApp(lab=lab, clock=lambda: FIXED_TIME)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+r")
            await wait_until(lambda: isinstance(app.screen, RequestsScreen))
            screen = app.screen
            assert isinstance(screen, RequestsScreen)
            assert [r.id for r in screen.requests] == [other.id, more.id]  # newest first
            table = screen.query_one(DataTable)
            assert f"a router {HOSTILE_CLICK}" in table.render_line(1).text  # a student's words, not markup
            await pilot.press("down")  # alice's
            assert screen.selected() == more
            await pilot.press("a")
            await wait_until(lambda: isinstance(app.screen, PromptScreen))
            await pilot.press(*"ok", "enter")
            await wait_until(lambda: store.get(more.id).status is Status.APPROVED)  # type: ignore[union-attr]
            await wait_until(lambda: len(inbox.messages) == 1)
            assert config_of(lab, "net101-alice").vcpus == 4  # the definition: the next boot has it
            assert vm_named(app, "net101-alice").vcpus == 2  # still running with 2

            await wait_until(lambda: [r.id for r in screen.requests] == [other.id])  # pending only
            await pilot.press("x")  # reject bob's: a word is required
            await wait_until(lambda: isinstance(app.screen, PromptScreen))
            await pilot.press("enter")
            prompt = app.screen
            assert isinstance(prompt, PromptScreen)
            assert "enter a value" in prompt.error
            prompt.query_one(Input).value = "use your VM"
            await pilot.press("enter")
            await wait_until(lambda: store.get(other.id).status is Status.REJECTED)  # type: ignore[union-attr]
            await wait_until(lambda: len(inbox.messages) == 2)
            await pilot.press("f")  # the answered ones too
            await wait_until(lambda: len(screen.requests) == 2)
        approved, rejected = inbox.messages
        assert approved["To"] == "alice@lab.test"
        assert "approved" in approved["Subject"]
        assert rejected["To"] == "bob@lab.test"
        assert "use your VM" in rejected.get_payload()
        assert store.get(other.id).answer == "use your VM"  # type: ignore[union-attr]
        actions = [(e.action, e.source, e.vm_name) for e in lab.audit.entries()]
        assert ("request-vcpus", "tui", "net101-alice") in actions
        assert ("request-approve", "tui", "net101-alice") in actions
        assert ("request-reject", "tui", "") in actions
    finally:
        store.close()


async def test_a_request_answered_elsewhere_meanwhile_is_not_answered_twice(mailing_lab: Lab) -> None:
    lab = mailing_lab
    store = RequestStore(lab.settings.database_path)
    try:
        made = store.create("bob", Kind.NEW_VM, reason="a router")
        app = VMManagerApp(lab=lab, clock=lambda: FIXED_TIME)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+r")
            await wait_until(lambda: isinstance(app.screen, RequestsScreen))
            store.answer(made.id, approve=False, by="colleague", word="no")  # another operator, first
            await pilot.press("a")
            await wait_until(lambda: isinstance(app.screen, PromptScreen))
            await pilot.press("enter")
            await wait_until(lambda: any("rejected already" in n for n in notifications(app)))
        assert store.get(made.id).answered_by == "colleague"  # type: ignore[union-attr]
    finally:
        store.close()


async def test_the_audit_view_follows_actions_from_here_and_elsewhere(make_app, lab: Lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await wait_until(lambda: HOSTILE_CLICK in [vm.name for vm in app.main.table.all_vms()])
        assert app.main.table.move_to(vm_named(app, HOSTILE_CLICK).key)
        await pilot.press("s")  # start: no confirmation
        await wait_until(lambda: bool(lab.audit.entries(vm=HOSTILE_CLICK)))
        await pilot.press("a")
        await wait_until(lambda: isinstance(app.screen, AuditScreen))
        table = app.screen.query_one(DataTable)
        await wait_until(lambda: table.row_count == 1)
        cells = [str(c) for c in table.get_row_at(0)]
        assert cells[3:5] == ["start", HOSTILE_CLICK]  # the name as it is, never read as markup
        assert HOSTILE_CLICK in app.screen.query_one(DataTable).render_line(1).text  # and drawn so
        web = AuditLog(lab.settings.database_path)  # the web server's process records too
        try:
            web.record(Actor("alice", "web", "192.0.2.9"), "signin")
        finally:
            web.close()
        await wait_until(lambda: table.row_count == 2, limit=10.0)
        last = [str(c) for c in table.get_row_at(1)]
        assert last[1:4] == ["alice", "web 192.0.2.9", "signin"]
    entry = lab.audit.entries(vm=HOSTILE_CLICK)[0]
    assert (entry.action, entry.source, entry.outcome) == ("start", "tui", "ok")


async def test_the_audit_view_counts_repeats_in_their_row(make_app, lab: Lab) -> None:
    """A refusal repeated on the web (collapsed into one entry) updates its row's count."""
    web = AuditLog(lab.settings.database_path)

    def refused() -> None:
        web.record(Actor("?", "web", "203.0.113.5"), "signin", outcome="refused",
                   detail="too many failed sign-ins", collapse=True)

    app = make_app()
    try:
        refused()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("a")
            await wait_until(lambda: isinstance(app.screen, AuditScreen))
            table = app.screen.query_one(DataTable)
            await wait_until(lambda: table.row_count == 1)
            assert str(table.get_row_at(0)[-1]) == "too many failed sign-ins"
            refused()
            refused()
            await wait_until(lambda: "×3 until" in str(table.get_row_at(0)[-1]), limit=10.0)
            assert table.row_count == 1
    finally:
        web.close()


async def test_a_new_request_made_on_the_web_is_told_at_once(mailing_lab: Lab,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tui.app.REQUESTS_INTERVAL", 0.1)
    store = RequestStore(mailing_lab.settings.database_path)
    try:
        old = store.create("bob", Kind.NEW_VM, reason="made before the TUI started")
        app = VMManagerApp(lab=mailing_lab, clock=lambda: FIXED_TIME)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause(0.3)
            made = store.create("alice", Kind.VCPUS, vm_uuid="u", vm_name="net101-alice", amount=3,
                                reason="threads")
            await wait_until(lambda: any(n.startswith("New request|") for n in notifications(app)))
            told = [n for n in notifications(app) if n.startswith("New request|")]
            assert told == [f"New request|#{made.id} alice: 3 vCPUs for net101-alice — ctrl+r to answer"]
            assert f"#{old.id}" not in " ".join(told)  # only what is new since the TUI looked first
    finally:
        store.close()
