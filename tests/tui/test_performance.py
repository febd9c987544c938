"""1,000 VMs on the test driver: what keeps the table fast, checked by behaviour, not by time.

No timed assertion here (machines are noisy): scripts/bench.py measures the speed end to end in
a real tmux pane. These tests check the mechanisms: in-place updates, one line repainted,
unchanged figures not repainted, bursts coalesced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.tuitest import wait_until

from core.lab import Lab
from core.metadata import LabMeta
from core.model import Change, Figures, Update, VMState
from core.settings import Settings
from core.testing import testdriver
from tui.app import VMManagerApp
from tui.coalesce import Coalescer, Throttle
from tui.widgets.vmtable import VMTable

N = 1000
STATES = (VMState.RUNNING, VMState.SHUTOFF, VMState.PAUSED, VMState.RUNNING)


@pytest.fixture
async def big_lab(tmp_path: Path) -> AsyncIterator[Lab]:
    specs = [testdriver.Spec(f"c{i % 20:02d}-student{i:04d}", STATES[i % 4], 2, 2048,
                             LabMeta(f"user{i:04d}", f"class{i % 20:02d}", "debian12"))
             for i in range(N)]
    uri = testdriver.write(tmp_path / "big.xml", specs)
    lab = await Lab.open(Settings(config_dir=tmp_path, data_dir=tmp_path), uri)
    yield lab
    await lab.close()


async def test_the_loaded_table_is_kept_out_of_full_collections(big_lab: Lab) -> None:
    """Once the table is drawn, what lives as long as the app is frozen (a full collection over
    1,000 rows took ~80 ms: a keystroke's worth); the app thaws it when it ends."""
    assert gc.get_freeze_count() == 0
    app = VMManagerApp(lab=big_lab, log_visible=False)
    async with app.run_test(size=(160, 50)):
        table = app.main.table
        await wait_until(lambda: len(table.visible_vms()) == N)
        await wait_until(lambda: gc.get_freeze_count() > 0)
        rows = {id(obj) for obj in gc.get_objects() if isinstance(obj, dict) and obj is table._rows}
        assert not rows, "the table's rows are still in the collector's generations"
    assert gc.get_freeze_count() == 0


async def test_a_thousand_vms(big_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    app = VMManagerApp(lab=big_lab, log_visible=False)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.main.table
        await wait_until(lambda: len(table.visible_vms()) == N)
        await pilot.pause()

        # filter keystrokes: filter and sort the 1,000 records
        for text, shown in (("c", N), ("c01", 50), ("state:running", N // 2), ("re:^c0[0-4]-", 250),
                            ("", N)):
            table.set_query(text)
            assert len(table.visible_vms()) == shown, text

        # a state change is applied in place: no rebuild, one line repainted
        rebuilds: list[int] = []
        monkeypatch.setattr(VMTable, "_rebuild", lambda self: rebuilds.append(1))
        repainted: list[object] = []
        real_refresh = VMTable.refresh
        monkeypatch.setattr(VMTable, "refresh",
                            lambda self, *regions, **kw: (repainted.append(regions),
                                                          real_refresh(self, *regions, **kw))[1])
        vm = table.visible_vms()[5]
        table.apply([Change("changed", dataclasses.replace(vm, state=VMState.CRASHED), "destroy",
                            "running → crashed")])
        assert rebuilds == []
        assert len(repainted) == 1
        assert len(repainted[0]) == 1  # one region
        assert repainted[0][0].height == 1  # type: ignore[index]

        # stats for every running VM: rows whose shown figures did not move are not repainted
        repainted.clear()
        running = [v for v in table.all_vms() if v.state == VMState.RUNNING]
        same = [Change("changed", dataclasses.replace(v, figures=Figures()), None, "stats")
                for v in running]
        table.apply(same)
        assert repainted == []


async def test_a_burst_is_coalesced_into_one_apply() -> None:
    applied: list[int] = []
    coalescer = Coalescer(lambda updates: applied.append(len(updates)), interval=0.03)
    for _ in range(50):
        coalescer.push(Update())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert applied == [50]  # a burst in one loop iteration: one apply
    coalescer.push(Update())
    coalescer.push(Update())
    await asyncio.sleep(0.01)
    assert applied == [50]  # within the interval: held back...
    await asyncio.sleep(0.04)
    assert applied == [50, 2]  # ...then applied together
    coalescer.close()
    coalescer.push(Update())
    await asyncio.sleep(0.05)
    assert applied == [50, 2]


async def test_the_summary_throttle_piggybacks_and_trails() -> None:
    calls: list[float] = []
    throttle = Throttle(lambda: calls.append(time.monotonic()), interval=0.05, slack=0.02)
    assert throttle.due
    throttle.fire()
    assert len(calls) == 1
    assert not throttle.due
    throttle.poke()  # within the interval: a trailing call is scheduled...
    await asyncio.sleep(0.03)
    assert len(calls) == 1
    await asyncio.sleep(0.06)
    assert len(calls) == 2  # ...after interval + slack
    await asyncio.sleep(0.06)
    assert throttle.due  # a caller may now fire it in its own frame
    throttle.close()
    throttle.poke()
    await asyncio.sleep(0.08)
    assert len(calls) == 2


async def test_the_first_table_is_drawn_before_the_filter_fields_are_made(
        big_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The filter's lowercased fields of 1,000 VMs are made after the first paint, not before it,
    and once: the first keystroke then finds them ready; a changed VM gets its own afresh."""
    import tui.tablemodel as vmtable

    made: list[str] = []
    real_fields_of = vmtable.fields_of
    monkeypatch.setattr(vmtable, "fields_of", lambda vm: (made.append(vm.name), real_fields_of(vm))[1])
    made_when_drawn: list[int] = []
    real_render_line = VMTable.render_line

    def render_line(self: VMTable, y: int) -> object:
        if y == 1 and self.visible_vms() and not made_when_drawn:
            made_when_drawn.append(len(made))
        return real_render_line(self, y)

    monkeypatch.setattr(VMTable, "render_line", render_line)
    app = VMManagerApp(lab=big_lab, log_visible=False)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.main.table
        await wait_until(lambda: len(table.visible_vms()) == N and len(made) == N and made_when_drawn)
        assert made_when_drawn == [0]
        assert sorted(made) == sorted(vm.name for vm in table.all_vms())

        table.set_query("class:class03 state:paused")
        assert {vm.name for vm in table.visible_vms()} == {
            f"c03-student{i:04d}" for i in range(N) if i % 20 == 3 and STATES[i % 4] == VMState.PAUSED}
        assert len(made) == N  # no field made twice

        vm = next(v for v in table.all_vms() if v.name == "c03-student0003")
        assert vm.state == VMState.RUNNING
        assert vm not in table.visible_vms()
        table.apply([Change("changed", dataclasses.replace(vm, state=VMState.PAUSED), None,
                            "running → paused")])
        await pilot.pause()
        assert "c03-student0003" in {v.name for v in table.visible_vms()}
        assert made[N:] == ["c03-student0003"]
