"""A host's figures: one ``getAllDomainStats`` call per interval for every running VM, plus the
host's CPU and memory, turned into per-VM figures by :mod:`core.virt.stats` (as virt-manager keeps
its stats manager apart from the connection). No call is ever made for one VM's figures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import libvirt

from core.errors import VMManagerError
from core.model import HostFigures
from core.virt import stats

if TYPE_CHECKING:
    from core.virt.connection import Host

log = logging.getLogger(__name__)

STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
         | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
         | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)


class StatsSampler:
    """Samples ``host`` every ``host.stats_interval`` seconds while it is connected (:meth:`run`)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._samples: dict[str, stats.Sample] = {}
        self._host_cpu: dict[str, int] | None = None

    def forget(self, uuid: str) -> None:
        """A VM stopped: its next figures start afresh."""
        self._samples.pop(uuid, None)

    async def run(self) -> None:
        if not self.host.has_figures:
            return
        while self.host.conn is not None:
            try:
                await self.sample()
            except VMManagerError as exc:
                log.warning("stats failed on %s: %s", self.host.uri, exc.message)
            await asyncio.sleep(self.host.stats_interval)

    async def sample(self) -> None:
        """One bulk call for all running domains, plus the host's CPU and memory."""
        host = self.host
        records, node_cpu, node_mem = await host.call(_bulk_stats, host.connection())
        now = time.monotonic()
        for dom, raw in records:
            uuid = dom.UUIDString()
            vm = host.inventory.get((host.name, uuid))
            if vm is None or not vm.state.is_active:
                continue
            new = stats.sample(raw, now, vm.vcpus)
            host.inventory.put(replace(vm, figures=stats.figures(new, self._samples.get(uuid))), what="stats")
            self._samples[uuid] = new
        cpu = stats.host_cpu_percent(node_cpu, self._host_cpu) if node_cpu else None
        self._host_cpu = node_cpu
        total = node_mem.get("total")
        free = stats.free_memory_kib(node_mem)
        host.set_figures(HostFigures(cpu_percent=cpu, mem_total_mib=total / 1024 if total else None,
                                     mem_used_mib=(total - (free or 0)) / 1024 if total else None))


def _bulk_stats(conn: libvirt.virConnect) -> tuple[list[Any], dict[str, int], dict[str, int]]:
    records = conn.getAllDomainStats(STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
    node_cpu: dict[str, int] = {}
    node_mem: dict[str, int] = {}
    with contextlib.suppress(libvirt.libvirtError):
        node_cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
    with contextlib.suppress(libvirt.libvirtError):
        node_mem = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    return records, node_cpu, node_mem


def node_free_memory_mib(conn: libvirt.virConnect) -> int | None:
    """The host's free memory, page cache counted as free (blocking); None when it does not say."""
    try:
        node_mem = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    except libvirt.libvirtError:
        return None
    free = stats.free_memory_kib(node_mem)
    return None if free is None else free // 1024
