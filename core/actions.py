"""Lifecycle actions on one VM or many, with bounded concurrency and a result per VM.

Runs on the core loop. A bulk action holds a slot of the semaphore only while it makes a libvirt
call; waiting for a guest to stop holds none, so twenty VMs that ignore ACPI take about one
timeout, not twenty.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from core import domainxml, images, snapshots, unattend
from core.errors import ActionFailed, VMManagerError, from_libvirt
from core.folders import WINDOWS_SEED, remove_vm_folder, vm_folder
from core.host import Host
from core.model import VM, VMState
from core.snapshots import check_snapshot_name

log = logging.getLogger(__name__)


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
class _Run:
    """What one bulk run shares: the slots, the halt timeout, and a per-host disk usage map."""

    slots: asyncio.Semaphore
    halt_timeout: float
    protected_dirs: tuple[str, ...]
    vm_root: Path | None = None  # provisioning's student folders: a deleted VM's folder goes too
    snapshot: str = ""
    disk_users: dict[str, tuple[dict[str, set[str]], list[str]]] = field(default_factory=dict)


async def run_bulk(hosts: Mapping[str, Host], action: Action | str, vms: Iterable[VM], *,
                   concurrency: int = 8, halt_timeout: float = 60.0,
                   protected_dirs: Iterable[Path] = (), vm_root: Path | None = None,
                   snapshot: str = "") -> list[ActionResult]:
    """Run ``action`` on every VM; one failure does not stop the others. Results keep input order."""
    action = Action(action)
    if action.needs_name:
        check_snapshot_name(snapshot)
    run = _Run(asyncio.Semaphore(concurrency), halt_timeout,
               tuple(str(p) for p in protected_dirs), vm_root, snapshot)
    targets = list(vms)
    return list(await asyncio.gather(*(_perform(hosts, vm, action, run) for vm in targets)))


async def _perform(hosts: Mapping[str, Host], vm: VM, action: Action, run: _Run) -> ActionResult:
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
    if host is not None:
        host.inventory.expect(vm.key, action.value, within=2.0)  # events trailing the last call
    log.log(logging.INFO if ok else logging.WARNING, "%s %s on %s: %s", action.value,
            "done" if ok else "FAILED", vm.name, message)
    return ActionResult(vm, action.value, ok, message)


async def _call(host: Host, run: _Run, method: str, vm: VM, *args: object) -> None:
    """One libvirt call on the domain, holding a slot."""
    async with run.slots:
        await host.call(lambda: getattr(host.domain(vm.uuid), method)(*args))


def _current(host: Host, vm: VM) -> VM:
    return host.inventory.get(vm.key) or vm


async def _start(host: Host, vm: VM, run: _Run) -> str:
    state = _current(host, vm).state
    if state == VMState.PAUSED:
        raise ActionFailed("it is paused: resume it instead")
    if state.is_active:
        return "already running"
    await _call(host, run, "create", vm)
    return "started"


async def _halt(host: Host, vm: VM, run: _Run) -> str:
    stopped = host.inventory.watch(vm.key, lambda v: v is None or not v.state.is_active)
    try:
        async with run.slots:
            pressed = await host.call(_press_power_button, host, vm.uuid)
        if not pressed:
            return "already shut off"
        try:
            await asyncio.wait_for(asyncio.shield(stopped), run.halt_timeout)
            return "halted"
        except TimeoutError:
            pass
        try:
            await _call(host, run, "destroy", vm)
        except ActionFailed:
            if not _current(host, vm).state.is_active:  # it stopped just now, after all
                return "halted"
            raise
        return f"destroyed after {run.halt_timeout:g} s: the guest ignored the ACPI shutdown"
    finally:
        host.inventory.unwatch(stopped)


def _press_power_button(host: Host, uuid: str) -> bool:
    """ACPI shutdown, reading libvirt's own state first (the inventory may lag by an event)."""
    dom = host.domain(uuid)
    state = VMState.from_libvirt(dom.state()[0])
    if not state.is_active:
        return False
    if state == VMState.PAUSED:
        dom.resume()  # a paused guest cannot see the button
    dom.shutdown()
    return True


async def _destroy(host: Host, vm: VM, run: _Run) -> str:
    if not _current(host, vm).state.is_active:
        return "already shut off"
    await _call(host, run, "destroy", vm)
    return "destroyed"


async def _reboot(host: Host, vm: VM, run: _Run) -> str:
    if _current(host, vm).state != VMState.RUNNING:
        raise ActionFailed(f"it is {_current(host, vm).state}, not running")
    await _call(host, run, "reboot", vm, 0)
    return "rebooting"


async def _suspend(host: Host, vm: VM, run: _Run) -> str:
    state = _current(host, vm).state
    if state == VMState.PAUSED:
        return "already paused"
    if state != VMState.RUNNING:
        raise ActionFailed(f"it is {state}, not running")
    await _call(host, run, "suspend", vm)
    return "paused"


async def _resume(host: Host, vm: VM, run: _Run) -> str:
    state = _current(host, vm).state
    if state == VMState.PMSUSPENDED:
        await _call(host, run, "pMWakeup", vm, 0)
        return "woken up"
    if state != VMState.PAUSED:
        return "already running" if state == VMState.RUNNING else f"not paused (it is {state})"
    await _call(host, run, "resume", vm)
    return "resumed"


