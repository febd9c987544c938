"""A bulk action gives one result per VM, in order; one failure stops none of the others."""

from __future__ import annotations

import pytest
from support.livelab import Disk, Outside

from core.model import VMState
from core.settings import ActionSettings

pytestmark = pytest.mark.integration


async def test_bulk_reboot_reports_each_vm(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab(actions=ActionSettings(bulk_concurrency=2))
    first = outside.define("up1", start=True).UUIDString()
    off = outside.define("off").UUIDString()
    vanished = outside.define("vanish", start=True).UUIDString()
    last = outside.define("up2", start=True).UUIDString()
    for uuid in (first, last):
        await watch.vm_in(uuid, VMState.RUNNING)
    await watch.vm_in(off, VMState.SHUTOFF)
    stale = await watch.vm_in(vanished, VMState.RUNNING)
    # A record the operator still has on screen, of a VM someone else removed meanwhile.
    outside.domain(vanished).destroy()
    outside.domain(vanished).undefine()
    await watch.gone(vanished)
    targets = [watch.vm(first), watch.vm(off), stale, watch.vm(last)]

    results = await lab.act("reboot", targets)

    assert [r.vm.uuid for r in results] == [first, off, vanished, last], "input order kept"
    assert [r.ok for r in results] == [True, False, False, True]
    assert {r.action for r in results} == {"reboot"}
    assert results[0].message == results[3].message == "rebooting"
    assert results[1].message == "it is shutoff, not running"
    assert "no such VM" in results[2].message
    assert outside.state(first) == outside.state(last) == VMState.RUNNING


async def test_bulk_start_with_one_broken_domain(outside: Outside, open_lab, disk_dir) -> None:
    lab, watch = await open_lab()

    good = outside.define("good").UUIDString()
    broken = outside.define("broken", disks=[Disk(disk_dir / "missing.qcow2")]).UUIDString()
    for uuid in (good, broken):
        await watch.vm_in(uuid, VMState.SHUTOFF)

    results = await lab.act("start", [watch.vm(broken), watch.vm(good)])

    assert [r.ok for r in results] == [False, True]
    assert "missing.qcow2" in results[0].message, results[0].message
    await watch.vm_in(good, VMState.RUNNING)
    assert outside.state(broken) == VMState.SHUTOFF
