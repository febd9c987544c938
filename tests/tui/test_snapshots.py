"""SVG snapshots of the demo lab (no clocks: the demo has no uptimes and the log clock is fixed).

Regenerate after a deliberate change, and look at the SVGs before committing them:
``.venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

from support.tuitest import FIXED_TIME, wait_until
from textual.pilot import Pilot

from core.lab import DEMO_URI
from core.settings import Settings
from tui.app import VMManagerApp
from tui.screens.detail import DetailScreen


def demo_app() -> VMManagerApp:
    """Fixed, never-created directories: no path of this machine can show in a snapshot."""
    settings = Settings(config_dir=Path("/nonexistent/vm-manager/config"),
                        data_dir=Path("/nonexistent/vm-manager/data"))
    return VMManagerApp(settings, DEMO_URI, clock=lambda: FIXED_TIME)


async def loaded(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, VMManagerApp)
    await wait_until(lambda: app.lab is not None and len(app.main.table.visible_vms()) == 24)
    await pilot.pause()


def test_main_60x20(snap_compare) -> None:
    """Narrow: VIEW, UPTIME, IP and VCPU give way; names, owners and classes show whole."""
    assert snap_compare(demo_app(), terminal_size=(60, 20), run_before=loaded)


def test_main_80x24(snap_compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=loaded)


def test_main_200x50(snap_compare) -> None:
    """Wide: the template and the creation day show too, and the gaps widen."""
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=loaded)


def test_main_160x50_with_event_log(snap_compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(160, 50), run_before=loaded)


def test_marked_and_filtered_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"class:net101", "enter", "space", "space", "o")

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def test_confirm_dialog_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("space", "space", "down", "space", "h")

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def test_detail_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("down", "down", "enter")
        screen = pilot.app.screen
        assert isinstance(screen, DetailScreen)
        await wait_until(lambda: screen.info is not None and screen.snapshots is not None)
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def test_help_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)
