"""Turning two bulk ``getAllDomainStats`` samples into per-VM figures (pure: no libvirt calls)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.model import Figures

Raw = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Sample:
    """The cumulative counters of one VM at one instant (``None`` where the driver has none)."""

    at: float  # seconds, monotonic
    cpu_ns: int | None
    vcpus: int
    disk_read: int | None
    disk_write: int | None
    net_rx: int | None
    net_tx: int | None
    mem_used_kib: int | None
    disk_used: int | None = None
    disk_size: int | None = None


def _sum(raw: Raw, group: str, field: str) -> int | None:
    count = raw.get(f"{group}.count")
    if not isinstance(count, int):
        return None
    values = [raw.get(f"{group}.{i}.{field}") for i in range(count)]
    return sum(v for v in values if isinstance(v, int))


def _int(raw: Raw, key: str) -> int | None:
    value = raw.get(key)
    return value if isinstance(value, int) else None


def sample(raw: Raw, at: float, vcpus: int) -> Sample:
    """Pick the counters we use out of one domain's stats record."""
    return Sample(
        at=at,
        cpu_ns=_int(raw, "cpu.time"),
        vcpus=_int(raw, "vcpu.current") or vcpus or 1,
        disk_read=_sum(raw, "block", "rd.bytes"),
        disk_write=_sum(raw, "block", "wr.bytes"),
        net_rx=_sum(raw, "net", "rx.bytes"),
        net_tx=_sum(raw, "net", "tx.bytes"),
        mem_used_kib=guest_memory_used_kib(raw),
        # physical: the image file's size on the host; allocation where a driver gives no physical
        disk_used=_sum(raw, "block", "physical") or _sum(raw, "block", "allocation"),
        disk_size=_sum(raw, "block", "capacity"),
    )


def guest_memory_used_kib(raw: Raw) -> int | None:
    """What the guest itself says it uses, from its balloon driver's figures (it needs one, and
    ``<stats period>`` on the balloon): all it has but what it could still hand out without
    swapping (``usable``, else the plainly free ``unused``). None when the guest says nothing:
    QEMU's resident memory (``balloon.rss``) is the emulator's own, its code and buffers besides
    every page the guest ever touched (209M for a 96M guest), so it is not offered as a use."""
    available = _int(raw, "balloon.available")
    if available is None:
        return None
    free = _int(raw, "balloon.usable")
    if free is None:
        free = _int(raw, "balloon.unused")
    return None if free is None else max(0, available - free)


def _rate(new: int | None, old: int | None, seconds: float) -> float | None:
    if new is None or old is None or seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


def figures(new: Sample, old: Sample | None) -> Figures:
    """Figures between two samples of the same VM; rates need both, memory needs only the new one."""
    mem = new.mem_used_kib / 1024 if new.mem_used_kib is not None else None
    disk_used = new.disk_used / 2**20 if new.disk_used else None
    disk_size = new.disk_size / 2**20 if new.disk_size else None
    if old is None:
        return Figures(mem_used_mib=mem, disk_used_mib=disk_used, disk_size_mib=disk_size)
    seconds = new.at - old.at
    cpu = _rate(new.cpu_ns, old.cpu_ns, seconds)
    return Figures(
        # CPU time per second of wall time, as a share of all the VM's vCPUs (100 % = all busy).
        cpu_percent=None if cpu is None else min(100.0, cpu / 1e9 / new.vcpus * 100),
        mem_used_mib=mem,
        disk_read_bps=_rate(new.disk_read, old.disk_read, seconds),
        disk_write_bps=_rate(new.disk_write, old.disk_write, seconds),
        net_rx_bps=_rate(new.net_rx, old.net_rx, seconds),
        net_tx_bps=_rate(new.net_tx, old.net_tx, seconds),
        disk_used_mib=disk_used,
        disk_size_mib=disk_size,
    )


def host_cpu_percent(new: Mapping[str, int], old: Mapping[str, int] | None) -> float | None:
    """Busy share of all host CPUs between two ``virNodeGetCPUStats`` readings."""
    if not old:
        return None
    total = sum(new.values()) - sum(old.values())
    idle = (new.get("idle", 0) + new.get("iowait", 0)) - (old.get("idle", 0) + old.get("iowait", 0))
    if total <= 0:
        return None
    return max(0.0, min(100.0, (total - idle) / total * 100))


def free_memory_kib(node_mem: Mapping[str, int]) -> int | None:
    """Free memory of a host from ``getMemoryStats``, page cache and buffers counted as free;
    None when the driver does not report it."""
    if "free" not in node_mem:
        return None
    return sum(node_mem.get(k, 0) for k in ("free", "buffers", "cached"))
