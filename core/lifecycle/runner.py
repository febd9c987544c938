"""Lifecycle actions on one VM or many, with bounded concurrency and a result per VM.

Runs on the core loop. A bulk action holds a slot of the semaphore only while it makes a libvirt
call; waiting for a guest to stop holds none, so twenty VMs that ignore ACPI take about one
timeout, not twenty. Whatever one VM's action raises becomes that VM's failure, with its reason
(and, for an unexpected error, its traceback in the log): the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

import libvirt

from core.errors import ActionFailed, VMManagerError, from_libvirt
from core.lifecycle import power, removal, snapshots
from core.lifecycle.actions import Action, ActionResult, Run
from core.lifecycle.ownership import Protected
from core.lifecycle.snapshots import check_snapshot_name
from core.model import VM
from core.records.requests import Request
from core.virt.connection import Host

log = logging.getLogger(__name__)


async def run_bulk(hosts: Mapping[str, Host], action: Action | str, vms: Iterable[VM], *,
                   concurrency: int = 8, halt_timeout: float = 60.0,
                   protected: Protected | None = None, vm_root: Path | None = None,
                   socket_dir: Path | None = None, snapshot: str = "",
                   approved: Sequence[Request] = (),
                   on_result: Callable[[ActionResult], None] | None = None) -> list[ActionResult]:
    """Run ``action`` on every VM; one failure does not stop the others. Results keep input order;
    ``on_result`` hears each VM's as it comes (on the core loop). ``approved``: the approved
    requests, which a revert re-applies when they came after the snapshot."""
    action = Action(action)
    if action.needs_name:
        check_snapshot_name(snapshot)
    run = Run(asyncio.Semaphore(concurrency), halt_timeout, protected or Protected(), vm_root, socket_dir,
              snapshot, approved)

    async def one(vm: VM) -> ActionResult:
        result = await _perform(hosts, vm, action, run)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(vm) for vm in vms)))


async def _perform(hosts: Mapping[str, Host], vm: VM, action: Action, run: Run) -> ActionResult:
    host = hosts.get(vm.host)
    try:
        if host is None:
            raise ActionFailed(f"unknown host {vm.host!r}")
        host.inventory.expect(vm.key, action.value)
        message = await _ACTIONS[action](host, vm, run)
        ok = True
    except VMManagerError as exc:
        ok, message = False, exc.message
    except libvirt.libvirtError as exc:
        ok, message = False, from_libvirt(exc).message
    except Exception as exc:  # a bug, or an error nobody foresaw: this VM's failure, not the run's
        log.error("%s on %s: unexpected error", action.value, vm.name, exc_info=exc)
        ok, message = False, f"unexpected error: {type(exc).__name__}: {exc} (details in the log)"
    if host is not None:
        host.inventory.expect(vm.key, action.value, within=2.0)  # events trailing the last call
    log.log(logging.INFO if ok else logging.WARNING, "%s %s on %s: %s", action.value,
            "done" if ok else "FAILED", vm.name, message)
    return ActionResult(vm, action.value, ok, message)


async def _snapshot(host: Host, vm: VM, run: Run) -> str:
    async with run.slots:
        return await host.call(snapshots.take, host.domain(vm.uuid), run.snapshot)


async def _revert(host: Host, vm: VM, run: Run) -> str:
    async with run.slots:
        mine = [request for request in run.approved if request.vm_uuid == vm.uuid]
        message = await host.call(snapshots.revert, host.domain(vm.uuid), run.snapshot, mine)
    await host.refresh(vm.uuid)  # what was re-applied came after the events of the revert
    return message


_ACTIONS: dict[Action, Callable[[Host, VM, Run], Awaitable[str]]] = {
    Action.START: power.start, Action.HALT: power.halt, Action.DESTROY: power.destroy,
    Action.REBOOT: power.reboot, Action.SUSPEND: power.suspend, Action.RESUME: power.resume,
    Action.DELETE: removal.delete, Action.RESET: removal.reset, Action.SNAPSHOT: _snapshot,
    Action.REVERT: _revert,
}
