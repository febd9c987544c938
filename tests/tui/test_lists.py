"""The audit log, the requests and the share links take the VM list's keys (`j`/`k`, `g`/`G`, `/`
to filter), and at 80 columns show the selected row whole: an audit entry's detail and a
request's reason are cut in their columns, so they wrap under the table; the approve dialog
shows the reason too."""

from __future__ import annotations

from support.tuitest import SIZE, wait_until
from textual.widgets import DataTable

from core.links import SharedLink, ShareResult
from core.records import Actor, Item
from core.records.requests import Kind, RequestStore
from tui.app import VMManagerApp
from tui.screens.audit import AuditScreen
from tui.screens.main import MainScreen
from tui.screens.prompt import PromptScreen
from tui.screens.requests import RequestsScreen
from tui.screens.share import ShareScreen

LONG = ("the guest ignored the ACPI shutdown for the whole timeout, so it was forced off; "
        "unsaved work in its editor is lost, and the student was told at the end")


def text_of(screen, selector: str) -> str:  # noqa: ANN001
    return str(screen.query_one(selector).render())


async def moves_like_the_vm_list(pilot, table: DataTable) -> None:  # noqa: ANN001
    """`g`, `G`, `j`, `k` move the cursor as they do in the VM list."""
    await pilot.press("g")
    assert table.cursor_row == 0
    await pilot.press("j")
    assert table.cursor_row == 1
    await pilot.press("G")
    assert table.cursor_row == table.row_count - 1
    await pilot.press("k")
    assert table.cursor_row == table.row_count - 2


async def test_the_audit_log_moves_filters_and_shows_an_entry_whole(make_app) -> None:
    app: VMManagerApp = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        actor = Actor("teacher", "tui", "local")
        app.main.lab.record(actor, [Item("halt", f"net101-{n}", "", "ok", LONG) for n in ("ana", "ben")]
                            + [Item("start", "sys202-carl", "", "ok", "started")])
        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        table = screen.query_one(DataTable)
        await wait_until(lambda: table.row_count == 3)
        await moves_like_the_vm_list(pilot, table)
        await pilot.press("g")
        detail = " ".join(text_of(screen, "#audit-detail").split())
        assert LONG in detail  # whole, wrapped under the table
        assert "net101-ana" in detail
        await pilot.press("slash", *"halt ben")
        assert table.row_count == 1
        assert "net101-ben" in text_of(screen, "#audit-detail")
        await pilot.press("escape")  # from the prompt: cleared, still in the audit log
        assert app.screen is screen
        assert table.row_count == 3
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_requests_move_filter_and_the_approve_dialog_shows_the_reason(make_app) -> None:
    app: VMManagerApp = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lab = app.main.lab
        alice = next(vm for vm in lab.vms() if vm.name == "net101-alice")
        store = RequestStore(lab.settings.database_path)
        try:
            for user, amount in (("alice", 4), ("bob", 3), ("chloe", 2)):
                store.create(user, Kind.VCPUS, vm_uuid=alice.uuid, vm_name=alice.name, amount=amount,
                             reason=f"{user}: {LONG}")
        finally:
            store.close()
        await pilot.press("ctrl+r")
        screen = app.screen
        assert isinstance(screen, RequestsScreen)
        table = screen.query_one(DataTable)
        await wait_until(lambda: table.row_count == 3)
        await moves_like_the_vm_list(pilot, table)
        await pilot.press("slash", *"bob", "enter")
        assert table.row_count == 1
        assert f"bob: {LONG}" in " ".join(text_of(screen, "#requests-detail").split())
        await pilot.press("a")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        assert f"Reason: bob: {LONG}" in " ".join(text_of(prompt, "#prompt-explanation").split())


async def test_share_links_move_and_filter(make_app) -> None:
    app: VMManagerApp = make_app()
    links = tuple(SharedLink(f"u{i}", name, f"id{i}", f"https://lab.test/c/token{i}", "2026-11-24 10:00")
                  for i, name in enumerate(("net101-alice", "net101-bob", "sys202-manon")))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.push_screen(ShareScreen(ShareResult(links, (), True, "4h")))
        await wait_until(lambda: isinstance(app.screen, ShareScreen))
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        await moves_like_the_vm_list(pilot, table)
        await pilot.press("slash", *"manon", "enter")
        assert table.row_count == 1
        assert screen.selected is not None
        assert screen.selected.vm_name == "sys202-manon"
        assert screen.qr.data == "https://lab.test/c/token2"
