"""The command palette speaks the field's words: what virsh, Proxmox and lazydocker call an action
finds ours; each entry says what it does; our commands come before Textual's own."""

from __future__ import annotations

import pytest
from support.tuitest import SIZE, vm_named, wait_until
from textual.command import CommandList, CommandPalette

from tui.app import VMManagerApp
from tui.commands import PALETTE, PALETTE_GROUPS
from tui.screens.confirm import ConfirmScreen


async def palette_shows(app: VMManagerApp, pilot, query: str) -> list[tuple[str, str]]:  # noqa: ANN001
    """Open the palette, type ``query``; its entries once every provider has answered, in order:
    (name, help)."""
    await pilot.press("ctrl+p")
    await wait_until(lambda: isinstance(app.screen, CommandPalette))
    palette = app.screen
    if query:
        await pilot.press(*query)
    await wait_until(lambda: palette.query_one(CommandList).option_count > 0
                     and all(worker.is_finished for worker in palette.workers))
    await pilot.pause()
    options = palette.query_one(CommandList)
    shown = [options.get_option_at_index(i) for i in range(options.option_count)]
    return [(str(o.hit.text), str(o.hit.help)) for o in shown]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("query", "action"), [
    ("shutdown", "Halt"), ("shut down", "Halt"), ("stop", "Halt"),
    ("power off", "Destroy (force off)"), ("kill", "Destroy (force off)"),
    ("boot", "Start"), ("power on", "Start"),
    ("console", "Share console links"), ("vnc", "Share console links"),
    ("snapshot", "Snapshot (named)"), ("rollback", "Revert to a snapshot"),
    ("restart", "Reboot"), ("pause", "Suspend (pause)"), ("undefine", "Delete VM and its disks"),
    ("provision", "New class (provision)"),
])
async def test_the_fields_words_find_the_action_first(make_app, query: str, action: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown = await palette_shows(app, pilot, query)
        assert shown[0][0] == action, shown


async def test_each_entry_says_what_it_does_and_ours_come_first(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown = await palette_shows(app, pilot, "")
        names = [name for name, _help in shown]
        ours = [info.description for info in app.key_catalogue()
                if info.group in PALETTE_GROUPS and info.binding_id != "command_palette"]
        assert names[:len(ours)] == ours  # every one of ours, in the help screen's order
        assert "Theme" in names[len(ours):]  # then Textual's
        helps = dict(shown)
        assert helps["Halt"] == "Ask the guest to shut down (ACPI), then power it off after 5 s  (h)"
        assert helps["Start"] == "Power the VM on  (s)"
        assert not any("id:" in text or "key:" in text for text in helps.values())
        await pilot.press("escape")
        # a search: ours before Textual's even where Textual's matches better ("Quit the application")
        shown = await palette_shows(app, pilot, "quit")
        assert shown[0] == ("Quit", "Leave VM Manager (asks first while actions are under way)  (q, ^q)")


async def test_every_palette_command_says_what_it_does(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE):
        ids = {info.binding_id for info in app.key_catalogue()
               if info.group in PALETTE_GROUPS and info.binding_id != "command_palette"}
        assert ids - PALETTE.keys() == set()


async def test_a_word_from_elsewhere_runs_the_action(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.main.table.move_to(vm_named(app, "net101-bob").key)
        await palette_shows(app, pilot, "power off")
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.title_text == "Destroy 1 VM?"
