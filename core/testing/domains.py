"""Small domains for tests, benchmarks, screenshots and the demo: SeaBIOS, VGA, VNC on loopback."""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import libvirt

from core.metadata import LabMeta
from core.provision.domainbuild import loopback_vnc, skeleton


@dataclass(frozen=True)
class DiskSpec:
    path: str
    fmt: str = "qcow2"
    readonly: bool = False


def tiny_domain(name: str, *, domain_type: str = "qemu", memory_mib: int = 64, vcpus: int = 1,
                meta: LabMeta | None = None, disks: Iterable[DiskSpec] = ()) -> str:
    """A small BIOS domain: SeaBIOS, VGA, VNC on loopback only, no network interface.

    Without a disk SeaBIOS prints its banner and waits: enough for screens and consoles, and a
    guest that ignores the ACPI shutdown button (what a halt's destroy fallback is for).
    """
    domain, os_ = skeleton(name, domain_type, memory_mib, vcpus, meta)
    ET.SubElement(os_, "boot", dev="hd")
    devices = ET.SubElement(domain, "devices")
    for index, disk in enumerate(disks):
        element = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(element, "driver", name="qemu", type=disk.fmt)
        ET.SubElement(element, "source", file=os.fspath(disk.path))
        ET.SubElement(element, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
        if disk.readonly:
            ET.SubElement(element, "readonly")
    loopback_vnc(devices)
    return ET.tostring(domain, encoding="unicode")


def remove_domain(dom: libvirt.virDomain) -> None:
    """Power off (if running) and undefine, whatever it has (NVRAM, managed save, snapshots); a
    domain already gone is no error."""
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def remove_domains(conn: libvirt.virConnect, prefix: str, also: Iterable[libvirt.virDomain] = ()) -> None:
    """:func:`remove_domain` every domain whose name starts with ``prefix`` (and those of ``also``),
    side by side: destroying a QEMU process takes libvirt a second or two here."""
    doms = list(also)
    with contextlib.suppress(libvirt.libvirtError):
        doms += [dom for dom in conn.listAllDomains(0) if dom.name().startswith(prefix)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(remove_domain, doms))
