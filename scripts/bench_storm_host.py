"""The TUI under a storm of state changes, for ``scripts/bench.py`` (runs inside a tmux pane).

libvirt's test driver shares ``test:///default`` only between the connections of one process, so
the storm has to come from inside the TUI's process: a thread with a connection of its own
(the outside world, as far as the app knows) suspends and resumes VMs at a fixed rate and logs
each change with a CLOCK_MONOTONIC stamp, which the bench compares with what the pane shows.
"""

from __future__ import annotations

import argparse
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from core.settings import Settings
from core.testing import testdriver
from core.testing.testdriver import Spec
from tui.app import VMManagerApp


def populate(conn: libvirt.virConnect, count: int) -> list[libvirt.virDomain]:
    for dom in conn.listAllDomains(0):  # the driver's own sample domain
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    doms = []
    for i in range(count):
        xml = ET.tostring(testdriver.domain_element(Spec(f"vm-{i:04d}")), encoding="unicode")
        dom = conn.defineXML(xml)
        dom.create()
        doms.append(dom)
    return doms


def storm(doms: list[libvirt.virDomain], rate: float, seconds: float, log: Path, go: Path) -> None:
    while not go.exists():
        time.sleep(0.05)
    paused = [False] * len(doms)
    period = 1.0 / rate
    start = time.monotonic()
    cpu0 = time.thread_time()
    lines = []
    i = 0
    while time.monotonic() - start < seconds:
        k = i % len(doms)
        stamp = time.monotonic()
        if paused[k]:
            doms[k].resume()
        else:
            doms[k].suspend()
        paused[k] = not paused[k]
        lines.append(f"{stamp:.6f} {doms[k].name()} {'paused' if paused[k] else 'running'}\n")
        i += 1
        time.sleep(max(0.0, start + i * period - time.monotonic()))
    log.write_text("".join(lines) + f"# generator_cpu_s {time.thread_time() - cpu0:.6f}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--storm-vms", type=int, default=12, help="toggle only the first N (on screen)")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--go", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    world = libvirt.open("test:///default")
    doms = populate(world, args.vms)
    threading.Thread(target=storm, args=(doms[:args.storm_vms], args.rate, args.seconds, args.log,
                                         args.go), daemon=True).start()
    settings = Settings(data_dir=args.data, config_dir=args.data / "config")
    VMManagerApp(settings, "test:///default").run()


if __name__ == "__main__":
    main()
