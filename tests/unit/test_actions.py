"""Lifecycle actions on libvirt's real test driver."""

import asyncio
import logging
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.settings import ProvisionSettings, Settings
from core.testing.testdriver import Spec


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


async def test_delete_on_the_test_driver_removes_no_file_of_this_machine(tmp_path: Path, lab_file) -> None:
    """Its disks are fictional, even when a file of that name exists here (which disks delete does
    remove, and which it keeps, is tested on a real libvirtd: tests/integration/test_live_delete.py)."""
    own = tmp_path / "alice.qcow2"
    own.write_bytes(b"disk")
    lab = await Lab.open(
        Settings(data_dir=tmp_path / "data", provision=ProvisionSettings(student_vms_dir=tmp_path / "sv")),
        lab_file(
            [
                Spec("alice", VMState.RUNNING, disks=(str(own),), meta=LabMeta(owner="alice")),
                Spec("bob", VMState.SHUTOFF),
            ]
        ),
    )
    try:
        (result,) = await lab.act("delete", [by_name(lab)["alice"]])
        assert (result.ok, result.message) == (True, "deleted, 0 disks removed")
        assert own.read_bytes() == b"disk"
        assert set(by_name(lab)) == {"bob"}
    finally:
        await lab.close()


async def test_an_unexpected_error_is_that_vms_failure_and_the_others_go_on(
        settings, lab_file, caplog: pytest.LogCaptureFixture) -> None:
    """A halt timeout of the wrong type stands for any bug: it raises TypeError in one VM's halt
    (the running one's; the shut-off one returns before using it)."""
    lab = await Lab.open(settings, lab_file([Spec("a", VMState.RUNNING), Spec("b", VMState.SHUTOFF)]))
    try:
        vms = sorted(lab.vms(), key=lambda vm: vm.name)
        with caplog.at_level(logging.ERROR, logger="core.lifecycle.actions"):
            results = await lab.act("halt", vms, halt_timeout="soon")  # type: ignore[arg-type]
        assert [(r.vm.name, r.ok) for r in results] == [("a", False), ("b", True)]
        assert results[0].message.startswith("unexpected error: TypeError: ")
        assert results[1].message == "already shut off"
        (record,) = [r for r in caplog.records if "unexpected error" in r.getMessage()]
        assert record.exc_info is not None
        assert record.exc_info[0] is TypeError
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
