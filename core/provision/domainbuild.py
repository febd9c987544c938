"""Domain XML documents built with ElementTree (never by string formatting).

``provisioned_domain`` is what provisioning defines: a template's settings, the VM's overlay and
seed, a serial log, and VNC on a Unix socket (no TCP port at all). ``kernel_domain`` is a small
i440fx domain booting a kernel directly, with VNC on loopback: the KVM probe's (and the tests').
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from core.metadata import LabMeta
from core.provision.templates import Template
from core.virt.domainxml import GUEST_AGENT_CHANNEL

StrPath = str | os.PathLike[str]


def kernel_domain(name: str, kernel: StrPath, initrd: StrPath, cmdline: str = "console=tty0 console=ttyS0",
                  seed_iso: StrPath | None = None, serial_log: StrPath | None = None, *,
                  memory_mib: int = 128, vcpus: int = 1, domain_type: str = "qemu",
                  meta: LabMeta | None = None, guest_agent: bool = False) -> str:
    """Direct kernel boot (QEMU loads kernel and initramfs itself), the NoCloud seed on an IDE CD-ROM.

    ``serial_log``: the file the first serial port (and so the console) is written to; without
    it the serial port is a pty (``virsh console``). ``guest_agent``: a guest-agent channel, as
    provisioned Linux VMs have.
    """
    domain, os_ = skeleton(name, domain_type, memory_mib, vcpus, meta)
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
        _serial_log(devices, serial_log)
    else:
        ET.SubElement(ET.SubElement(devices, "serial", type="pty"), "target", port="0")
        ET.SubElement(ET.SubElement(devices, "console", type="pty"), "target", type="serial", port="0")
    if guest_agent:
        _guest_agent_channel(devices)
    loopback_vnc(devices)
    return ET.tostring(domain, encoding="unicode")


_DISK_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


@dataclass(frozen=True)
class VMFiles:
    """Where one provisioned VM's files live (all in its own folder)."""

    disk: StrPath | None
    seed: StrPath | None
    serial_log: StrPath
    vnc_socket: StrPath


BALLOON_STATS_PERIOD = 5
"""Seconds between two memory reports of a guest's balloon driver."""


def provisioned_domain(name: str, uuid: str, template: Template, files: VMFiles, *,
                       domain_type: str, meta: LabMeta) -> str:
    """The domain of one VM made from ``template``.

    VNC listens on ``files.vnc_socket`` only, shared (``force-shared``) so that a teacher and a
    student can watch the same screen. Linux guests get a guest-agent channel (IP addresses and
    checks from outside); Windows guests a local-time clock.
    """
    domain, os_ = skeleton(name, domain_type, template.memory_mib, template.vcpus, meta,
                            machine=template.machine, uuid=uuid)
    if template.firmware == "uefi":
        os_.set("firmware", "efi")
    if template.kernel is not None:
        ET.SubElement(os_, "kernel").text = os.fspath(template.kernel)
        if template.initrd is not None:
            ET.SubElement(os_, "initrd").text = os.fspath(template.initrd)
        ET.SubElement(os_, "cmdline").text = template.cmdline
    else:
        ET.SubElement(os_, "boot", dev="hd")
    if domain_type == "kvm":
        ET.SubElement(domain, "cpu", mode="host-passthrough")
    if template.os == "windows":
        ET.SubElement(domain, "clock", offset="localtime")
    devices = ET.SubElement(domain, "devices")
    letters = {prefix: iter("abcdefgh") for prefix in _DISK_PREFIX.values()}
    if files.disk is not None:
        _disk(devices, "disk", "qcow2", files.disk, template.disk_bus, letters)
    if files.seed is not None:
        _disk(devices, "cdrom", "raw", files.seed, template.cd_bus, letters)
    _interface(devices, template.network)
    _serial_log(devices, files.serial_log)
    if template.os == "linux":
        _guest_agent_channel(devices)
    ET.SubElement(devices, "input", type="tablet", bus="usb")  # absolute pointer: noVNC's mouse lines up
    graphics = ET.SubElement(devices, "graphics", type="vnc", sharePolicy="force-shared")
    ET.SubElement(graphics, "listen", type="socket", socket=os.fspath(files.vnc_socket))
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
    _memory_balloon(devices)
    return ET.tostring(domain, encoding="unicode")


def _memory_balloon(devices: ET.Element) -> None:
    """A virtio balloon asked for the guest's memory figures every few seconds: a guest with the
    driver (Linux's virtio_balloon, Windows' balloon service) then says what it uses, which the
    table shows; without one, the table shows the allocation."""
    balloon = ET.SubElement(devices, "memballoon", model="virtio")
    ET.SubElement(balloon, "stats", period=str(BALLOON_STATS_PERIOD))


def _disk(devices: ET.Element, device: str, fmt: str, path: StrPath, bus: str,
          letters: dict[str, Iterator[str]]) -> None:
    prefix = _DISK_PREFIX[bus]
    element = ET.SubElement(devices, "disk", type="file", device=device)
    ET.SubElement(element, "driver", name="qemu", type=fmt)
    ET.SubElement(element, "source", file=os.fspath(path))
    ET.SubElement(element, "target", dev=prefix + next(letters[prefix]), bus=bus)
    if device == "cdrom":
        ET.SubElement(element, "readonly")


def _interface(devices: ET.Element, network: str) -> None:
    if network == "none":
        return
    kind, _, source = network.partition(":")
    element = ET.SubElement(devices, "interface", type=kind)
    ET.SubElement(element, "source", {kind: source})
    ET.SubElement(element, "model", type="virtio")


def _guest_agent_channel(devices: ET.Element) -> None:
    """The virtio-serial port a guest agent answers on; libvirt picks the socket's path."""
    channel = ET.SubElement(devices, "channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)


def _serial_log(devices: ET.Element, path: StrPath) -> None:
    for tag, target in (("serial", {"port": "0"}), ("console", {"type": "serial", "port": "0"})):
        element = ET.SubElement(devices, tag, type="file")
        ET.SubElement(element, "source", path=os.fspath(path))
        ET.SubElement(element, "target", target)


def skeleton(name: str, domain_type: str, memory_mib: int, vcpus: int, meta: LabMeta | None, *,
              machine: str = "pc", uuid: str | None = None) -> tuple[ET.Element, ET.Element]:
    """``<domain>`` with name, size, our metadata, ACPI and an ``<os>`` (i440fx by default) to fill in."""
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = name
    if uuid is not None:
        ET.SubElement(domain, "uuid").text = uuid
    ET.SubElement(domain, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(domain, "vcpu").text = str(vcpus)
    if meta is not None:
        ET.SubElement(domain, "metadata").append(meta.to_element())
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine=machine).text = "hvm"
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    return domain, os_


def loopback_vnc(devices: ET.Element) -> None:
    graphics = ET.SubElement(devices, "graphics", type="vnc", autoport="yes", listen="127.0.0.1")
    ET.SubElement(graphics, "listen", type="address", address="127.0.0.1")
    ET.SubElement(ET.SubElement(devices, "video"), "model", type="vga")
