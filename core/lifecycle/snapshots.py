"""Named snapshots of a VM: internal qcow2 snapshots, kept in the VM's own overlay.

A shut-off VM's snapshot holds its disks; a running VM's also its memory. A revert keeps the VM's
power state (a shut-off VM stays off, even from a snapshot with memory) and puts back the approved
requests (vCPUs, memory) answered after the snapshot, which would otherwise be silently undone.
libvirt 9 cannot take internal snapshots of UEFI VMs (their NVRAM is
a separate file): those are refused with that reason, before anything is tried.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import libvirt

from core.errors import ActionFailed, InvalidInput
from core.lifecycle.resources import write_resources
from core.records.requests import Kind, Request

SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_snapshot_name(name: str) -> str:
    if not SNAPSHOT_NAME.fullmatch(name):
        raise InvalidInput(f"invalid snapshot name {name!r}: letters, digits, '_', '.', '-', at most 64, "
                           "starting with a letter or digit")
    return name


def take(dom: libvirt.virDomain, name: str) -> str:
    """Take snapshot ``name`` (blocking). Refuses UEFI VMs and names already taken."""
    _refuse_uefi(dom)
    if name in dom.snapshotListNames(0):
        raise ActionFailed(f"it already has a snapshot {name!r} (revert to it, or pick another name)")
    element = ET.Element("domainsnapshot")
    ET.SubElement(element, "name").text = name
    dom.snapshotCreateXML(ET.tostring(element, encoding="unicode"), 0)
    return f"snapshot {name} taken" + (" (with its memory)" if dom.isActive() else "")


def revert(dom: libvirt.virDomain, name: str, approved: Sequence[Request] = ()) -> str:
    """Bring the VM back to snapshot ``name`` (blocking), in the power state it is in now, then
    write back into its definition the approved requests of ``approved`` (this VM's) answered after
    the snapshot was taken, which the revert undid; the message names them.

    A snapshot with memory comes back running: a VM that is shut off is reverted paused, then
    powered off (its disks as the snapshot had them); a paused one comes back paused.
    """
    try:
        snapshot = dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise ActionFailed(f"it has no snapshot {name!r}") from None
        raise
    taken = info(snapshot)
    state, _reason = dom.state()
    paused = state == libvirt.VIR_DOMAIN_PAUSED
    was_active = bool(dom.isActive())
    if was_active and not paused:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
    elif paused or taken.with_memory:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
    else:
        flags = 0
    dom.revertToSnapshot(snapshot, flags)
    if not was_active and dom.isActive():
        dom.destroy()
    reapplied = []
    latest: dict[Kind, Request] = {}
    for request in sorted(approved, key=lambda r: r.answered or 0.0):
        if (request.kind in (Kind.VCPUS, Kind.MEMORY) and request.amount is not None
                and (request.answered or 0.0) > taken.created):
            latest[request.kind] = request
    for request in latest.values():
        write_resources(dom, request.kind, request.amount or 0)
        reapplied.append(f"{_amount(request)} (request #{request.id})")
    power = "running" if dom.isActive() and not paused else "paused" if paused else "shut off"
    message = f"reverted to {name}, {power}"
    if reapplied:
        message += f"; re-applied {', '.join(reapplied)}, from the next boot"
    return message


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    created: float  # the snapshot's creationTime, seconds since the epoch
    state: str  # the VM's state when it was taken: running, paused, shutoff...
    with_memory: bool
    current: bool = False


def info(snapshot: libvirt.virDomainSnapshot) -> SnapshotInfo:
    """What libvirt records of a snapshot (blocking)."""
    root = ET.fromstring(snapshot.getXMLDesc(0))
    state = root.findtext("state") or ""
    memory = root.find("memory")
    with_memory = (memory.get("snapshot") not in (None, "no")) if memory is not None else \
        state in ("running", "paused", "blocked")
    try:
        current = bool(snapshot.isCurrent(0))
    except libvirt.libvirtError:
        current = False
    created = float(root.findtext("creationTime") or 0)
    return SnapshotInfo(root.findtext("name") or snapshot.getName(), created, state, with_memory, current)


def list_snapshots(dom: libvirt.virDomain) -> list[SnapshotInfo]:
    """The VM's snapshots, oldest first (blocking)."""
    return sorted((info(s) for s in dom.listAllSnapshots(0)), key=lambda s: (s.created, s.name))


def _amount(request: Request) -> str:
    return f"{request.amount} vCPUs" if request.kind is Kind.VCPUS else f"{request.amount} MiB"


def forget_all(dom: libvirt.virDomain) -> None:
    """Drop libvirt's record of every snapshot (their data goes with the overlay they lived in)."""
    for snapshot in dom.listAllSnapshots(0):
        snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)


def _refuse_uefi(dom: libvirt.virDomain) -> None:
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    os_ = root.find("os")
    if os_ is not None and (os_.get("firmware") == "efi" or os_.find("loader[@type='pflash']") is not None
                            or os_.find("nvram") is not None):
        raise ActionFailed("a UEFI VM cannot have internal snapshots (libvirt 9 does not support them "
                           "with NVRAM); reset it to its template instead")