async def _delete(host: Host, vm: VM, run: _Run) -> str:
    if _current(host, vm).state.is_active:
        await _call(host, run, "destroy", vm)
    async with run.slots:
        usage = run.disk_users.get(host.name)
        if usage is None:
            usage = run.disk_users[host.name] = await host.call(_disk_users, host)
        users, unreadable = usage
        xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        owned = _owned_disks(domainxml.parse(xml), vm.uuid, users, run.protected_dirs)
        await host.call(_undefine, host, vm.uuid)
        if unreadable:
            notes = [f"kept {path}: cannot tell whether {unreadable[0]} is backed by it"
                     for path in owned]
        else:
            notes = [await host.call(_remove_storage, host, path) for path in owned]
    removed = [n for n in notes if n.startswith("removed")]
    kept = [n for n in notes if not n.startswith("removed")]
    folder = vm_folder(run.vm_root, vm.meta.owner, vm.name) if run.vm_root and not host.remote else None
    if folder is not None and not any(str(folder) in note for note in kept):
        await asyncio.to_thread(remove_vm_folder, folder)
        kept.append(f"removed {folder}")
    summary = f"deleted, {len(removed)} disk{'s' if len(removed) != 1 else ''} removed"
    return summary + (f" ({'; '.join(kept)})" if kept else "")


async def _reset(host: Host, vm: VM, run: _Run) -> str:
    """A fresh overlay on the same template (the exercise starts again); running VMs restart."""
    was_active = _current(host, vm).state.is_active
    if was_active:
        await _call(host, run, "destroy", vm)
    async with run.slots:
        xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        overlays = [d.source for d in domainxml.parse(xml).disks
                    if d.device == "disk" and not d.readonly and d.source_type == "file" and d.source
                    and not host.remote and images.backing_file(d.source)]
        if not overlays:
            raise ActionFailed("it has no disk made from a template (no overlay) to reset")
        await host.call(snapshots.forget_all, host.domain(vm.uuid))  # they lived in the old overlay
        for path in overlays:
            await asyncio.to_thread(images.renew_overlay, Path(path))
        answers = Path(overlays[0]).parent / WINDOWS_SEED
        if answers.is_file():  # a Windows VM: its fresh disk needs the answer file again
            await host.call(lambda: unattend.insert_answer_file(host.domain(vm.uuid), answers))
    if was_active:
        await _call(host, run, "create", vm)
    return "reset to its template" + (" and started again" if was_active else "")


async def _snapshot(host: Host, vm: VM, run: _Run) -> str:
    async with run.slots:
        return await host.call(snapshots.take, host.domain(vm.uuid), run.snapshot)


async def _revert(host: Host, vm: VM, run: _Run) -> str:
    async with run.slots:
        return await host.call(snapshots.revert, host.domain(vm.uuid), run.snapshot)


def _disk_users(host: Host) -> tuple[dict[str, set[str]], list[str]]:
    """Every disk path on the host (and every backing file below it), with the UUIDs that use it.

    Also the local images whose chain could not be read: while there are any, no disk can be
    shown to be unused, so none is removed.
    """
    users: dict[str, set[str]] = {}
    unreadable: list[str] = []
    for dom in host.connection().listAllDomains(0):
        with contextlib.suppress(libvirt.libvirtError):
            info = domainxml.parse(dom.XMLDesc(0))
            for disk in info.disks:
                chain = [disk.source, *disk.backing]
                if disk.source and disk.source_type == "file" and not host.remote:
                    try:
                        chain += images.backing_chain(disk.source)
                    except images.UnreadableImage:
                        unreadable.append(disk.source)
                for path in chain:
                    if path:
                        users.setdefault(os.path.normpath(path), set()).add(info.uuid)
    return users, unreadable


def _owned_disks(info: domainxml.DomainInfo, uuid: str, users: Mapping[str, set[str]],
                 protected: tuple[str, ...]) -> list[str]:
    """The disks only this VM uses: writable, unshared, not a template, nobody's backing file."""
    owned = []
    for disk in info.disks:
        if disk.device != "disk" or disk.readonly or disk.shareable or not disk.source:
            continue
        if users.get(os.path.normpath(disk.source), {uuid}) - {uuid}:
            continue  # another domain uses it, directly or as a backing file
        if disk.source_type == "file" and _inside(disk.source, protected):
            continue
        owned.append(disk.source)
    return owned


def _inside(path: str, dirs: tuple[str, ...]) -> bool:
    resolved = Path(os.path.realpath(path))
    return any(resolved.is_relative_to(os.path.realpath(d)) for d in dirs)


def _undefine(host: Host, uuid: str) -> None:
    dom = host.domain(uuid)
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        dom.undefine()


def _remove_storage(host: Host, path: str) -> str:
    """Remove one disk: through its storage pool when it is in one, else as a local file."""
    conn = host.connection()
    try:
        conn.storageVolLookupByPath(path).delete(0)
        return f"removed {path}"
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_SUPPORT):
            return f"kept {path}: {from_libvirt(exc).message}"
    if host.remote:
        return f"kept {path}: not in a storage pool on the remote host"
    try:
        os.unlink(path)
    except FileNotFoundError:
        return f"{path} was already gone"
    except OSError as exc:
        return f"kept {path}: {exc.strerror}"
    return f"removed {path}"


_ACTIONS = {
    Action.START: _start, Action.HALT: _halt, Action.DESTROY: _destroy, Action.REBOOT: _reboot,
    Action.SUSPEND: _suspend, Action.RESUME: _resume, Action.DELETE: _delete, Action.RESET: _reset,
    Action.SNAPSHOT: _snapshot, Action.REVERT: _revert,
}
