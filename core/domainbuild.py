"""Domain XML documents built with ElementTree (never by string formatting).

For now: tiny diskless BIOS domains (tests, benchmarks, screenshots) and direct-kernel-boot
domains (the tiny template); provisioning builds on the same pieces. Every one is an i440fx
machine (the Debian cloud kernel has no AHCI) with VGA and VNC on loopback only, and no network.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from core.metadata import LabMeta

StrPath = str | os.PathLike[str]


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
    domain, os_ = _skeleton(name, domain_type, memory_mib, vcpus, meta)
    ET.SubElement(os_, "boot", dev="hd")
    devices = ET.SubElement(domain, "devices")
    for index, disk in enumerate(disks):
        element = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(element, "driver", name="qemu", type=disk.fmt)
        ET.SubElement(element, "source", file=os.fspath(disk.path))
        ET.SubElement(element, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
        if disk.readonly:
            ET.SubElement(element, "readonly")
    _loopback_vnc(devices)
    return ET.tostring(domain, encoding="unicode")


def kernel_domain(name: str, kernel: StrPath, initrd: StrPath, cmdline: str = "console=tty0 console=ttyS0",
                  seed_iso: StrPath | None = None, serial_log: StrPath | None = None, *,
                  memory_mib: int = 128, vcpus: int = 1, domain_type: str = "qemu",
                  meta: LabMeta | None = None) -> str:
    """Direct kernel boot (QEMU loads kernel and initramfs itself), the NoCloud seed on an IDE CD-ROM.

    ``serial_log``: the file the first serial port (and so the console) is written to; without
    it the serial port is a pty (``virsh console``).
    """
    domain, os_ = _skeleton(name, domain_type, memory_mib, vcpus, meta)
    ET.SubElement(os_, "kernel").text = os.fspath(kernel)
    ET.SubElement(os_, "initrd").text = os.fspath(initrd)
    ET.SubElement(os_, "cmdline").text = cmdline
    devices = ET.SubElement(domain, "devices")
    if seed_iso is not None:
        cdrom = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(cdrom, "driver", name="qemu", type="raw")
        ET.SubElement(cdrom, "source", file=os.fspath(seed_iso))
        ET.SubElement(cdrom, "target", dev="hdc", bus="ide")
        ET.SubElement(cdrom, "readonly")
    if serial_log is not None:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=os.fspath(serial_log))
        ET.SubElement(serial, "target", port="0")
        console = ET.SubElement(devices, "console", type="file")
        ET.SubElement(console, "source", path=os.fspath(serial_log))
        ET.SubElement(console, "target", type="serial", port="0")
    else:
        ET.SubElement(ET.SubElement(devices, "serial", type="pty"), "target", port="0")
        ET.SubElement(ET.SubElement(devices, "console", type="pty"), "target", type="serial", port="0")
    _loopback_vnc(devices)
    return ET.tostring(domain, encoding="unicode")


def _skeleton(name: str, domain_type: str, memory_mib: int, vcpus: int,
              meta: LabMeta | None) -> tuple[ET.Element, ET.Element]:
    """``<domain>`` with name, size, our metadata, ACPI and an i440fx ``<os>`` to fill in."""
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(domain, "vcpu").text = str(vcpus)
    if meta is not None:
        ET.SubElement(domain, "metadata").append(meta.to_element())
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    return domain, os_


def _loopback_vnc(devices: ET.Element) -> None:
    graphics = ET.SubElement(devices, "graphics", type="vnc", autoport="yes", listen="127.0.0.1")
    ET.SubElement(graphics, "listen", type="address", address="127.0.0.1")
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
