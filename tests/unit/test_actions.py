"""Lifecycle actions on libvirt's real test driver."""

import asyncio
import subprocess
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.testdriver import Spec


def by_name(lab: Lab) -> dict:
    return {vm.name: vm for vm in lab.vms()}


async def test_bulk_gives_a_result_per_vm_and_one_failure_stops_nothing(settings, lab_file) -> None:
    lab = await Lab.open(settings, lab_file([Spec("a", VMState.RUNNING), Spec("b", VMState.SHUTOFF),
                                             Spec("c", VMState.RUNNING)]))
    try:
        vms = sorted(lab.vms(), key=lambda vm: vm.name)
        results = await lab.act("reboot", vms)
        assert [(r.vm.name, r.ok) for r in results] == [("a", True), ("b", False), ("c", True)]
        assert "shutoff, not running" in results[1].message
    finally:
        await lab.close()


@pytest.mark.parametrize(("action", "start", "end", "message"), [
    ("start", VMState.SHUTOFF, VMState.RUNNING, "started"),
    ("start", VMState.RUNNING, VMState.RUNNING, "already running"),
    ("halt", VMState.RUNNING, VMState.SHUTOFF, "halted"),
    ("halt", VMState.PAUSED, VMState.SHUTOFF, "halted"),
    ("halt", VMState.SHUTOFF, VMState.SHUTOFF, "already shut off"),
    ("destroy", VMState.RUNNING, VMState.SHUTOFF, "destroyed"),
    ("suspend", VMState.RUNNING, VMState.PAUSED, "paused"),
    ("resume", VMState.PAUSED, VMState.RUNNING, "resumed"),
])
async def test_each_action_reaches_its_state(settings, lab_file, action, start, end, message) -> None:
    lab = await Lab.open(settings, lab_file([Spec("v", start)]))
    try:
        (result,) = await lab.act(action, lab.vms())
        assert (result.ok, result.message) == (True, message)
        async with asyncio.timeout(2):
            vm = await lab.inventory.wait_for(lab.vms()[0].key, lambda v: v is not None and v.state == end)
        assert vm is not None
        assert vm.state == end
    finally:
        await lab.close()


async def test_start_refuses_a_paused_vm_with_the_reason(settings, lab_file) -> None:
    lab = await Lab.open(settings, lab_file([Spec("v", VMState.PAUSED)]))
    try:
        (result,) = await lab.act("start", lab.vms())
        assert not result.ok
        assert "resume it" in result.message
    finally:
        await lab.close()


async def test_delete_removes_only_what_the_vm_owns(tmp_path: Path, lab_file) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    template = templates / "debian12.qcow2"
    own, shared = tmp_path / "alice.qcow2", tmp_path / "shared.img"
    for path in (template, own, shared):
        path.write_bytes(b"disk")
    settings = Settings(data_dir=tmp_path / "data", template_dir=templates)
    lab = await Lab.open(settings, lab_file([
        Spec("alice", VMState.RUNNING, disks=(str(own), str(shared), str(template))),
        Spec("bob", VMState.SHUTOFF, disks=(str(shared),)),
    ]))
    try:
        (result,) = await lab.act("delete", [by_name(lab)["alice"]])
        assert result.ok, result.message
        assert "1 disk removed" in result.message
        assert not own.exists()
        assert shared.exists()
        assert template.exists()
        assert set(by_name(lab)) == {"bob"}
    finally:
        await lab.close()


async def test_assign_writes_metadata_and_refuses_bad_names(settings, lab_file) -> None:
    lab = await Lab.open(settings, lab_file([Spec("v", VMState.RUNNING, meta=LabMeta(template="deb"))]))
    try:
        with pytest.raises(InvalidInput, match="username"):
            await lab.assign(lab.vms(), "x)(uid=*")
        with pytest.raises(InvalidInput, match="class name"):
            await lab.assign(lab.vms(), "alice", "../etc")
        assert lab.vms()[0].meta == LabMeta(template="deb")  # nothing changed
        (result,) = await lab.assign(lab.vms(), "alice", "net101")
        assert result.ok
        assert lab.vms()[0].meta == LabMeta("alice", "net101", "deb")
    finally:
        await lab.close()


@pytest.fixture
def clone_pair(tmp_path: Path) -> tuple[Path, Path]:
    base, clone = tmp_path / "base.qcow2", tmp_path / "clone.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(base), "16M"], check=True, capture_output=True)
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(clone)],
                   check=True, capture_output=True)
    return base, clone


async def test_delete_keeps_a_file_another_vm_is_backed_by(clone_pair, settings, lab_file) -> None:
    """libvirt shows no backing chain for a shut-off VM: the image header must be read."""
    base, clone = clone_pair
    lab = await Lab.open(settings, lab_file([Spec("tpl", disks=(str(base),)),
                                             Spec("clone", disks=(str(clone),))]))
    try:
        (result,) = await lab.act("delete", [by_name(lab)["tpl"]])
        assert result.ok, result.message
        assert result.message == "deleted, 0 disks removed"
        assert base.exists()
        (result,) = await lab.act("delete", [by_name(lab)["clone"]])
        assert result.message == "deleted, 1 disk removed"
        assert not clone.exists()
        assert base.exists()
    finally:
        await lab.close()
