"""Domain XML documents built with ElementTree (never by string formatting).

For now the tiny diskless domains that tests, benchmarks and screenshots run on real QEMU;
provisioning builds on the same pieces.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from core.metadata import LabMeta


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
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(domain, "vcpu").text = str(vcpus)
    if meta is not None:
        ET.SubElement(domain, "metadata").append(meta.to_element())
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "boot", dev="hd")
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    devices = ET.SubElement(domain, "devices")
    for index, disk in enumerate(disks):
        element = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(element, "driver", name="qemu", type=disk.fmt)
        ET.SubElement(element, "source", file=os.fspath(disk.path))
        ET.SubElement(element, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
        if disk.readonly:
            ET.SubElement(element, "readonly")
    graphics = ET.SubElement(devices, "graphics", type="vnc", autoport="yes", listen="127.0.0.1")
    ET.SubElement(graphics, "listen", type="address", address="127.0.0.1")
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
    return ET.tostring(domain, encoding="unicode")
