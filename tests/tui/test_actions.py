"""Marks, bulk actions with confirmation, results as notifications and log lines."""

from __future__ import annotations

import time

from support.tuitest import SIZE, log_text, notifications, shown_names, vm_named, wait_until

from core.model import VMState
from core.virt import eventloop
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen


async def mark_names(app, pilot, *names: str) -> None:  # noqa: ANN001
    for name in names:
        assert app.main.table.move_to(vm_named(app, name).key)
        await pilot.press("space")


async def test_space_marks_and_escape_clears_marks_then_filter(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        await pilot.press("space")
        assert len(table.marked) == 1
        assert table.cursor_row == 1  # space moves on, as in k9s
        await pilot.press("space")
        assert len(table.marked) == 2
        assert table.render_line(1).text.startswith("●")
        await pilot.press("slash", *"class:sys202", "enter", "ctrl+a")
        # the first two rows were "[@click=app.quit]x" (sys202) and "[b]bold" (net101)
        assert len(table.marked) == 4
        assert "4 marked (1 hidden)" in str(app.query_one("#status").render())
        await pilot.press("escape")  # marks first
        assert table.marked == set()
        assert len(shown_names(app)) == 3
        await pilot.press("escape")  # then the filter
        assert len(shown_names(app)) == 8


async def test_bulk_halt_asks_with_the_list_and_halts_on_confirm(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await mark_names(app, pilot, "net101-alice", "net101-bob", "sys202-manon")
        await pilot.press("h")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.title_text == "Halt 3 VMs?"
        listed = [str(w.render()) for w in dialog.query(".confirm-vm")]
        assert [line.split()[0] for line in listed] == ["net101-alice", "net101-bob", "sys202-manon"]
        await pilot.press("y")
        assert isinstance(app.screen, MainScreen)
        for name in ("net101-alice", "net101-bob", "sys202-manon"):
            await wait_until(lambda n=name: vm_named(app, n).state == VMState.SHUTOFF)
        await wait_until(lambda: "halt: 3 of 3 done" in " ".join(notifications(app)))
        log = log_text(app)
        assert "halt requested on 3 VMs" in log
        assert "✓ halt net101-alice: halted" in log
        assert "net101-alice  stopped  (halt)" in log
        assert app.main.table.marked == set()  # the next action starts afresh


async def test_cancelling_the_dialog_changes_nothing(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = {vm.name: vm.state for vm in lab.vms()}
        await mark_names(app, pilot, "net101-alice", "net101-bob")
        await pilot.press("ctrl+d")  # delete: destructive
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.title_text == "Delete 2 VMs?"
        await pilot.press("enter")  # Cancel has the focus: a stray Enter is harmless
        assert isinstance(app.screen, MainScreen)
        await pilot.press("x")  # destroy, cancelled with n
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.3)
        assert {vm.name: vm.state for vm in lab.vms()} == before
        assert len(app.main.table.marked) == 2  # still marked: nothing happened
        assert "delete cancelled" in log_text(app)
        assert "destroy cancelled" in log_text(app)


async def test_non_destructive_actions_run_at_once_and_failures_say_why(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        table.move_to(vm_named(app, "net101-chloe").key)
        await pilot.press("s")  # start: no dialog
        assert isinstance(app.screen, MainScreen)
        await wait_until(lambda: vm_named(app, "net101-chloe").state == VMState.RUNNING)
        table.move_to(vm_named(app, "net101-david").key)
        await pilot.press("u")  # resume the paused one
        await wait_until(lambda: vm_named(app, "net101-david").state == VMState.RUNNING)
        await pilot.press("p")  # and suspend it again
        await wait_until(lambda: vm_named(app, "net101-david").state == VMState.PAUSED)
        await pilot.press("s")  # start a paused VM: refused, with the reason
        await wait_until(lambda: any("Start" in n and "failed" in n for n in notifications(app)))
        failure = next(n for n in notifications(app) if "failed" in n)
        assert "net101-david: it is paused: resume it instead" in failure
        assert "✗ start net101-david: it is paused: resume it instead" in log_text(app)


async def test_reboot_asks_first(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.main.table.move_to(vm_named(app, "net101-alice").key)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.title_text == "Reboot 1 VM?"
        await pilot.press("y")
        await wait_until(lambda: "rebooting" in log_text(app))


async def test_command_palette_offers_every_action(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        from tui.commands import VMCommands

        provider = VMCommands(app.main)
        names = [command.name for command in provider._commands()]
        for expected in ("Start", "Halt", "Destroy (force off)", "Reboot", "Suspend (pause)", "Resume",
                         "Delete VM and its disks", "Details", "Filter", "Mark", "Log", "Help"):
            assert expected in names
        app.main.table.move_to(vm_named(app, "net101-bob").key)
        await pilot.press("ctrl+p")
        await pilot.press(*"halt")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.title_text == "Halt 1 VM?"
        await pilot.press("y")
        await wait_until(lambda: vm_named(app, "net101-bob").state == VMState.SHUTOFF)


async def test_a_vm_being_halted_counts_down_and_a_second_halt_says_so(make_app, lab) -> None:  # noqa: ANN001
    """The mark a halt under way puts on the record (made for real, with a guest that ignores
    ACPI, in tests/integration/test_live_halt.py; the test driver stops at once: put by hand)."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        alice = vm_named(app, "net101-alice")

        async def mark() -> None:
            assert lab.inventory.begin_halt(alice.key, time.time() + 3.4) is None

        async def unmark() -> None:
            lab.inventory.end_halt(alice.key)

        await eventloop.run_on_core(mark())
        table = app.main.table

        def row() -> str:
            return table.row_text(shown_names(app).index("net101-alice"))

        await wait_until(lambda: "halting… 3s" in row())
        assert "running" not in row()
        await wait_until(lambda: "halting… 1s" in row())  # counts down with the clock, no event
        assert table.move_to(alice.key)
        await pilot.press("h", "y")
        await wait_until(lambda: "already halting: powered off in" in log_text(app))
        assert vm_named(app, "net101-alice").state == VMState.RUNNING  # no second button pressed
        await eventloop.run_on_core(unmark())
        await wait_until(lambda: "running" in row())
