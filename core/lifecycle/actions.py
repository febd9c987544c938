"""What a lifecycle action is: its name, its result, and what one bulk run of it shares.

The actions themselves are in :mod:`core.lifecycle.power` (start, halt, destroy, reboot, suspend,
resume), :mod:`core.lifecycle.removal` (delete, reset) and :mod:`core.lifecycle.snapshots`;
:mod:`core.lifecycle.runner` runs one of them on many VMs.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.lifecycle.ownership import Protected
from core.model import VM
from core.records.requests import Request
from core.virt.connection import Host


class Action(enum.StrEnum):
    START = "start"
    HALT = "halt"
    DESTROY = "destroy"
    REBOOT = "reboot"
    SUSPEND = "suspend"
    RESUME = "resume"
    DELETE = "delete"
    RESET = "reset"
    SNAPSHOT = "snapshot"
    REVERT = "revert"

    @property
    def destructive(self) -> bool:
        """Actions that may lose a student's work, and so ask for confirmation first."""
        return self in (Action.HALT, Action.DESTROY, Action.REBOOT, Action.DELETE, Action.RESET,
                        Action.REVERT)

    @property
    def needs_name(self) -> bool:
        """Actions on a named snapshot."""
        return self in (Action.SNAPSHOT, Action.REVERT)


@dataclass(frozen=True, slots=True)
class ActionResult:
    vm: VM
    action: str
    ok: bool
    message: str


@dataclass
class Run:
    """What one bulk run shares: the slots, the halt timeout, and a per-host disk usage map."""

    slots: asyncio.Semaphore
    halt_timeout: float
    protected: Protected
    vm_root: Path | None = None  # provisioning's student folders: a deleted VM's folder goes too
    socket_dir: Path | None = None  # provisioning's VNC sockets: a deleted VM's socket goes too
    snapshot: str = ""
    approved: Sequence[Request] = ()  # approved requests (a revert puts back those it would undo)
    disk_users: dict[str, tuple[dict[str, set[str]], list[str]]] = field(default_factory=dict)


async def call(host: Host, run: Run, method: str, vm: VM, *args: object) -> None:
    """One libvirt call on the domain, holding a slot."""
    async with run.slots:
        await host.call(lambda: getattr(host.domain(vm.uuid), method)(*args))


def current(host: Host, vm: VM) -> VM:
    return host.inventory.get(vm.key) or vm
