"""Snapshots on a real libvirtd: a revert keeps the VM's power state and does not silently undo
an approved request (the definition goes back with the snapshot; the request is put back)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import libvirt
import pytest
from support.cli import vm_manager
from support.livelab import URI, Disk, OpenLab, Outside, qemu_img

from core.lifecycle import Action
from core.metadata import LabMeta
from core.model import VMState
from core.records.requests import Kind, RequestStore
from core.virt import domainxml

pytestmark = pytest.mark.integration
APPROVED_MIB = 512


def _persistent_memory(dom: libvirt.virDomain) -> int:
    return domainxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).memory_mib


async def test_revert_keeps_a_shut_off_vm_off_and_re_applies_an_approved_request(
        outside: Outside, open_lab: OpenLab, disk_dir: Path) -> None:
    disk = disk_dir / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", disk, "16M")
    dom = outside.define("revert", disks=[Disk(disk)], meta=LabMeta("alice", "snap101"), start=True)
    uuid = dom.UUIDString()
    lab, watch = await open_lab()
    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.state is VMState.RUNNING and v,
                           what="the VM running")
    (taken,) = await lab.act(Action.SNAPSHOT, [vm], snapshot="lab1")  # with its memory: it runs
    assert taken.ok, taken.message
    listed = vm_manager("-c", URI, "snapshots", vm.name, "--json", VMM_DATA_DIR=str(lab.settings.data_dir))
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["vm"], row["name"], row["state"], row["with_memory"], row["current"]) == (
        vm.name, "lab1", "running", True, True)
    shown = [s.name for s in await lab.snapshots(vm)]
    assert shown == ["lab1"]
    (off,) = await lab.act(Action.DESTROY, [vm])
    assert off.ok, off.message
    assert _persistent_memory(dom) == 64  # the tiny domain's, as the snapshot has it
    await asyncio.sleep(1.1)  # creationTime counts whole seconds: the answer comes plainly after it
    store = RequestStore(lab.settings.database_path)
    try:
        asked = store.create("alice", Kind.MEMORY, reason="a bigger build", vm_uuid=uuid, vm_name=vm.name,
                             amount=APPROVED_MIB)
    finally:
        store.close()
    await lab.answer_request(asked.id, approve=True)
    assert _persistent_memory(dom) == APPROVED_MIB

    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.state is VMState.SHUTOFF and v,
                           what="the VM shut off")
    (reverted,) = await lab.act(Action.REVERT, [vm], snapshot="lab1")
    assert reverted.ok, reverted.message
    assert not dom.isActive()  # a snapshot with memory, yet the VM stays as it was: off
    assert _persistent_memory(dom) == APPROVED_MIB  # the approved request is not undone
    assert f"request #{asked.id}" in reverted.message
    assert f"{APPROVED_MIB} MiB" in reverted.message
    assert "shut off" in reverted.message
    assert "from the next boot" in reverted.message


async def test_revert_keeps_a_running_vm_running(outside: Outside, open_lab: OpenLab, disk_dir: Path) -> None:
    disk = disk_dir / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", disk, "16M")
    dom = outside.define("revert-on", disks=[Disk(disk)])  # a snapshot of its disks only, taken off
    uuid = dom.UUIDString()
    lab, watch = await open_lab()
    vm = await watch.until(lambda: watch.vm(uuid), what="the VM")
    (taken,) = await lab.act(Action.SNAPSHOT, [vm], snapshot="cold")
    assert taken.ok, taken.message
    dom.create()
    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.state is VMState.RUNNING and v,
                           what="the VM running")
    (reverted,) = await lab.act(Action.REVERT, [vm], snapshot="cold")
    assert reverted.ok, reverted.message
    assert dom.isActive()
    assert "running" in reverted.message


async def test_an_approved_request_shows_from_the_next_boot_until_the_vm_restarts(
        outside: Outside, open_lab: OpenLab) -> None:
    from tui import format as fmt
    from tui.screens.detail import summary_text

    dom = outside.define("next-boot", meta=LabMeta("alice", "snap101"), start=True)
    uuid = dom.UUIDString()
    lab, watch = await open_lab()
    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.state is VMState.RUNNING and v,
                           what="the VM running")
    assert vm.next_memory_mib is None
    store = RequestStore(lab.settings.database_path)
    try:
        asked = store.create("alice", Kind.MEMORY, reason="more", vm_uuid=uuid, vm_name=vm.name,
                             amount=APPROVED_MIB)
    finally:
        store.close()
    await lab.answer_request(asked.id, approve=True)
    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.next_memory_mib and v,
                           what="the memory waiting for the next boot")
    assert (vm.memory_mib, vm.next_memory_mib) == (64, APPROVED_MIB)  # it runs with 64 until then
    assert fmt.next_boot(vm) == f"{APPROVED_MIB} MiB"
    assert f"From the next boot {APPROVED_MIB} MiB" in summary_text(vm, 0.0).plain
    listed = vm_manager("-c", URI, "list", "--json", "--class", "snap101",
                        VMM_DATA_DIR=str(lab.settings.data_dir))
    (row,) = json.loads(listed.stdout)
    assert row["next_boot"] == {"vcpus": None, "memory_mib": APPROVED_MIB}

    dom.destroy()
    dom.create()  # the next boot: nothing waits any more
    vm = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.state is VMState.RUNNING
                           and v.memory_mib == APPROVED_MIB and v, what="the VM restarted with 512 MiB")
    assert vm.next_memory_mib is None
