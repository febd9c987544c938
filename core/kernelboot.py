"""Domain XML for direct kernel boot (built with ElementTree, never by string formatting).

The tiny template (``scripts/build_template_tiny.sh``) is a kernel and an initramfs that QEMU
loads itself: no disk image, no boot loader. Its NoCloud seed is an ISO9660 image labelled
``cidata`` on an IDE CD-ROM -- machine ``pc`` (i440fx), because the Debian cloud kernel has no
AHCI -- and what it prints goes to the first serial port, which libvirt writes to a file.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from core.metadata import LabMeta

StrPath = str | os.PathLike[str]


def kernel_domain(name: str, kernel: StrPath, initrd: StrPath, cmdline: str = "console=tty0 console=ttyS0",
                  seed_iso: StrPath | None = None, serial_log: StrPath | None = None, *,
                  memory_mib: int = 128, vcpus: int = 1, domain_type: str = "qemu",
                  meta: LabMeta | None = None) -> str:
    """A direct-kernel-boot domain: i440fx, the seed on an IDE CD-ROM, VGA, VNC on loopback only.

    ``serial_log``: the file the first serial port (and so the console) is written to; without
    it the serial port is a pty (``virsh console``). No network interface.
    """
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(domain, "vcpu").text = str(vcpus)
    if meta is not None:
        ET.SubElement(domain, "metadata").append(meta.to_element())
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "kernel").text = os.fspath(kernel)
    ET.SubElement(os_, "initrd").text = os.fspath(initrd)
    ET.SubElement(os_, "cmdline").text = cmdline
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
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
    graphics = ET.SubElement(devices, "graphics", type="vnc", autoport="yes", listen="127.0.0.1")
    ET.SubElement(graphics, "listen", type="address", address="127.0.0.1")
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
    return ET.tostring(domain, encoding="unicode")
