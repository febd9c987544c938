"""Helpers shared by the TUI tests."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime

from core.metadata import LabMeta
from core.model import VM, VMState
from core.settings import Settings
from core.testing import testdriver
from core.testing.terminal import Pane, pane
from support.cli import BARE_ENV, settings_env
from tui.app import VMManagerApp

FIXED_TIME = datetime(2026, 11, 24, 9, 0, 0)
SIZE = (80, 24)
HOSTILE_BOLD = "[b]bold"
HOSTILE_CLICK = "[@click=app.quit]x"


def lab_specs() -> list[testdriver.Spec]:
    """A small lab: two classes, mixed states, hostile names, and one VM with disks."""
    return [
        testdriver.Spec("net101-alice", VMState.RUNNING, 2, 2048,
                        LabMeta("alice", "net101", "debian12", "2026-09-01T08:00:00Z"),
                        disks=("/var/lib/libvirt/images/net101-alice.qcow2",)),
        testdriver.Spec("net101-bob", VMState.RUNNING, 2, 2048, LabMeta("bob", "net101", "debian12")),
        testdriver.Spec("net101-chloe", VMState.SHUTOFF, 2, 2048, LabMeta("chloe", "net101")),
        testdriver.Spec("net101-david", VMState.PAUSED, 2, 2048, LabMeta("david", "net101")),
        testdriver.Spec("sys202-manon", VMState.RUNNING, 4, 4096, LabMeta("manon", "sys202")),
        testdriver.Spec("sys202-nathan", VMState.CRASHED, 4, 4096, LabMeta("nathan", "sys202")),
        testdriver.Spec(HOSTILE_BOLD, VMState.RUNNING, 1, 512, LabMeta("mallory", "net101")),
        testdriver.Spec(HOSTILE_CLICK, VMState.SHUTOFF, 1, 512, LabMeta("mallory", "sys202")),
    ]


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait, without pressing anything, until ``predicate`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def vm_named(app: VMManagerApp, name: str) -> VM:
    return next(vm for vm in app.main.table.all_vms() if vm.name == name)


def shown_names(app: VMManagerApp) -> list[str]:
    return [vm.name for vm in app.main.table.visible_vms()]


def log_text(app: VMManagerApp) -> str:
    return app.main.event_log.text


def notifications(app: VMManagerApp) -> list[str]:
    return [f"{n.title}|{n.message}" for n in app._notifications]


@contextlib.contextmanager
def tui_in_pane(settings: Settings, uri: str, size: tuple[int, int] = SIZE) -> Iterator[Pane]:
    """``vm-manager -c URI`` as an operator runs it, in a real tmux pane of ``size``: keys sent
    with ``Pane.keys(..., literal=True)`` reach it in one write, as over a laggy SSH link."""
    env = {**BARE_ENV, **settings_env(settings)}
    with pane([sys.executable, "-m", "tui.cli", "-c", uri], *size, env=env) as terminal:
        yield terminal


def status_line(screen: str) -> str:
    """The line under the table (the filter prompt and the counts), from a captured screen."""
    lines = screen.rstrip("\n").split("\n")
    return lines[-2] if len(lines) >= 2 else ""
