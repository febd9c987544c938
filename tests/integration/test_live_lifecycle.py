"""Lifecycle actions through Lab.act on a real QEMU domain, checked in the inventory and in libvirt."""

from __future__ import annotations

import pytest
from support.livelab import Outside

from core.lifecycle.actions import Action
from core.model import VMState

pytestmark = pytest.mark.integration


async def test_start_suspend_resume_reboot_destroy_delete(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    uuid = outside.define("cycle").UUIDString()
    vm = await watch.vm_in(uuid, VMState.SHUTOFF)

    async def act(action: Action, expect_message: str, state: VMState) -> None:
        [result] = await lab.act(action, [watch.vm(uuid) or vm])
        assert (result.action, result.ok, result.message) == (action.value, True, expect_message)
        assert result.vm.uuid == uuid
        await watch.vm_in(uuid, state)
        assert outside.state(uuid) == state

    await act(Action.START, "started", VMState.RUNNING)
    await act(Action.START, "already running", VMState.RUNNING)
    await act(Action.SUSPEND, "paused", VMState.PAUSED)
    await act(Action.RESUME, "resumed", VMState.RUNNING)
    await act(Action.REBOOT, "rebooting", VMState.RUNNING)
    await act(Action.DESTROY, "destroyed", VMState.SHUTOFF)
    await act(Action.DESTROY, "already shut off", VMState.SHUTOFF)

    await act(Action.START, "started", VMState.RUNNING)
    [result] = await lab.act(Action.DELETE, [watch.vm(uuid) or vm])
    assert result.ok, result.message
    assert result.message == "deleted, 0 disks removed"
    await watch.gone(uuid)
    assert not outside.exists(uuid)
    causes = [c.cause for c in watch.changes(uuid)]
    assert "delete" in causes, f"the removal is attributed to the action: {causes}"


async def test_actions_by_name_and_unknown_action(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab()
    uuid = outside.define("byname").UUIDString()
    vm = await watch.vm_in(uuid, VMState.SHUTOFF)
    [result] = await lab.act("start", [vm])
    assert result.ok
    await watch.vm_in(uuid, VMState.RUNNING)
    with pytest.raises(ValueError, match="fly"):
        await lab.act("fly", [vm])
