"""Lifecycle actions on one VM or many, with bounded concurrency and a result per VM.

Runs on the core loop. A bulk action holds a slot of the semaphore only while it makes a libvirt
call; waiting for a guest to stop holds none, so twenty VMs that ignore ACPI take about one
timeout, not twenty. Whatever one VM's action raises becomes that VM's failure, with its reason
(and, for an unexpected error, its traceback in the log): the others go on.

Delete removes a VM's storage only when it is provably that VM's alone: disks no other domain
uses (directly or as a backing file), never a template's file or anything in the template folder
(:class:`Protected`), the student folder only when its marker names this VM
(:func:`core.storage.folders.vm_folder`), and nothing on this machine at all for a host whose files are
not ours (``Host.files_local``: a remote host, libvirt's test driver).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from core.errors import ActionFailed, VMManagerError, domain_name, from_libvirt
from core.lifecycle import snapshots
from core.lifecycle.snapshots import check_snapshot_name
from core.model import VM, VMState
from core.names import USERNAME, VM_NAME
from core.provision.guests import windows as unattend
from core.storage import images
from core.storage.folders import WINDOWS_SEED, remove_vm_folder, remove_vnc_socket, vm_folder, vnc_socket
from core.virt import domainxml
from core.virt.connection import Host

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


@dataclass(frozen=True)
class Protected:
    """What delete never removes: the template folder and every file templates.toml declares.

    Paths are compared resolved (symlinks followed), so no other spelling of a template's path
    gets past. ``problem`` says why the templates could not be read: then no disk can be told
    apart from a template's, and delete refuses, before changing anything, every VM that has a
    disk it would remove.
    """

    dirs: tuple[str, ...] = ()
    files: frozenset[str] = frozenset()
    problem: str = ""

    @classmethod
    def of(cls, dirs: Iterable[Path], files: Iterable[Path] = (), problem: str = "") -> Protected:
        return cls(tuple(os.path.realpath(d) for d in dirs),
                   frozenset(os.path.realpath(f) for f in files), problem)

    def covers(self, path: str) -> bool:
        resolved = os.path.realpath(path)
        return resolved in self.files or any(Path(resolved).is_relative_to(d) for d in self.dirs)


@dataclass
class _Run:
    """What one bulk run shares: the slots, the halt timeout, and a per-host disk usage map."""

    slots: asyncio.Semaphore
    halt_timeout: float
    protected: Protected
    vm_root: Path | None = None  # provisioning's student folders: a deleted VM's folder goes too
    socket_dir: Path | None = None  # provisioning's VNC sockets: a deleted VM's socket goes too
    snapshot: str = ""
    disk_users: dict[str, tuple[dict[str, set[str]], list[str]]] = field(default_factory=dict)


async def run_bulk(hosts: Mapping[str, Host], action: Action | str, vms: Iterable[VM], *,
                   concurrency: int = 8, halt_timeout: float = 60.0,
                   protected: Protected = Protected(), vm_root: Path | None = None,
                   socket_dir: Path | None = None, snapshot: str = "") -> list[ActionResult]:
    """Run ``action`` on every VM; one failure does not stop the others. Results keep input order."""
    action = Action(action)
    if action.needs_name:
        check_snapshot_name(snapshot)
    run = _Run(asyncio.Semaphore(concurrency), halt_timeout, protected, vm_root, socket_dir, snapshot)
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
    except Exception as exc:  # a bug, or an error nobody foresaw: this VM's failure, not the run's
        log.error("%s on %s: unexpected error", action.value, vm.name, exc_info=exc)
        ok, message = False, f"unexpected error: {type(exc).__name__}: {exc} (details in the log)"
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
    local = host.files_local
    storage = local or host.remote  # the test driver's storage is fictional: nothing of it goes
    users: Mapping[str, set[str]] = {}
    doubts: list[str] = []
    async with run.slots:
        if storage:
            usage = run.disk_users.get(host.name)
            if usage is None:
                usage = run.disk_users[host.name] = await host.call(_disk_users, host, local)
            users, doubts = usage
        xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    info = domainxml.parse(xml)

    def mine() -> tuple[list[Path], list[Path], list[str]]:
        # A folder marked as this VM's is ours on any host: a lab provisioned on the test driver
        # (the TUI's tests) has real folders, though the driver's own storage is fictional.
        marked, unmarked = _own_folders(run.vm_root, vm, info)
        owned = [path for path in _owned_disks(info, vm.uuid, users, run.protected)
                 if storage or _inside(path, marked)]
        return marked, unmarked, owned

    marked, unmarked, owned = await asyncio.to_thread(mine)
    if owned and run.protected.problem:  # refused before anything changes
        raise ActionFailed(f"not deleted: {run.protected.problem}; until it is fixed, its disks "
                           f"({', '.join(owned)}) cannot be told apart from a template's")
    async with run.slots:
        await host.call(_destroy_and_undefine, host, vm.uuid)
        if doubts:
            notes = [f"kept {path}: cannot tell whether another VM uses it ({doubts[0]})" for path in owned]
        else:
            notes = [await host.call(_remove_storage, host, path, local or _inside(path, marked))
                     for path in owned]
    removed = [n for n in notes if n.startswith("removed")]
    kept = [n for n in notes if not n.startswith("removed")]
    if local or marked:
        kept += await asyncio.to_thread(_remove_files, run, vm, marked, unmarked, users, doubts,
                                        [p for p, n in zip(owned, notes, strict=True) if n in kept])
    summary = f"deleted, {len(removed)} disk{'s' if len(removed) != 1 else ''} removed"
    return summary + (f" ({'; '.join(kept)})" if kept else "")


def _destroy_and_undefine(host: Host, uuid: str) -> None:
    """Power off (asking libvirt, not the inventory, which may lag by an event), then undefine:
    undefining a running domain would leave it running, transient, on disks about to go."""
    dom = host.domain(uuid)
    if dom.isActive():
        dom.destroy()
    _undefine(host, uuid)


def _remove_files(run: _Run, vm: VM, marked: list[Path], unmarked: list[Path],
                  users: Mapping[str, set[str]], doubts: list[str], kept_disks: list[str]) -> list[str]:
    """A deleted VM's student folder (only the one marked as its own) and VNC socket.

    The folder stays while anything in it is kept or used by another domain, or while some
    domain's disks could not be read. Returns the notes for the result's message.
    """
    notes = []
    if run.socket_dir is not None:
        try:
            remove_vnc_socket(vnc_socket(run.socket_dir, vm.uuid))
        except OSError as exc:
            notes.append(f"kept its console socket: {exc.strerror}")
    notes += [f"kept {folder}: it is not marked as this VM's folder" for folder in unmarked]
    for folder in marked:
        if doubts or any(_inside(path, [folder]) for path in kept_disks) or any(
                _inside(path, [folder]) and who - {vm.uuid} for path, who in users.items()):
            notes.append(f"kept {folder}: it holds files that are kept or that another VM may use")
        elif remove_vm_folder(folder):
            notes.append(f"removed {folder}")
        else:
            notes.append(f"kept part of {folder}: some files would not go (vm-manager doctor retries)")
    return notes


def _own_folders(root: Path | None, vm: VM, info: domainxml.DomainInfo) -> tuple[list[Path], list[Path]]:
    """The student folders that may be this VM's: at ``<root>/<owner>/<name>``, or holding its
    disks (after ``assign`` changed its owner). Those marked as its own, and the others that exist."""
    if root is None:
        return [], []
    places = {(vm.meta.owner, vm.name)}
    base = os.path.normpath(os.path.abspath(root))
    for disk in info.disks:
        folder = os.path.dirname(os.path.normpath(disk.source)) if disk.source_type == "file" else ""
        if folder and os.path.dirname(os.path.dirname(folder)) == base:
            places.add((os.path.basename(os.path.dirname(folder)), os.path.basename(folder)))
    marked, unmarked = set(), set()
    for owner, name in places:
        if not (USERNAME.fullmatch(owner) and VM_NAME.fullmatch(name)):
            continue  # no folder of ours can bear that name
        found = vm_folder(root, owner, name, vm.uuid)
        if found is not None:
            marked.add(found)
        elif (root / owner / name).is_dir():
            unmarked.add(root / owner / name)
    return sorted(marked), sorted(unmarked)


async def _reset(host: Host, vm: VM, run: _Run) -> str:
    """A fresh overlay on the same template (the exercise starts again); running VMs restart."""
    local = host.files_local
    async with run.slots:
        xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    info = domainxml.parse(xml)
    marked = [] if local else (await asyncio.to_thread(_own_folders, run.vm_root, vm, info))[0]
    if not local and not marked:
        raise ActionFailed("its disks are not files on this machine: reset works on this host's own VMs")
    disks = [d.source for d in info.disks if d.device == "disk" and not d.readonly
             and d.source_type == "file" and d.source and (local or _inside(d.source, marked))]
    overlays = [path for path in disks if await asyncio.to_thread(images.backing_file, path)]
    if not overlays:
        raise ActionFailed("it has no disk made from a template (no overlay) to reset")
    was_active = _current(host, vm).state.is_active
    if was_active:
        await _call(host, run, "destroy", vm)
    async with run.slots:
        await host.call(snapshots.forget_all, host.domain(vm.uuid))  # they lived in the old overlay
        for path in overlays:
            await asyncio.to_thread(images.renew_overlay, Path(path))
        answers = Path(overlays[0]).parent / WINDOWS_SEED
        if answers.is_file():  # a Windows VM: its fresh disk needs the answer file again
            await host.call(lambda: unattend.insert_answer_file(host.domain(vm.uuid), answers))
    if was_active:
        await _call(host, run, "create", vm)
    return "reset to its template" + (" and started again" if was_active else "")


def _inside(path: str, folders: list[Path]) -> bool:
    """Whether ``path`` lies in one of ``folders`` (a VM's own marked folders)."""
    normal = Path(os.path.normpath(os.path.abspath(path)))
    return any(normal.is_relative_to(os.path.normpath(os.path.abspath(folder))) for folder in folders)


async def _snapshot(host: Host, vm: VM, run: _Run) -> str:
    async with run.slots:
        return await host.call(snapshots.take, host.domain(vm.uuid), run.snapshot)


async def _revert(host: Host, vm: VM, run: _Run) -> str:
    async with run.slots:
        return await host.call(snapshots.revert, host.domain(vm.uuid), run.snapshot)


def _disk_users(host: Host, local: bool) -> tuple[dict[str, set[str]], list[str]]:
    """Every disk path on the host (and, for local files, every backing file below it), with the
    UUIDs that use it.

    Also why some use could not be known: a local image whose chain could not be read, a domain
    whose definition could not be read. While there is any, no disk can be shown to be unused,
    so none is removed.
    """
    users: dict[str, set[str]] = {}
    doubts: list[str] = []
    for dom in host.connection().listAllDomains(0):
        try:
            info = domainxml.parse(dom.XMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # else: undefined while we looked
                why = from_libvirt(exc).message
                doubts.append(f"the definition of {domain_name(dom)} cannot be read: {why}")
            continue
        for disk in info.disks:
            chain = [disk.source, *disk.backing]
            if disk.source and disk.source_type == "file" and local:
                try:
                    chain += images.backing_chain(disk.source)
                except images.UnreadableImage:
                    doubts.append(f"{disk.source} cannot be read")
            for path in chain:
                if path:
                    users.setdefault(os.path.normpath(path), set()).add(info.uuid)
    return users, doubts


def _owned_disks(info: domainxml.DomainInfo, uuid: str, users: Mapping[str, set[str]],
                 protected: Protected) -> list[str]:
    """The disks only this VM uses: writable, unshared, not a template's, nobody's backing file."""
    owned = []
    for disk in info.disks:
        if disk.device != "disk" or disk.readonly or disk.shareable or not disk.source:
            continue
        if users.get(os.path.normpath(disk.source), {uuid}) - {uuid}:
            continue  # another domain uses it, directly or as a backing file
        if disk.source.startswith("/") and protected.covers(disk.source):
            continue
        owned.append(disk.source)
    return owned


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


def _remove_storage(host: Host, path: str, local: bool) -> str:
    """Remove one disk: through its storage pool when it is in one, else as a local file (only
    when the host's files are this machine's: see ``Host.files_local``)."""
    conn = host.connection()
    try:
        conn.storageVolLookupByPath(path).delete(0)
        return f"removed {path}"
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_SUPPORT):
            return f"kept {path}: {from_libvirt(exc).message}"
    if not local:
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
