"""The TUI shows outside text through the one rule of ``core.text``: bidi overrides too.

A name ``rtl`` U+202E ``gpj.exe`` would read "rtlexe.jpg" where the override acts; C1 controls
(U+009B: CSI) would reach the terminal. Both read escaped in the table, the event log, the
notifications (every one: the app's ``notify`` applies the rule) and the detail view.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tuitest import FIXED_TIME, log_text, notifications, vm_named, wait_until

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.records.requests import Kind, RequestStore
from core.testing import testdriver
from tui.app import VMManagerApp
from tui.screens.detail import DetailScreen

SPOOF = "rtl\u202egpj.exe"
SHOWN = "rtl\\u202egpj.exe"
RAW = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x85\x9b"


@pytest.fixture
def lab_uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec(SPOOF, VMState.SHUTOFF, 1, 512, LabMeta("mal\u2067lory", "net\x9b101")),
        testdriver.Spec("net101-alice", VMState.RUNNING, 1, 512, LabMeta("alice", "net101")),
    ])


def no_raw(text: str) -> bool:
    return not set(text) & set(RAW)


async def test_a_bidi_name_reads_escaped_everywhere(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(140, 30)) as pilot:
        await pilot.pause()
        table = app.main.table
        spoof = vm_named(app, SPOOF)
        row = table.row_text(table.visible_vms().index(spoof))
        assert SHOWN in row
        assert "mal\\u2067lory" in row
        assert no_raw(row)
        table.move_to(spoof.key)
        await pilot.press("s")
        await wait_until(lambda: f"start {SHOWN}: started" in log_text(app))
        await wait_until(lambda: any(SHOWN in n for n in notifications(app)))
        assert no_raw(log_text(app))
        assert all(no_raw(n) for n in notifications(app))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        summary = str(screen.query_one("#detail-summary").render())
        assert SHOWN in summary
        assert "net\\x9b101" in summary
        assert no_raw(summary)


async def test_a_request_naming_a_bidi_vm_is_told_escaped(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new-request notification puts the VM's name in its message unescaped: notify escapes it."""
    monkeypatch.setattr("tui.app.REQUESTS_INTERVAL", 0.1)
    store = RequestStore(lab.settings.database_path)
    try:
        app = VMManagerApp(lab=lab, clock=lambda: FIXED_TIME)
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause(0.3)
            made = store.create("alice", Kind.VCPUS, vm_uuid=testdriver.Spec(SPOOF).domain_uuid,
                                vm_name=SPOOF, amount=3, reason="threads")
            await wait_until(lambda: any(n.startswith("New request|") for n in notifications(app)))
            told = [n for n in notifications(app) if n.startswith("New request|")]
            assert told == [f"New request|#{made.id} alice: 3 vCPUs for {SHOWN} — ctrl+r to answer"]
    finally:
        store.close()
