"""Named snapshots of a VM: internal qcow2 snapshots, kept in the VM's own overlay.

A shut-off VM's snapshot holds its disks; a running VM's also its memory, so a revert brings it
back running where it was. libvirt 9 cannot take internal snapshots of UEFI VMs (their NVRAM is
a separate file): those are refused with that reason, before anything is tried.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import libvirt

from core.errors import ActionFailed, InvalidInput

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


def revert(dom: libvirt.virDomain, name: str) -> str:
    try:
        snapshot = dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise ActionFailed(f"it has no snapshot {name!r}") from None
        raise
    dom.revertToSnapshot(snapshot, 0)
    return f"reverted to {name}" + (", running" if dom.isActive() else "")


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
