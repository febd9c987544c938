"""Figures from real bulk stats, and uptime from the QEMU process."""

from __future__ import annotations

import asyncio
import time

import pytest
from support.livelab import Outside

from core.model import VMState
from core.settings import HostSettings

pytestmark = pytest.mark.integration


async def test_running_vm_gets_cpu_figures_and_no_invented_memory_use(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab(hosts=HostSettings(stats_interval=0.5))
    idle = outside.define("nostats").UUIDString()
    uuid = outside.define("stats", start=True).UUIDString()
    vm = await watch.vm_in(uuid, VMState.RUNNING)
    assert lab.has_figures(vm)

    def figured():
        current = watch.vm(uuid)
        ready = current is not None and current.figures.cpu_percent is not None
        return current if ready else None

    # Two samples are needed for a rate: about two intervals, with room for a loaded machine.
    vm = await watch.until(figured, within=10, what="CPU figures")
    assert 0.0 <= vm.figures.cpu_percent <= 100.0
    # no guest driver reports its memory use: none is invented (QEMU's RSS is not one); the
    # table shows the allocation (the Debian guest's use: tests/integration/test_live_debian_template.py)
    assert vm.figures.mem_used_mib is None
    off = watch.vm(idle)
    assert off is not None
    assert off.figures.cpu_percent is None
    assert off.figures.mem_used_mib is None
    status = lab.host_statuses()[0]
    assert status.figures.mem_total_mib is not None
    assert status.figures.mem_total_mib > 0


async def test_uptime_of_a_vm_started_while_watching(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    dom = outside.define("uptime")
    await watch.vm_in(dom.UUIDString(), VMState.SHUTOFF)
    started = time.time()
    dom.create()

    def with_uptime():
        vm = watch.vm(dom.UUIDString())
        return vm if vm is not None and vm.started_at is not None else None

    vm = await watch.until(with_uptime, what="an uptime")
    assert vm.state == VMState.RUNNING
    assert abs(vm.started_at - started) < 3


async def test_uptime_of_a_vm_that_was_running_before_open(outside: Outside, open_lab) -> None:
    started = time.time()
    dom = outside.define("olduptime", start=True)
    await asyncio.sleep(2.5)
    lab, _watch = await open_lab()
    [vm] = [v for v in lab.vms() if v.uuid == dom.UUIDString()]
    assert vm.state == VMState.RUNNING
    assert vm.started_at is not None, "read from the QEMU process"
    assert abs(vm.started_at - started) < 2, (
        f"started_at is {vm.started_at - started:+.1f} s off the real start")
