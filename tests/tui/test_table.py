"""The live table: columns, colours, literal names, live updates without a keypress."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from rich.color import Color
from support.tuitest import (
    HOSTILE_BOLD,
    HOSTILE_CLICK,
    SIZE,
    log_text,
    notifications,
    shown_names,
    vm_named,
    wait_until,
)

from core.model import Change, ConnState, Figures, HostFigures, HostStatus, Update, VMState
from tui.widgets.header import LabHeader
from tui.widgets.vmtable import VMTable


async def test_table_lists_every_vm_with_its_columns(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        assert sorted(shown_names(app)) == sorted(vm.name for vm in lab.vms())
        assert table.columns == ["name", "state", "owner", "class", "ip", "vcpus", "memory", "cpu",
                                 "uptime", "viewers"]  # one host: no host column
        alice = table.visible_vms().index(vm_named(app, "net101-alice"))
        row = table.row_text(alice).split()
        # the test driver reports no figures: dashes, never invented numbers
        assert row == ["net101-alice", "running", "alice", "net101", "—", "2", "2G", "—", "—", "—"]


async def test_rows_are_coloured_by_state(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        table.move_to(vm_named(app, "net101-chloe").key)  # keep the cursor off the rows we check

        def colour(name: str) -> tuple[Color | None, bool]:
            y = table.visible_vms().index(vm_named(app, name)) + 1
            style = table.render_line(y)._segments[1].style
            assert style is not None
            return style.color, bool(style.dim)

        assert colour("net101-alice")[0] == Color.parse("green")
        assert colour("net101-david")[0] == Color.parse("yellow")
        assert colour("sys202-nathan")[0] == Color.parse("red")
        assert colour(HOSTILE_CLICK)[1] is True  # shut off: dim


async def test_hostile_names_are_shown_literally(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        texts = [table.row_text(i) for i in range(len(table.visible_vms()))]
        assert any(HOSTILE_BOLD in t for t in texts)
        assert any(HOSTILE_CLICK in t for t in texts)
        # click right on the would-be link: nothing but a cursor move happens
        index = table.visible_vms().index(vm_named(app, HOSTILE_CLICK))
        await pilot.click(VMTable, offset=(4, index + 1))
        await pilot.pause()
        assert app.is_running
        assert table.cursor_vm is not None
        assert table.cursor_vm.name == HOSTILE_CLICK
        # a notification and the event log name it literally too
        await pilot.press("s")
        await wait_until(lambda: any(HOSTILE_CLICK in n for n in notifications(app)))
        await wait_until(lambda: f"start {HOSTILE_CLICK}: started" in log_text(app))
        assert app.is_running


async def test_a_state_change_shows_without_a_keypress(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        bob = vm_named(app, "net101-bob")
        index = app.main.table.visible_vms().index(bob)
        assert "running" in app.main.table.row_text(index)
        results = await lab.act("destroy", [bob])  # from outside the UI, on the app's own lab
        assert results[0].ok
        await wait_until(lambda: vm_named(app, "net101-bob").state == VMState.SHUTOFF)
        await pilot.pause()
        assert "shutoff" in app.main.table.row_text(index)
        assert "net101-bob  stopped  (destroy)" in log_text(app)  # what changed, and which action
        header = app.main.query_one(LabHeader)
        await wait_until(lambda: "3 running" in header.text and "3 shutoff" in header.text)


async def test_a_second_host_adds_the_host_column(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        other = dataclasses.replace(vm_named(app, "net101-alice"), host="lab2", uuid="x-1",
                                    name="lab2-vm")
        app._coalescer.push(Update((Change("added", other, None, "appeared"),)))
        await wait_until(lambda: "host" in app.main.table.columns)
        assert "lab2" in app.main.table.row_text(shown_names(app).index("lab2-vm"))


async def test_stats_update_only_their_cells_and_feed_the_history(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        alice = vm_named(app, "net101-alice")
        figures = Figures(cpu_percent=42.5, mem_used_mib=1024, disk_read_bps=10.0, disk_write_bps=5.0,
                          net_rx_bps=100.0, net_tx_bps=None)
        stats = dataclasses.replace(alice, figures=figures)
        app._coalescer.push(Update((Change("changed", stats, None, "stats"),)))
        await wait_until(lambda: vm_named(app, "net101-alice").figures.cpu_percent == 42.5)
        row = app.main.table.row_text(shown_names(app).index("net101-alice"))
        assert "42.5" in row
        assert "1G/2G" in row
        series = app.history.get(alice.key)
        assert list(series.cpu) == [42.5]
        assert list(series.disk) == [15.0]
        assert list(series.network) == [100.0]
        assert "stats" not in log_text(app)  # figures are not events


async def test_a_disconnected_host_shows_at_once(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        header = app.main.query_one(LabHeader)
        assert not header.has_class("-disconnected")
        status = lab.host_statuses()[0]
        lost = HostStatus(status.name, status.uri, ConnState.DISCONNECTED, False,
                          "lost: keepalive timed out; reconnecting", HostFigures())
        app._coalescer.push(Update((), (lost,)))
        await wait_until(lambda: header.has_class("-disconnected"))
        text = header.text
        assert "DISCONNECTED" in text
        assert "keepalive timed out" in text
        assert "disconnected: lost: keepalive timed out" in log_text(app)


async def test_host_figures_show_when_known(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        header = app.main.query_one(LabHeader)
        assert "CPU —  MEM —" in header.text
        status = dataclasses.replace(lab.host_statuses()[0],
                                     figures=HostFigures(12.5, 16384.0, 4096.0))
        app._coalescer.push(Update((), (status,)))
        await wait_until(lambda: "CPU 12.5%  MEM 4G/16G" in header.text)


def test_tui_never_imports_libvirt() -> None:
    root = Path(__file__).resolve().parents[2] / "tui"
    importing = re.compile(r"^\s*(import|from)\s+libvirt", re.MULTILINE)
    offenders = [p for p in root.rglob("*.py") if importing.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
