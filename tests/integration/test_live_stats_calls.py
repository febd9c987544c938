"""Figures cost one bulk call per interval, whatever the number of VMs: counted on the wire.

A Lab runs in a child process whose libvirt client logs every RPC message it sends
(``LIBVIRT_LOG_FILTERS=1:rpc``); the test counts the remote procedures sent during a quiet window.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from support.livelab import URI, Outside

pytestmark = pytest.mark.integration

# Procedure numbers of libvirt's remote protocol (src/remote/remote_protocol.x).
GET_ALL_DOMAIN_STATS, NODE_GET_CPU_STATS, NODE_GET_MEMORY_STATS = 344, 227, 228
PER_DOMAIN_FIGURES = {
    16: "virDomainGetInfo", 64: "virDomainBlockStats", 65: "virDomainInterfaceStats",
    159: "virDomainMemoryStats", 243: "virDomainBlockStatsFlags", 262: "virDomainGetCPUStats",
}
REMOTE_PROGRAM = 0x20008086  # the remote driver's program (keepalive is another one)
INTERVAL, WINDOW = 0.5, 3.0

CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from core.lab import Lab
from core.settings import HostSettings, Settings

async def main():
    data = Path(sys.argv[2])
    settings = Settings(data_dir=data, config_dir=data, hosts=HostSettings(stats_interval=float(sys.argv[3])))
    lab = await Lab.open(settings, sys.argv[1])
    await asyncio.sleep(2.0)  # the first sync and the address look-ups are over
    samples = []  # a host status with new figures: one per sample, once all its calls are answered
    unsubscribe = lab.subscribe(
        lambda update: samples.extend(h for h in update.hosts if h.figures.cpu_percent is not None))

    async def samples_reach(count, within=20.0):
        deadline = time.time() + within
        while len(samples) < count and time.time() < deadline:
            await asyncio.sleep(0.01)

    # The window opens just after a sample and closes just after another: whole ticks only. It
    # lasts at least WINDOW seconds and three samples (a loaded machine stretches the ticks).
    await samples_reach(len(samples) + 1)
    began, first = time.time(), len(samples)
    await asyncio.sleep(float(sys.argv[4]))
    await samples_reach(max(first + 3, len(samples) + 1))
    ended = time.time()
    unsubscribe()
    running = sum(vm.state.is_active for vm in lab.vms())
    await lab.close()
    print(json.dumps({"began": began, "ended": ended, "running": running}))

asyncio.run(main())
"""
SENT = re.compile(r"^(\S+ \S+)\+0000: .*RPC_CLIENT_MSG_TX_QUEUE: .* prog=(\d+) vers=\d+ proc=(\d+) ")


def sent_between(log: Path, began: float, ended: float) -> list[int]:
    """The remote procedures the child sent between two wall-clock times."""
    procs = []
    for line in log.read_text().splitlines():
        match = SENT.match(line)
        if not match or int(match[2]) != REMOTE_PROGRAM:
            continue
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=None)
        stamp = (when - datetime(1970, 1, 1)).total_seconds()
        if began <= stamp <= ended:
            procs.append(int(match[3]))
    return procs


def test_one_bulk_stats_call_per_interval_for_all_vms(outside: Outside, tmp_path: Path) -> None:
    for n in range(3):
        outside.define(f"bulk{n}", start=True)
    log = tmp_path / "rpc.log"
    env = {**os.environ, "LIBVIRT_LOG_FILTERS": "1:rpc", "LIBVIRT_LOG_OUTPUTS": f"1:file:{log}"}
    argv = [sys.executable, "-c", CHILD, URI, str(tmp_path / "data"), str(INTERVAL), str(WINDOW)]
    child = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60,
                           cwd=Path(__file__).resolve().parents[2])
    assert child.returncode == 0, child.stderr
    window = json.loads(child.stdout.splitlines()[-1])
    assert window["running"] >= 3

    procs = sent_between(log, window["began"], window["ended"])
    bulk = procs.count(GET_ALL_DOMAIN_STATS)
    ticks = (window["ended"] - window["began"]) / INTERVAL
    # A loaded machine stretches the ticks (each waits INTERVAL after the sample; the window waits
    # for a few samples), never adds any.
    assert 2 <= bulk <= ticks + 1, procs
    # Nothing asks for one VM's figures, and a tick adds only the host's CPU and memory (each a call
    # for the number of fields, then one for the values). Other calls may come from events (another
    # test run's VMs): those are not figures.
    assert not [PER_DOMAIN_FIGURES[p] for p in procs if p in PER_DOMAIN_FIGURES]
    assert procs.count(NODE_GET_CPU_STATS) == procs.count(NODE_GET_MEMORY_STATS) == 2 * bulk, procs
