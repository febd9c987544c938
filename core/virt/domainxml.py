"""Reading a domain's XML description into plain records (pure: no libvirt calls)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from core import metadata
from core.metadata import LabMeta

_UNIT_TO_KIB = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024,
                "m": 1024, "mib": 1024, "mb": 1e6 / 1024, "g": 1024**2, "gib": 1024**2,
                "gb": 1e9 / 1024, "t": 1024**3, "tib": 1024**3}
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"  # the virtio-serial port QEMU's guest agent answers on


@dataclass(frozen=True, slots=True)
class Disk:
    device: str  # disk | cdrom | floppy | lun
    target: str
    source: str  # a file or block device path, or pool/volume; "" when empty (an ejected CD)
    source_type: str  # file | block | volume | network | ...
    readonly: bool
    shareable: bool
    backing: tuple[str, ...] = ()  # the backing chain libvirt reports, nearest first


@dataclass(frozen=True, slots=True)
class Interface:
    mac: str
    kind: str  # network | bridge | user | direct | ...
    source: str
    model: str
    target: str


@dataclass(frozen=True, slots=True)
class Graphics:
    kind: str  # vnc | spice
    listen: str  # an address, or a Unix socket path
    port: int | None
    socket: str


@dataclass(frozen=True, slots=True)
class DomainInfo:
    name: str
    uuid: str
    domain_type: str
    vcpus: int
    memory_mib: int
    meta: LabMeta
    disks: tuple[Disk, ...]
    interfaces: tuple[Interface, ...]
    graphics: tuple[Graphics, ...]
    max_memory_mib: int = 0  # <memory>: what the guest may be given (a balloon moves only the current)
    agent_state: str | None = None
    """The guest-agent channel's state in the live XML (``connected``, ``disconnected``, ``""`` when
    libvirt does not say); None: the domain has no such channel, no agent can answer."""


def _kib(element: ET.Element | None) -> float:
    if element is None or not (element.text or "").strip():
        return 0.0
    unit = (element.get("unit") or "KiB").lower()
    return float(element.text or 0) * _UNIT_TO_KIB.get(unit, 1)


def _disk_source(source: ET.Element | None) -> str:
    if source is None:
        return ""
    for attr in ("file", "dev", "name", "dir"):
        if source.get(attr):
            return source.get(attr, "")
    if source.get("volume"):
        return f"{source.get('pool', '')}/{source.get('volume')}"
    return ""


def _backing_chain(disk: ET.Element) -> tuple[str, ...]:
    chain: list[str] = []
    node = disk.find("backingStore")
    while node is not None and node.find("source") is not None:
        chain.append(_disk_source(node.find("source")))
        node = node.find("backingStore")
    return tuple(chain)


def parse(xml: str) -> DomainInfo:
    """Parse ``virDomainGetXMLDesc`` output."""
    root = ET.fromstring(xml)
    disks = tuple(
        Disk(
            device=d.get("device", "disk"),
            target=_attr(d, "target", "dev"),
            source=_disk_source(d.find("source")),
            source_type=d.get("type", "file"),
            readonly=d.find("readonly") is not None,
            shareable=d.find("shareable") is not None,
            backing=_backing_chain(d),
        )
        for d in root.iterfind("devices/disk")
    )
    interfaces = tuple(
        Interface(
            mac=_attr(i, "mac", "address"),
            kind=i.get("type", ""),
            source=_attr(i, "source", "network") or _attr(i, "source", "bridge")
            or _attr(i, "source", "dev"),
            model=_attr(i, "model", "type"),
            target=_attr(i, "target", "dev"),
        )
        for i in root.iterfind("devices/interface")
    )
    graphics = tuple(_graphics(g) for g in root.iterfind("devices/graphics"))
    vcpu = root.findtext("vcpu") or "0"
    vcpu_element = root.find("vcpu")
    memory = root.find("currentMemory")
    if memory is None:
        memory = root.find("memory")
    current = vcpu_element.get("current") if vcpu_element is not None else None
    return DomainInfo(
        name=root.findtext("name") or "",
        uuid=root.findtext("uuid") or "",
        domain_type=root.get("type", ""),
        vcpus=int(current or vcpu),
        memory_mib=round(_kib(memory) / 1024),
        meta=metadata.from_domain(root),
        disks=disks,
        interfaces=interfaces,
        graphics=graphics,
        max_memory_mib=round(_kib(root.find("memory")) / 1024),
        agent_state=_agent_state(root),
    )


def _agent_state(root: ET.Element) -> str | None:
    for channel in root.iterfind("devices/channel"):
        target = channel.find("target")
        if target is not None and target.get("name") == GUEST_AGENT_CHANNEL:
            return target.get("state", "")
    return None


def _attr(element: ET.Element, child: str, attr: str) -> str:
    node = element.find(child)
    return node.get(attr, "") if node is not None else ""


def _graphics(g: ET.Element) -> Graphics:
    listen = g.find("listen")
    socket = g.get("socket", "")
    if listen is not None and listen.get("type") == "socket":
        socket = listen.get("socket", socket)
    port = g.get("port")
    return Graphics(
        kind=g.get("type", ""),
        listen=socket or g.get("listen", "") or (listen.get("address", "") if listen is not None else ""),
        port=int(port) if port and port.lstrip("-").isdigit() and int(port) > 0 else None,
        socket=socket,
    )
