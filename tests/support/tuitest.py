"""Helpers shared by the TUI tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from core.metadata import LabMeta
from core.model import VM, VMState
from core.testing import testdriver
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
