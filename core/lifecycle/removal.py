"""Delete and reset: a VM's storage goes (or is renewed) only where :mod:`core.lifecycle.ownership`
proves it the VM's own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import libvirt

from core.errors import ActionFailed, from_libvirt
from core.lifecycle import snapshots
from core.lifecycle.actions import Run, call, current
from core.lifecycle.ownership import disk_users, own_folders, owned_disks
from core.model import VM
from core.provision.guests import answer_cd
from core.storage import images
from core.storage.folders import WINDOWS_SEED, remove_vm_folder, remove_vnc_socket, vnc_socket
from core.storage.paths import inside
from core.text import count
from core.virt import domains, domainxml
from core.virt.connection import Host


async def delete(host: Host, vm: VM, run: Run) -> str:
    local = host.files_local
    storage = local or host.remote  # the test driver's storage is fictional: nothing of it goes
    users: Mapping[str, set[str]] = {}
    doubts: list[str] = []
    async with run.slots:
        if storage:
            usage = run.disk_users.get(host.name)
            if usage is None:
                usage = run.disk_users[host.name] = await host.call(disk_users, host, local)
            users, doubts = usage
        xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    info = domainxml.parse(xml)

    def mine() -> tuple[list[Path], list[Path], list[str]]:
        # A folder marked as this VM's is ours on any host: a lab provisioned on the test driver
        # (the TUI's tests) has real folders, though the driver's own storage is fictional.
        marked, unmarked = own_folders(run.vm_root, vm, info)
        owned = [path for path in owned_disks(info, vm.uuid, users, run.protected)
                 if storage or inside(path, marked)]
        return marked, unmarked, owned

    marked, unmarked, owned = await asyncio.to_thread(mine)
    if owned and run.protected.problem:  # refused before anything changes
        raise ActionFailed(f"not deleted: {run.protected.problem}; until it is fixed, its disks "
                           f"({', '.join(owned)}) cannot be told apart from a template's")
    async with run.slots:
        await host.call(_destroy_and_undefine, host, vm.uuid)
        if doubts:
            results = [(path, False, f"kept {path}: cannot tell whether another VM uses it ({doubts[0]})")
                       for path in owned]
        else:
            results = [(path, *await host.call(_remove_storage, host, path, local or inside(path, marked)))
                       for path in owned]
    kept = [note for _path, removed, note in results if not removed]
    if local or marked:
        kept += await asyncio.to_thread(_remove_files, run, vm, marked, unmarked, users, doubts,
                                        [path for path, removed, _note in results if not removed])
    summary = f"deleted, {count(sum(removed for _p, removed, _n in results), 'disk')} removed"
    return summary + (f" ({'; '.join(kept)})" if kept else "")


def _destroy_and_undefine(host: Host, uuid: str) -> None:
    """Power off (asking libvirt, not the inventory, which may lag by an event), then undefine:
    undefining a running domain would leave it running, transient, on disks about to go."""
    dom = host.domain(uuid)
    if dom.isActive():
        dom.destroy()
    domains.undefine(dom)


def _remove_files(run: Run, vm: VM, marked: list[Path], unmarked: list[Path],
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
        if doubts or any(inside(path, [folder]) for path in kept_disks) or any(
                inside(path, [folder]) and who - {vm.uuid} for path, who in users.items()):
            notes.append(f"kept {folder}: it holds files that are kept or that another VM may use")
        elif remove_vm_folder(folder):
            notes.append(f"removed {folder}")
        else:
            notes.append(f"kept part of {folder}: some files would not go (vm-manager doctor retries)")
    return notes


async def reset(host: Host, vm: VM, run: Run) -> str:
    """A fresh overlay on the same template (the exercise starts again); running VMs restart."""
    local = host.files_local
    async with run.slots:
        xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    info = domainxml.parse(xml)
    marked = [] if local else (await asyncio.to_thread(own_folders, run.vm_root, vm, info))[0]
    if not local and not marked:
        raise ActionFailed("its disks are not files on this machine: reset works on this host's own VMs")
    disks = [d.source for d in info.disks if d.device == "disk" and not d.readonly
             and d.source_type == "file" and d.source and (local or inside(d.source, marked))]
    overlays = [path for path in disks if await asyncio.to_thread(images.backing_file, path)]
    if not overlays:
        raise ActionFailed("it has no disk made from a template (no overlay) to reset")
    was_active = current(host, vm).state.is_active
    if was_active:
        await call(host, run, "destroy", vm)
    async with run.slots:
        await host.call(snapshots.forget_all, host.domain(vm.uuid))  # they lived in the old overlay
        for path in overlays:
            await asyncio.to_thread(images.renew_overlay, Path(path))
        answers = Path(overlays[0]).parent / WINDOWS_SEED
        if answers.is_file():  # a Windows VM: its fresh disk needs the answer file again
            await host.call(lambda: answer_cd.insert_answer_file(host.domain(vm.uuid), answers))
    if was_active:
        await call(host, run, "create", vm)
    return "reset to its template" + (" and started again" if was_active else "")


def _remove_storage(host: Host, path: str, local: bool) -> tuple[bool, str]:
    """Remove one disk: through its storage pool when it is in one, else as a local file (only
    when the host's files are this machine's: see ``Host.files_local``). Whether it was removed
    now, and what to say of it."""
    conn = host.connection()
    try:
        conn.storageVolLookupByPath(path).delete(0)
        return True, f"removed {path}"
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_SUPPORT):
            return False, f"kept {path}: {from_libvirt(exc).message}"
    if not local:
        return False, f"kept {path}: not in a storage pool on the remote host"
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False, f"{path} was already gone"
    except OSError as exc:
        return False, f"kept {path}: {exc.strerror}"
    return True, f"removed {path}"
