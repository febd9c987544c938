"""Detail screen, help screen, the connection itself (opening, failing, closing)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

from support.tuitest import FIXED_TIME, SIZE, notifications, vm_named, wait_until
from textual.binding import Binding
from textual.widgets import Sparkline

from core.lab import Lab
from core.model import Change, ConnState, Figures, Update
from core.settings import Settings
from tui.app import VMManagerApp
from tui.screens.detail import DetailScreen
from tui.screens.error import ConnectErrorScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen


def static_text(screen, selector: str) -> str:  # noqa: ANN001
    return str(screen.query_one(selector).render())


async def open_detail(app, pilot, name: str):  # noqa: ANN001, ANN201
    """Move to VM ``name``, press enter; returns the VM and the detail screen."""
    await pilot.pause()
    vm = vm_named(app, name)
    app.main.table.move_to(vm.key)
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, DetailScreen)
    return vm, screen


async def test_enter_opens_the_detail_screen(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        alice, screen = await open_detail(app, pilot, "net101-alice")
        await wait_until(lambda: screen.info is not None)
        await pilot.pause()
        summary = static_text(screen, "#detail-summary")
        for expected in ("net101-alice", "running", "alice", "net101", "debian12", "2026-09-01T08:00:00Z",
                         alice.uuid):
            assert expected in summary
        devices = static_text(screen, "#detail-devices")
        assert "/var/lib/libvirt/images/net101-alice.qcow2" in devices
        assert "vda" in devices
        assert "Interfaces" in devices and "Graphics" in devices  # noqa: PT018
        assert "no CPU, memory or I/O figures" in static_text(screen, "#detail-nofigures")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_detail_sparklines_follow_the_stats_updates(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        alice, screen = await open_detail(app, pilot, "net101-alice")
        for cpu in (10.0, 30.0, 20.0):
            stats = dataclasses.replace(alice, figures=Figures(cpu, 1500.0, 1000.0, 0.0, 2048.0, 0.0))
            app._coalescer.push(Update((Change("changed", stats, None, "stats"),)))
            await pilot.pause(0.05)
        await wait_until(lambda: list(screen.query_one("#spark-cpu", Sparkline).data or []) == [10, 30, 20])
        assert list(screen.query_one("#spark-memory", Sparkline).data or []) == [1500.0] * 3
        assert list(screen.query_one("#spark-network", Sparkline).data or []) == [2048.0] * 3
        assert "20.0%" in static_text(screen, "#label-cpu")
        assert "2.0K/s" in static_text(screen, "#label-network")
        # a state change arrives live too
        await lab.act("destroy", [alice])
        await wait_until(lambda: "shutoff" in static_text(screen, "#detail-summary"))


async def test_help_lists_every_binding(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(100, 60)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        text = static_text(screen, "#help-text")
        for _group, bindings in app.binding_groups():
            for binding in Binding.make_bindings(bindings):
                assert binding.id, f"{binding.action} has no id: it could not be remapped"
                assert binding.id in text
                assert binding.description in text
                assert app.get_key_display(binding) in text
        assert "state:running" in text and "re:" in text  # noqa: PT018 - the filter syntax
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_the_app_opens_the_lab_itself_and_closes_it(settings: Settings, lab_uri: str) -> None:
    app = VMManagerApp(settings, lab_uri, clock=lambda: FIXED_TIME)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.lab is not None and len(app.main.table.visible_vms()) == 8)
        await pilot.pause()
        lab = app.lab
        assert lab is not None
        assert not lab.demo
    assert lab.host_statuses()[0].state == ConnState.DISCONNECTED  # closed on exit
    assert app.lab is None


async def test_an_unreachable_hypervisor_shows_an_error_screen(settings: Settings,
                                                               tmp_path: Path) -> None:
    uri = f"test://{tmp_path}/missing.xml"
    app = VMManagerApp(settings, uri, clock=lambda: FIXED_TIME)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: isinstance(app.screen, ConnectErrorScreen))
        screen = app.screen
        assert "Hypervisor unreachable" in static_text(screen, "#error-title")
        assert "cannot connect to" in static_text(screen, "#error-message")
        assert uri in static_text(screen, "#error-uri")
        assert app.is_running
        # fix the cause, then retry from the error screen
        from support.tuitest import lab_specs

        from core.testing import testdriver

        testdriver.write(tmp_path / "missing.xml", lab_specs())
        await pilot.press("r")
        await wait_until(lambda: app.lab is not None and len(app.main.table.visible_vms()) == 8)
        assert isinstance(app.screen, MainScreen)


async def test_a_keymap_clash_is_reported(make_app, settings: Settings) -> None:
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    settings.keymap_path.write_text('[keymap]\nhalt = "s"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        clash = [n for n in notifications(app) if n.startswith("Keymap clash|")]
        assert clash == ["Keymap clash|These bindings lost their key to a remapped one: start"]


async def test_quitting_while_connecting_still_closes_the_lab(settings: Settings, lab_uri: str,
                                                              monkeypatch) -> None:  # noqa: ANN001
    opened: list[Lab] = []
    real_open = Lab.open
    # The connection completes only once the test has seen "connecting" (a threading.Event: the
    # open runs on the core's loop, not the test's).
    gate = threading.Event()

    async def slow_open(settings: Settings, uri: str | None = None) -> Lab:
        await asyncio.to_thread(gate.wait, 30)
        lab = await real_open(settings, uri)
        opened.append(lab)
        return lab

    monkeypatch.setattr(Lab, "open", slow_open)
    app = VMManagerApp(settings, lab_uri, clock=lambda: FIXED_TIME)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.05)
        assert "connecting to" in app.main.query_one("#header").text
        gate.set()
    try:  # a deadline for a loaded machine, not a speed check
        await wait_until(lambda: bool(opened)
                         and opened[0].host_statuses()[0].state == ConnState.DISCONNECTED, limit=20.0)
    except AssertionError:
        raise AssertionError(f"the lab opened after quitting was not closed: {opened}, "
                             f"{[lab.host_statuses() for lab in opened]}") from None
