"""Power actions: start, halt (ACPI, then destroy after the timeout), destroy, reboot, suspend,
resume. A halt holds a slot only while it calls libvirt, never while the guest takes its time."""

from __future__ import annotations

import asyncio
import time

from core.errors import ActionFailed
from core.lifecycle.actions import Run, call, current
from core.model import VM, VMState
from core.virt.connection import Host


async def start(host: Host, vm: VM, run: Run) -> str:
    state = current(host, vm).state
    if state == VMState.PAUSED:
        raise ActionFailed("it is paused: resume it instead")
    if state.is_active:
        return "already running"
    await call(host, run, "create", vm)
    return "started"


async def halt(host: Host, vm: VM, run: Run) -> str:
    """ACPI shutdown, then destroy after ``run.halt_timeout``; meanwhile the VM's record says it
    is halting, and until when. A second halt of it (in this process) starts no second wait."""
    inventory = host.inventory
    if (under_way := inventory.halting_until(vm.key)) is not None:
        return _already_halting(under_way)
    stopped = inventory.watch(vm.key, lambda v: v is None or not v.state.is_active)
    mine = False
    try:
        async with run.slots:
            pressed = await host.call(_press_power_button, host, vm.uuid)
        if not pressed:
            return "already shut off"
        if (under_way := inventory.begin_halt(vm.key, time.time() + run.halt_timeout)) is not None:
            return _already_halting(under_way)  # another halt pressed the button meanwhile
        mine = True
        try:
            await asyncio.wait_for(asyncio.shield(stopped), run.halt_timeout)
            return "halted"
        except TimeoutError:
            pass
        try:
            await call(host, run, "destroy", vm)
        except ActionFailed:
            if not current(host, vm).state.is_active:  # it stopped just now, after all
                return "halted"
            raise
        return f"destroyed after {run.halt_timeout:g} s: the guest ignored the ACPI shutdown"
    finally:
        inventory.unwatch(stopped)
        if mine:
            inventory.end_halt(vm.key)


def _already_halting(deadline: float) -> str:
    return f"already halting: powered off in {max(0, round(deadline - time.time()))} s if it does not stop"


def _press_power_button(host: Host, uuid: str) -> bool:
    """ACPI shutdown, reading libvirt's own state first (the inventory may lag by an event)."""
    dom = host.domain(uuid)
    state = VMState.from_libvirt(dom.state()[0])
    if not state.is_active:
        return False
    if state == VMState.PAUSED:
        dom.resume()  # a paused guest cannot see the button
    dom.shutdown()
    return True


async def destroy(host: Host, vm: VM, run: Run) -> str:
    if not current(host, vm).state.is_active:
        return "already shut off"
    await call(host, run, "destroy", vm)
    return "destroyed"


async def reboot(host: Host, vm: VM, run: Run) -> str:
    if current(host, vm).state != VMState.RUNNING:
        raise ActionFailed(f"it is {current(host, vm).state}, not running")
    await call(host, run, "reboot", vm, 0)
    return "rebooting"


async def suspend(host: Host, vm: VM, run: Run) -> str:
    state = current(host, vm).state
    if state == VMState.PAUSED:
        return "already paused"
    if state != VMState.RUNNING:
        raise ActionFailed(f"it is {state}, not running")
    await call(host, run, "suspend", vm)
    return "paused"


async def resume(host: Host, vm: VM, run: Run) -> str:
    state = current(host, vm).state
    if state == VMState.PMSUSPENDED:
        await call(host, run, "pMWakeup", vm, 0)
        return "woken up"
    if state == VMState.RUNNING:
        return "already running"
    if state == VMState.SHUTOFF:  # refused, as suspend refuses it: resume would do nothing
        raise ActionFailed("it is shut off: start it instead")
    if state != VMState.PAUSED:
        raise ActionFailed(f"it is {state}, not paused")
    await call(host, run, "resume", vm)
    return "resumed"
