"""The soak's short form: every workload of ``make soak`` (core/testing/soak.py) a few dozen times,
interleaved, with the TUI in a tmux pane and ``vm-manager serve`` in a process of its own on real
libvirtd; then what must come back does: the TUI's and the server's open descriptors, sockets,
threads and child processes, the database's rows of finished work (links revoked, their console
sessions, sessions signed out, failed attempts) and the files work leaves (student folders, VNC
sockets, console endpoints).

The counts are compared once the work is at rest, after waiting *until* they are back (a console's
close takes a moment to reach the endpoint process), up to a bound: no timing is asserted. RSS only
drifts: its slopes are printed by ``make soak``, never judged here. The same check must see a leak:
a console left open and a sign-in never signed out are found, then it comes back once they close.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support.livelab import RUN_PREFIX, Outside

from core.testing import soak
from core.virt.connection import WORKERS

pytestmark = pytest.mark.integration

SETTLE_WITHIN = 60.0  # seconds the counts get to come back: a bound, not a measure
LEAK_LOOK = 4.0  # seconds the check looks at a held leak (it never goes: the check must say so)


async def test_short_soak_leaves_nothing_behind(outside: Outside, tiny_template: Path) -> None:
    async with soak.open_rig(tiny_template, prefix=f"{RUN_PREFIX}soak-") as rig:
        works = [kind() for kind in soak.WORKLOADS.values()]
        for work in works:
            await work.setup(rig)
        await soak.run(rig, works, {work.name: 1 for work in works}, seconds=math.inf, sample_every=10**9)
        baseline = await soak.steady(rig, works)

        planned = {work.name: work.short for work in works}
        result = await soak.run(rig, works, planned, seconds=math.inf, sample_every=10)
        assert result.done == planned
        for who in ("tui", "server"):  # a pool keeps its threads, within its bound
            assert max(sample.values[f"{who}_pool_threads"] for sample in result.samples) <= WORKERS
        await soak.at_rest(rig, works)
        differ = await soak.settle(rig, baseline, SETTLE_WITHIN)
        assert not differ, f"not back at the baseline (name: (baseline, now)): {differ}"

        # The check sees a leak: a portal sign-in never signed out, its console left open.
        portal = next(work for work in works if isinstance(work, soak.SignInOut))
        async with rig.browser() as browser:
            csrf = await portal.sign_in(rig, browser)
            viewer = await portal.open_console(rig, browser, csrf)
            leaked = await soak.settle(rig, baseline, LEAK_LOOK)
            await viewer.close()
            await portal.sign_out(rig, browser, csrf)
        assert {"server_sockets", "server_children", "rows_web_sessions", "rows_web_session_links",
                "rows_links", "rows_console_sessions"} <= leaked.keys(), leaked
        assert not await soak.settle(rig, baseline, SETTLE_WITHIN)
