"""Plain, immutable records that the core hands to its consumers: VMs and their changes, hosts,
students. Consumers import them from here, whichever package makes them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from core.metadata import LabMeta


class VMState(enum.StrEnum):
    """libvirt's domain states, named as ``virsh`` names them (lowercase, no spaces)."""

    NOSTATE = "nostate"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"

    @classmethod
    def from_libvirt(cls, code: int) -> VMState:
        """Map ``virDomainState`` (0..7) to a state; unknown codes become NOSTATE."""
        return _BY_CODE.get(code, cls.NOSTATE)

    @property
    def is_active(self) -> bool:
        """True while a QEMU process exists for the domain."""
        return self not in (VMState.SHUTOFF, VMState.CRASHED, VMState.NOSTATE)


_BY_CODE = dict(enumerate(VMState))


class ConnState(enum.StrEnum):
    """The state of one host connection."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class Figures:
    """Live figures of one VM, from one bulk stats sample. ``None`` means unknown."""

    cpu_percent: float | None = None
    mem_used_mib: float | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None
    disk_used_mib: float | None = None
    """What the VM's disks take on the host (for an overlay: what the student wrote), summed."""
    disk_size_mib: float | None = None
    """The size of the VM's disks as the guest sees them, summed."""


Key = tuple[str, str]
"""A VM's key across hosts: (host name, domain UUID)."""


@dataclass(frozen=True, slots=True)
class VM:
    """One domain as the inventory last saw it. Records are replaced, never mutated."""

    host: str
    uuid: str
    name: str
    state: VMState
    vcpus: int
    memory_mib: int
    meta: LabMeta = field(default_factory=LabMeta)
    ips: tuple[str, ...] = ()
    started_at: float | None = None
    figures: Figures = field(default_factory=Figures)
    persistent: bool = True
    halting_until: float | None = None
    """While this process halts it: when the guest is powered off if ACPI has not stopped it
    (``time.time()``). libvirt has no "shutting down" state for an ACPI shutdown, so another
    process (a CLI halt) shows such a VM as running."""
    next_vcpus: int | None = None
    """A running VM's vCPUs from its next boot, when its definition says other than it runs with
    (an approved request); None: the same."""
    next_memory_mib: int | None = None  # likewise, its memory

    @property
    def key(self) -> Key:
        """Unique across hosts: the host name and the domain UUID."""
        return (self.host, self.uuid)

    def as_json(self) -> dict[str, object]:
        """The CLI's ``--json`` row."""
        return {
            "host": self.host,
            "name": self.name,
            "uuid": self.uuid,
            "state": self.state.value,
            "owner": self.meta.owner,
            "class": self.meta.lab_class,
            "template": self.meta.template,
            "created": self.meta.created,
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "ips": list(self.ips),
            "started_at": self.started_at,
            "cpu_percent": self.figures.cpu_percent,
            "halting_until": self.halting_until,
            "next_boot": {"vcpus": self.next_vcpus, "memory_mib": self.next_memory_mib}
            if self.next_vcpus is not None or self.next_memory_mib is not None else None,
        }


@dataclass(frozen=True, slots=True)
class HostFigures:
    """Host-wide CPU and memory, when the driver reports them."""

    cpu_percent: float | None = None
    mem_total_mib: float | None = None
    mem_used_mib: float | None = None


@dataclass(frozen=True, slots=True)
class HostStatus:
    """What consumers show about one host connection."""

    name: str
    uri: str
    state: ConnState
    demo: bool = False
    message: str = ""
    figures: HostFigures = field(default_factory=HostFigures)


@dataclass(frozen=True, slots=True)
class Change:
    """One inventory change. ``vm`` is the new record (or the last one, for ``removed``).

    ``cause`` names the action that led to it, when the change was expected (for the event log).
    """

    kind: str  # "added" | "changed" | "removed"
    vm: VM
    cause: str | None = None
    what: str = ""


@dataclass(frozen=True, slots=True)
class Update:
    """One batch the inventory hands to subscribers: VM changes and/or hosts' new statuses."""

    changes: tuple[Change, ...] = ()
    hosts: tuple[HostStatus, ...] = ()


@dataclass(frozen=True)
class Student:
    """One student of a class: from a roster row or an LDAP group's member."""

    username: str
    full_name: str = ""
    password: str | None = None
    """None: a password is generated when the student's VMs are made."""
    ssh_keys: tuple[str, ...] = ()
