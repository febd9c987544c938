"""The load test's core (core/testing/load.py, run in full by ``make bench``: scripts/bench_load.py)
with a class of 5 on 2 real tiny VMs, so that it cannot rot: every student signs in, loads "My
VMs" and opens a console (2 from their own VM's button, 3 through share links, one VM's viewers
over two links as the per-link limit makes it), with nothing refused and every console open on
the server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support.livelab import RUN_PREFIX, Outside

from core.settings import ConsoleSettings
from core.testing import load

pytestmark = pytest.mark.integration


def test_links_follow_the_viewer_limits() -> None:
    defaults = ConsoleSettings()  # 4 a link, 16 a VM
    assert load.links_needed(200, 30, defaults) == 2  # 170 over 30 VMs: 6 at most beside the owner
    assert load.links_needed(5, 2, ConsoleSettings(viewers_per_link=1)) == 2
    with pytest.raises(ValueError, match="VMM_VIEWERS_PER_VM"):
        load.links_needed(200, 10, defaults)  # 19 a VM, the owner among them


async def test_a_small_class_signs_in_and_opens_its_consoles(outside: Outside, tmp_path: Path) -> None:
    lab = load.Class(tmp_path, outside.conn, f"{RUN_PREFIX}load-", students=5, vms=2)
    beside_ran = threading.Event()

    def beside(stop: threading.Event) -> list[float]:
        beside_ran.set()
        stop.wait(60)
        return [1.0]

    try:
        lab.make_accounts()
        lab.start_vms()
        result = await load.run_pass(lab, tmp_path / "pass", window=1.0, seed=1,
                                     limits=ConsoleSettings(viewers_per_link=1), alongside=beside)
    finally:
        lab.close()
    assert result.errors == []
    assert (len(result.signin), len(result.my_vms), len(result.console)) == (5, 5, 5)
    assert result.consoles_open == 5
    assert result.consoles_ended == 0
    assert beside_ran.is_set()
    assert result.alongside == [1.0]
    assert result.peak_pss_tree > 0
    assert result.cpu_tree > 0
