"""A class signing in at 08:00: the portal and the consoles under load, one figure a line as
``name: value unit``.

Needs a libvirtd on qemu:///system (``make bench`` starts one); without it the figures are
reported as skipped. On loopback, bounded in count and time (core/testing/load.py does the work):
``--students`` local accounts (made beforehand by the product's own account code) arrive at seeded
random moments spread uniformly over ``--window`` seconds; each signs in, loads "My VMs" and opens
a console (synthetic RFB clients, up to the RFB ServerInit) on ``--vms`` running tiny SeaBIOS VMs:
the first ``--vms`` students own a VM each and open it from "My VMs", the others through share
links their teacher made, within the default viewer limits (VMM_VIEWERS_PER_LINK: as many links a
VM as that needs; VMM_VIEWERS_PER_VM never exceeded). Every console stays open until the whole
class is in. Meanwhile the operator's TUI runs in tmux on the same libvirtd and its filter
keystrokes are timed (scripts/bench.py's measurement), beside the same keystrokes timed idle.

Passes, each on a server of its own, side by side in this one run:

- ``load_*``: the class over the window, VMM_SIGNIN_CONCURRENCY at its default;
- ``load_unbounded_*``: the same with no bound of ours (VMM_SIGNIN_CONCURRENCY far above the
  class: what the code before the bound did, where only the default executor's threads,
  min(32, CPUs + 4), limited the argon2 checks at once);
- ``load_burst_*`` and ``load_burst_unbounded_*`` (``--burst``, default on): the whole class at the
  same instant, where the bound decides how many 64 MiB argon2 checks run at once.

Latencies are p50/p95 over the students, in ms; errors count every answer outside 2xx/3xx and
every console that did not reach ServerInit (expected 0; the first few are printed on stderr);
the server's CPU is over the pass (serve and its endpoint process); peak RSS is serve's own
high-water mark (VmHWM), and the tree's RSS and PSS are sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import string
import sys
import tempfile
import threading
import time
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lab import SYSTEM_URI  # noqa: E402
from core.settings import WebSettings  # noqa: E402
from core.testing import load  # noqa: E402
from core.testing.terminal import Pane, filter_keystrokes, first_row  # noqa: E402

VM_MANAGER = str(ROOT / ".venv" / "bin" / "vm-manager")
PREFIX = f"vmm-bench-load-{''.join(secrets.choice(string.ascii_lowercase) for _ in range(6))}-"
# Each narrows or widens the table of the class's 30 VMs (named ..-00 to ..-29, owners ..-000 to
# ..-029); the filter holds ``class:<the class>`` before them, so other VMs of the host never show.
FILTER_KEYS = ("1", "BSpace", "2", "5", "BSpace", "BSpace", "7", "BSpace", "0", "3", "BSpace", "BSpace",
               "2", "8", "BSpace", "BSpace")
UNBOUNDED = "100000"  # VMM_SIGNIN_CONCURRENCY far above any class: the bound never holds anyone
LOOK_EVERY = 0.02  # seconds between two looks at the TUI's screen (the times come from its output)


def figure(name: str, value: float | str, unit: str = "") -> None:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    print(f"{name}: {text} {unit}".rstrip(), flush=True)


def log(message: str) -> None:
    print(f"bench_load: {message}", file=sys.stderr, flush=True)


class Tui:
    """The operator's TUI in tmux on qemu:///system, its filter showing only the class's VMs."""

    def __init__(self, lab: load.Class, work: Path) -> None:
        self.lab = lab
        env = {"VMM_DATA_DIR": str(work / "tui-data"), "VMM_CONFIG_DIR": str(work / "tui-config"),
               "TERM": "xterm-256color", "VMM_ENV_FILE": "/nonexistent"}
        self.pane: Pane = Pane([VM_MANAGER, "-c", SYSTEM_URI], env=env)
        self.pane.wait(lambda s: first_row(s, PREFIX) is not None, 60, 0.2)
        self.output = self.pane.record_output(work / "tui.fifo")
        self.pane.keys("/")
        time.sleep(0.3)
        self.typed = f"class:{lab.lab_class} "
        self.pane.keys(self.typed, literal=True)
        self.pane.wait(lambda s: first_row(s, PREFIX) == lab.vm_names[0], 30, 0.1)
        time.sleep(0.5)

    def first(self, typed: str) -> str:
        """The VM the table must show first for the filter ``typed`` (the TUI's plain-word match)."""
        words = typed.split()[1:]
        for index, name in enumerate(self.lab.vm_names):
            fields = (name, self.lab.usernames[index], self.lab.lab_class, "running")
            if all(any(word in f for f in fields) for word in words):
                return name
        raise ValueError(f"no VM of the class matches {typed!r}")

    def keystrokes(self, rounds: int | None = None, stop: threading.Event | None = None) -> list[float]:
        """``rounds`` rounds of :data:`FILTER_KEYS`, or as many as fit until ``stop`` is set."""
        latencies: list[float] = []
        done = 0
        while (rounds is None or done < rounds) and not (stop is not None and stop.is_set()):
            latencies += filter_keystrokes(self.pane, self.output, FILTER_KEYS, PREFIX, self.first,
                                           self.typed, LOOK_EVERY)
            done += 1
        return latencies

    def close(self) -> None:
        self.pane.close()


def report(label: str, result: load.Result, students: int) -> None:
    ms = 1000
    figure(f"{label}_signin_p50", load.p50(result.signin) * ms, "ms")
    figure(f"{label}_signin_p95", load.p95(result.signin) * ms, "ms")
    figure(f"{label}_my_vms_p50", load.p50(result.my_vms) * ms, "ms")
    figure(f"{label}_my_vms_p95", load.p95(result.my_vms) * ms, "ms")
    figure(f"{label}_console_open_p50", load.p50(result.console) * ms, "ms (to RFB ServerInit)")
    figure(f"{label}_console_open_p95", load.p95(result.console) * ms, "ms")
    figure(f"{label}_errors", str(len(result.errors)), f"(of {students} students)")
    figure(f"{label}_consoles_open", str(result.consoles_open), "(the server's count, the class in)")
    figure(f"{label}_consoles_ended", str(result.consoles_ended), "(closed by the server meanwhile: 0)")
    figure(f"{label}_wall", result.wall, "s (first arrival to the last console open)")
    figure(f"{label}_server_cpu", result.cpu_tree, f"s (serve alone {result.cpu_server:.3g} s)")
    figure(f"{label}_server_peak_rss", result.peak_rss_server, "MiB (serve's own VmHWM)")
    figure(f"{label}_tree_peak_rss", result.peak_rss_tree, "MiB (serve and its endpoint process, sampled)")
    figure(f"{label}_tree_peak_pss", result.peak_pss_tree, "MiB")
    for error in result.errors[:5]:
        log(f"{label}: {error}")


async def bench(args: argparse.Namespace, conn: libvirt.virConnect, work: Path) -> None:
    lab = load.Class(work, conn, PREFIX, args.students, args.vms)
    tui: Tui | None = None
    try:
        began = time.monotonic()
        await asyncio.to_thread(lab.make_accounts)
        figure("load_accounts_made", time.monotonic() - began, f"s ({args.students} argon2id hashes)")
        await asyncio.to_thread(lab.start_vms)
        await asyncio.sleep(3)  # SeaBIOS has drawn its screen
        tui = await asyncio.to_thread(Tui, lab, work)
        idle = await asyncio.to_thread(tui.keystrokes, args.idle_rounds)
        figure("load_tui_filter_keystroke_idle_p95", load.p95(idle) * 1000,
               f"ms ({len(idle)} keys, no class signing in)")
        passes = [("load", args.window, None), ("load_unbounded", args.window, UNBOUNDED)]
        if args.burst:
            passes += [("load_burst", 0.0, None), ("load_burst_unbounded", 0.0, UNBOUNDED)]
        for label, window, bound in passes:
            log(f"{label}: {args.students} students over {window:g} s")
            assert tui is not None
            result = await load.run_pass(lab, work / label, window=window, seed=args.seed,
                                         env={"VMM_SIGNIN_CONCURRENCY": bound} if bound else None,
                                         alongside=lambda stop, t=tui: t.keystrokes(stop=stop))
            report(label, result, args.students)
            keys = result.alongside
            figure(f"{label}_tui_filter_keystroke_p95", load.p95(keys) * 1000,
                   f"ms ({len(keys)} keys while the class came; median {statistics.median(keys) * 1000:.3g})"
                   if keys else "ms (no key timed)")
    finally:
        if tui is not None:
            tui.close()
        await asyncio.to_thread(lab.close)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--vms", type=int, default=30)
    parser.add_argument("--window", type=float, default=60.0, help="seconds the arrivals are spread over")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--idle-rounds", type=int, default=3, help="rounds of the filter keys timed idle")
    parser.add_argument("--burst", action=argparse.BooleanOptionalAction, default=True,
                        help="also the whole class at one instant, with the bound and without")
    args = parser.parse_args()
    if args.vms < 29:
        parser.error("--vms: the filter keys timed in the TUI need 29 VMs at least")
    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        conn = libvirt.open(SYSTEM_URI)
    except libvirt.libvirtError:
        figure("load", f"skipped: no {SYSTEM_URI} (make bench starts libvirtd)")
        return 0
    print(f"# {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, VMM_SIGNIN_CONCURRENCY default "
          f"{WebSettings().signin_concurrency}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="vmm-bl-"))
    try:
        asyncio.run(bench(args, conn, work))
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
