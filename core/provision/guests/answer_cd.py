"""The CD with a Windows VM's answer file: ejected once the VM has run, put back by a reset.

The answer file holds passwords in clear, so its CD leaves the VM's definition as soon as Windows
Setup has used it. :class:`AnswerCDEjector` watches one host's inventory for VMs of ours that shut
off (and, at connect, for those already shut off: halts that no VM Manager saw) and ejects the
spent CDs, in one worker job per batch.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt

from core.errors import VMManagerError, from_libvirt
from core.model import Key, Update, VMState
from core.storage import images
from core.storage.folders import WINDOWS_SEED
from core.virt.connection import Host

log = logging.getLogger(__name__)


class AnswerCDEjector:
    """Subscribed to ``host``'s inventory on the core loop; :meth:`close` stops it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._states: dict[Key, VMState] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] = host.inventory.subscribe(self._on_update)

    def _on_update(self, update: Update) -> None:
        due = []
        for change in update.changes:
            vm = change.vm
            if vm.host != self.host.name:
                continue
            if change.kind == "removed":
                self._states.pop(vm.key, None)
                continue
            before = self._states.get(vm.key)
            self._states[vm.key] = vm.state
            # made by provisioning (maybe a Windows first halt), and shut off now: first seen so, or
            # just stopped (a halt, a destroy, a start that failed)
            if vm.meta.created and vm.state == VMState.SHUTOFF and before != VMState.SHUTOFF:
                due.append(vm.uuid)
        if due:
            task = asyncio.ensure_future(self._eject(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _eject(self, uuids: list[str]) -> None:
        try:
            ejected = await self.host.call(self._eject_spent, uuids)
        except VMManagerError as exc:
            log.warning("could not eject answer file CDs on %s: %s", self.host.uri, exc.message)
            return
        for uuid in ejected:
            log.info("ejected the answer file CD of %s: it has run since the CD went in", uuid)

    def _eject_spent(self, uuids: list[str]) -> list[str]:
        ejected = []
        for uuid in uuids:
            try:
                if eject_spent_answer_file(self.host.domain(uuid), local=self.host.files_local):
                    ejected.append(uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone meanwhile: nothing to do
                    log.warning("could not eject the answer file CD of %s: %s", uuid,
                                from_libvirt(exc).message)
        return ejected

    async def close(self) -> None:
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# libvirt's shut-off reasons that say the VM ran, and stopped, since libvirtd started. A VM never
# started has UNKNOWN -- and so has every shut-off VM after a restart of libvirtd.
_RAN = frozenset({libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED,
                  libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_DAEMON})


def eject_spent_answer_file(dom: libvirt.virDomain, *, local: bool = True) -> bool:
    """Eject the answer file of a shut-off VM that has run since the CD went in (blocking).

    Called at every halt a VM Manager sees, and when one connects for the halts none saw. The
    drive is emptied in the VM's definition; the file stays in the VM's folder, readable only by
    the service, for a reset (:func:`insert_answer_file`). Whether the VM ran is read from its
    overlay when it has one (``local``: its files are on this machine): Windows Setup partitions
    the disk in its first minutes, so data of the overlay's own means the answer file was used,
    and a fresh overlay (never started, or reset since: the reset put the CD back) means it was
    not -- a record that survives libvirtd restarts, and that a start that failed (it stops the VM
    too) does not fake. A VM without an overlay falls back on libvirt's shut-off reason.
    Returns whether it ejected.
    """
    state, reason = dom.state()
    if state != libvirt.VIR_DOMAIN_SHUTOFF or reason == libvirt.VIR_DOMAIN_SHUTOFF_SAVED:
        return False  # running, or saved mid-run (its CD goes at its halt)
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    disk = _answer_cd(root)
    if disk is None or not _has_run(root, reason, local):
        return False
    _empty_drive(dom, disk)
    return True


def _has_run(root: ET.Element, reason: int, local: bool) -> bool:
    written: list[bool | None] = []
    if local:
        for source in root.findall("devices/disk[@device='disk']/source[@file]"):
            path = source.get("file", "")
            try:
                if images.backing_file(path) is not None:  # an overlay, as provisioning makes them
                    written.append(images.has_own_data(path))
            except OSError:
                written.append(None)
    if written and None not in written:
        return any(written)
    return reason in _RAN


def _answer_cd(root: ET.Element) -> ET.Element | None:
    """The CD drive of a domain's XML that holds the answer file, if any."""
    for disk in root.findall("devices/disk[@device='cdrom']"):
        source = disk.find("source")
        if source is not None and Path(source.get("file", "")).name == WINDOWS_SEED:
            return disk
    return None


def _empty_drive(dom: libvirt.virDomain, disk: ET.Element) -> None:
    source = disk.find("source")
    if source is not None:
        disk.remove(source)
    dom.updateDeviceFlags(ET.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def insert_answer_file(dom: libvirt.virDomain, iso: Path) -> bool:
    """Put the answer file back in the empty CD drive (a reset: the fresh disk needs it again)."""
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for disk in root.findall("devices/disk[@device='cdrom']"):
        if disk.find("source") is None:
            ET.SubElement(disk, "source", file=str(iso))
            dom.updateDeviceFlags(ET.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            return True
    return False
