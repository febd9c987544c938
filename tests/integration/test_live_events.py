"""libvirt events reach the inventory by themselves: no refresh call anywhere in this file."""

from __future__ import annotations

import time

import libvirt
import pytest
from support.livelab import Outside, domain_xml

from core.metadata import NAMESPACE, PREFIX, LabMeta
from core.model import VMState

pytestmark = pytest.mark.integration


def _running_with_uptime(watch, uuid: str):
    vm = watch.vm(uuid)
    return vm if vm is not None and vm.state == VMState.RUNNING and vm.started_at is not None else None


async def test_outside_changes_reach_the_inventory(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    meta = LabMeta(owner="alice", lab_class="net101", template="tiny", created="2026-11-24T09:00:00Z")

    dom = outside.define("events", meta=meta)
    uuid = dom.UUIDString()
    vm = await watch.vm_in(uuid, VMState.SHUTOFF)
    assert vm.name == dom.name()
    assert vm.host == "localhost"
    assert (vm.vcpus, vm.memory_mib) == (1, 64)
    assert vm.meta == meta, "owner and class are read from our <metadata> element"
    assert vm.started_at is None
    # Subscribers get the same story as Change records (delivered on this loop, a moment later).
    await watch.until(lambda: watch.changes(uuid), what="the first change to be delivered")
    assert watch.changes(uuid)[0].kind == "added"

    before = time.time()
    dom.create()
    vm = await watch.until(lambda: _running_with_uptime(watch, uuid), what="running, with an uptime")
    assert before - 2 <= vm.started_at <= time.time() + 2

    dom.destroy()
    vm = await watch.vm_in(uuid, VMState.SHUTOFF)
    assert vm.started_at is None

    dom.undefine()
    await watch.gone(uuid)
    await watch.until(lambda: watch.changes(uuid)[-1].kind == "removed", what="a 'removed' change")
    names = [v.name for v in lab.vms()]
    assert dom.name() not in names


async def test_domains_defined_before_open_are_read(outside: Outside, open_lab) -> None:
    idle = outside.define("idle")
    busy = outside.define("busy", start=True)
    lab, watch = await open_lab()
    rows = {vm.uuid: vm for vm in lab.vms()}
    assert rows[idle.UUIDString()].state == VMState.SHUTOFF
    assert rows[busy.UUIDString()].state == VMState.RUNNING
    assert len(rows) == len(lab.vms()), "one row per domain"
    assert {vm.uuid for vm in lab.vms()} == {d.UUIDString() for d in outside.conn.listAllDomains(0)}


async def test_metadata_written_outside_and_by_assign(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    dom = outside.define("meta")
    uuid = dom.UUIDString()
    await watch.vm_in(uuid, VMState.SHUTOFF)

    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, LabMeta(owner="bob").to_xml(), PREFIX,
                    NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.meta.owner == "bob" and v,
                           what="the owner written from outside")
    assert vm.meta.lab_class == ""

    [result] = await lab.assign([vm], "carol", "sys202")
    assert result.ok, result.message
    vm = watch.vm(uuid)
    assert vm is not None
    assert (vm.meta.owner, vm.meta.lab_class) == ("carol", "sys202")
    raw = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert "<owner>carol</owner>" in raw


async def test_transient_domain_comes_and_goes(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    name = outside.name("transient")
    dom = outside.conn.createXML(domain_xml(name), 0)
    outside.uuids.append(dom.UUIDString())
    vm = await watch.vm_in(dom.UUIDString(), VMState.RUNNING)
    assert vm.persistent is False
    dom.destroy()
    await watch.gone(dom.UUIDString())


async def test_a_start_reads_as_started(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    dom = outside.define("startlog")
    uuid = dom.UUIDString()
    await watch.vm_in(uuid, VMState.SHUTOFF)
    dom.create()
    await watch.until(lambda: _running_with_uptime(watch, uuid), what="running, with an uptime")
    await watch.until(lambda: any(c.what == "started" for c in watch.changes(uuid)),
                      what="a 'started' change")
    seen = [(c.vm.state, c.vm.started_at is not None, c.what) for c in watch.changes(uuid)]
    assert all(has_uptime for state, has_uptime, _ in seen if state == VMState.RUNNING), seen
    assert "resumed" not in [what for _, _, what in seen], seen
