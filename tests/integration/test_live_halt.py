"""Halt waits for the guest, then destroys it; many halts wait side by side, not one after another.

A diskless SeaBIOS guest never answers the ACPI power button, which is just what these tests need.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support.livelab import Outside

from core.model import VMState
from core.settings import ActionSettings, load_settings

pytestmark = pytest.mark.integration

TIMEOUT = 3.0
HALTING_TIMEOUT = 6.0
BULK_TIMEOUT = 20.0  # long next to a destroy (1.5-4 s here, slower on a loaded machine)


async def test_halt_ends_in_destroy_after_the_timeout(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab(actions=ActionSettings(halt_timeout=TIMEOUT))
    uuid = outside.define("deaf", start=True).UUIDString()
    vm = await watch.vm_in(uuid, VMState.RUNNING)

    began = time.monotonic()
    [result] = await lab.act("halt", [vm])
    elapsed = time.monotonic() - began

    assert result.ok, result.message
    assert result.message == "destroyed after 3 s: the guest ignored the ACPI shutdown"
    assert elapsed >= TIMEOUT, f"took {elapsed:.1f} s"  # it waited for the guest first
    assert outside.state(uuid) == VMState.SHUTOFF
    await watch.vm_in(uuid, VMState.SHUTOFF)


async def test_bulk_halt_takes_one_timeout_not_n(outside: Outside, open_lab) -> None:
    # Two libvirt calls at a time for four VMs. Right: one timeout, then the destroys (about
    # 1.7 s each here, two at a time) -- about 24 s. Wrong (a slot held while waiting for the
    # guest): two rounds of timeout + destroy -- at least 40 s whatever the load. The line
    # between: two timeouts, far enough from both that a loaded machine does not cross it.
    settings = load_settings(environ={"VMM_ENV_FILE": "/nonexistent",
                                      "VMM_HALT_TIMEOUT": str(BULK_TIMEOUT), "VMM_BULK_CONCURRENCY": "2"})
    assert (settings.actions.halt_timeout, settings.actions.bulk_concurrency) == (BULK_TIMEOUT, 2)
    lab, watch = await open_lab(
        actions=ActionSettings(
            halt_timeout=settings.actions.halt_timeout, bulk_concurrency=settings.actions.bulk_concurrency
        )
    )
    uuids = [outside.define(f"deaf{i}", start=True).UUIDString() for i in range(4)]
    vms = [await watch.vm_in(uuid, VMState.RUNNING) for uuid in uuids]

    began = time.monotonic()
    results = await lab.act("halt", vms)
    elapsed = time.monotonic() - began

    assert [r.ok for r in results] == [True] * 4, [r.message for r in results]
    assert all(r.message.startswith("destroyed after 20 s") for r in results)
    assert BULK_TIMEOUT <= elapsed < 2 * BULK_TIMEOUT, f"4 halts took {elapsed:.1f} s"
    for uuid in uuids:
        assert outside.state(uuid) == VMState.SHUTOFF


async def test_halt_of_a_paused_vm_resumes_it_first(outside: Outside, open_lab) -> None:
    lab, watch = await open_lab(actions=ActionSettings(halt_timeout=1.0))
    dom = outside.define("paused", start=True)
    uuid = dom.UUIDString()
    dom.suspend()
    # Not just "paused": a domain read while QEMU starts up is paused too. Wait for the event.
    await watch.until(lambda: any(c.what == "paused" for c in watch.changes(uuid)), what="the pause")
    vm = await watch.vm_in(uuid, VMState.PAUSED)
    [result] = await lab.act("halt", [vm])
    assert result.ok, result.message
    assert result.message.startswith("destroyed after 1 s")
    assert outside.state(uuid) == VMState.SHUTOFF


async def test_a_vm_being_halted_says_so_and_a_second_halt_waits_on_the_first(outside: Outside,
                                                                               open_lab) -> None:
    lab, watch = await open_lab(actions=ActionSettings(halt_timeout=HALTING_TIMEOUT))
    uuid = outside.define("halting", start=True).UUIDString()
    vm = await watch.vm_in(uuid, VMState.RUNNING)

    began = time.time()
    first = asyncio.ensure_future(lab.act("halt", [vm]))
    halting = await watch.until(lambda: (v := watch.vm(uuid)) is not None and v.halting_until is not None
                                and v, what="the halting mark")
    assert halting.state == VMState.RUNNING  # libvirt still says running: the mark is ours
    assert began + HALTING_TIMEOUT <= halting.halting_until <= time.time() + HALTING_TIMEOUT
    assert [c.what for c in watch.changes(uuid)].count("halting") == 1

    [second] = await lab.act("halt", [halting])  # answers at once, presses no second button
    assert second.ok
    assert second.message.startswith("already halting: powered off in ")
    assert not first.done()

    [result] = await first
    assert result.message == f"destroyed after {HALTING_TIMEOUT:g} s: the guest ignored the ACPI shutdown"
    off = await watch.vm_in(uuid, VMState.SHUTOFF)
    assert off.halting_until is None  # the mark went with the halt
