"""Quitting the TUI with a halt under way asks first: wait for it, or quit and leave it, the VMs
left recorded as abandoned in the audit log. On real VMs: a diskless SeaBIOS guest never answers
the ACPI power button, so its halt waits out the whole timeout."""

from __future__ import annotations

import pytest
from support.livelab import Outside
from support.tuitest import FIXED_TIME, log_text, wait_until

from core.lab import Lab
from core.model import VMState
from core.records import AuditLog, Entry
from core.settings import ActionSettings
from tui.app import VMManagerApp
from tui.screens.confirm import ConfirmScreen

pytestmark = pytest.mark.integration


def halts(lab: Lab, name: str) -> list[Entry]:
    audit = AuditLog(lab.settings.database_path)
    try:
        return [e for e in audit.entries(vm=name) if e.action == "halt"]
    finally:
        audit.close()


async def halt_then_quit(app: VMManagerApp, pilot, name: str) -> ConfirmScreen:  # noqa: ANN001
    """Halt the VM ``name`` (the filter shows it alone), confirmed; then `q`: the question."""
    await wait_until(lambda: any(vm.name == name for vm in app.main.table.all_vms()), limit=30)
    await pilot.press("slash", *name, "enter", "h")
    await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.press("y")
    await wait_until(lambda: "halt requested on 1 VM" in log_text(app))
    await pilot.press("q")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmScreen), "quit at once with a halt under way"
    return app.screen


async def test_quit_and_leave_a_halt_records_it_abandoned(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab(actions=ActionSettings(halt_timeout=600.0))
    uuid = outside.define("deaf", start=True).UUIDString()
    name = (await watch.vm_in(uuid, VMState.RUNNING)).name
    app = VMManagerApp(lab=lab, clock=lambda: FIXED_TIME, log_visible=False)
    async with app.run_test(size=(80, 24)) as pilot:
        question = await halt_then_quit(app, pilot, name)
        assert question.title_text == "1 action in progress: wait, or quit and leave it?"
        assert name in " ".join(line.plain for line in question.lines)
        assert [str(b.label) for b in question.query("Button")] == ["Wait (n)", "Quit and leave it (y)"]
        await pilot.press("y")
        assert app.return_code == 0  # quit now
    [entry] = halts(lab, name)
    assert (entry.outcome, entry.source) == ("abandoned", "tui")
    assert entry.detail == "left unfinished: the operator quit before it ended"
    assert outside.state(uuid) == VMState.RUNNING  # left as it was: no forced power-off came


async def test_wait_quits_once_the_halt_has_ended(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab(actions=ActionSettings(halt_timeout=2.0))
    uuid = outside.define("deaf", start=True).UUIDString()
    name = (await watch.vm_in(uuid, VMState.RUNNING)).name
    app = VMManagerApp(lab=lab, clock=lambda: FIXED_TIME, log_visible=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await halt_then_quit(app, pilot, name)
        await pilot.press("n")  # wait
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.return_code is None  # still here, waiting
        await wait_until(lambda: app.return_code is not None, limit=60)  # quit by itself
    [entry] = halts(lab, name)
    assert (entry.outcome, entry.detail) == ("ok", "destroyed after 2 s: the guest ignored the ACPI shutdown")
    assert outside.state(uuid) == VMState.SHUTOFF
