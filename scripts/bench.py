"""``make bench``: VM Manager's speed, one figure a line as ``name: value unit``.

Everything is measured as a person meets it: the TUI runs in a real tmux pane and "on screen"
means ``tmux capture-pane`` shows it. Real-VM figures need a libvirtd on qemu:///system (make
bench starts one); without it they are reported as skipped. Medians and ratios come from runs
side by side in this one process; the machines are noisy, so compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lab import SYSTEM_URI as SYSTEM  # noqa: E402
from core.lab import Lab  # noqa: E402
from core.metadata import LabMeta  # noqa: E402
from core.model import VMState  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.testing import testdriver  # noqa: E402
from core.testing.domains import tiny_domain  # noqa: E402
from core.testing.terminal import filter_keystrokes, pane  # noqa: E402
from core.testing.testdriver import Spec  # noqa: E402
from core.virt import eventloop  # noqa: E402

VM_MANAGER = str(ROOT / ".venv" / "bin" / "vm-manager")
POLL = 0.01  # seconds between two looks at the screen while timing a start-up (see Pane.wait)
PYTHON = sys.executable
FILTER_KEYS = ("9", "9", "5", "BSpace", "BSpace", "7", "BSpace", "BSpace", "1", "2", "BSpace", "BSpace",
               "3", "4", "BSpace", "BSpace")
"""The filter keystrokes timed on 1,000 VMs: each narrows or widens the table."""


def figure(name: str, value: float | str, unit: str = "") -> None:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    print(f"{name}: {text} {unit}".rstrip(), flush=True)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def row_state(screen: str, name: str) -> str | None:
    """The state shown on the row of VM ``name``, if that row is on screen."""
    for line in screen.splitlines():
        words = line.replace("│", " ").split()
        if name in words:
            for state in VMState:
                if state.value in words:
                    return state.value
    return None


# -- 1,000 VMs on the test driver -----------------------------------------------------------------
def bench_first_table(work: Path, env: dict[str, str], runs: int = 3) -> str:
    """Process start to the full table of 1,000 VMs on screen; returns the test driver's URI."""
    uri = testdriver.write(work / "thousand.xml", [Spec(f"vm-{i:04d}", VMState.RUNNING)
                                                   for i in range(1000)])
    # As installed: bytecode current (a start that compiles core/ and tui/ from source costs
    # ~0.1 s more, and PYTHONDONTWRITEBYTECODE in the caller's environment kept every start so),
    # and one untimed start first, so every timed one finds the same warm file cache.
    subprocess.run([PYTHON, "-m", "compileall", "-q", "core", "tui"], check=False, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    with pane([VM_MANAGER, "-c", uri], env=env) as p:
        p.wait(lambda s: "vm-0000" in s and "1000" in s)
    starts = []
    with pane(["sleep", "3600"]):  # keeps the tmux server up: no start waits for a new one
        for _ in range(runs):
            t0 = time.monotonic()
            with pane([VM_MANAGER, "-c", uri], env=env) as p:
                starts.append(p.wait(lambda s: "vm-0000" in s and "1000" in s, interval=POLL) - t0)
    figure("tui_first_table_1000_vms", statistics.median(starts),
           f"s (min {min(starts):.3g}, max {max(starts):.3g}, {runs} runs)")
    t0 = time.monotonic()
    subprocess.run([PYTHON, "-c", "import textual.app, libvirt, core.lab"], check=True, cwd=ROOT)
    figure("python_imports_alone", time.monotonic() - t0, "s")
    return uri


def bench_thousand(work: Path, env: dict[str, str], runs: int = 3) -> None:
    uri = bench_first_table(work, env, runs)

    with pane([VM_MANAGER, "-c", uri], env=env) as p:
        p.wait(lambda s: "vm-0000" in s)
        time.sleep(2.0)
        cpu0, t0 = p.cpu_seconds(), time.monotonic()
        time.sleep(10.0)
        figure("tui_idle_cpu_1000_vms", (p.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100,
               "% of a core")
        figure("tui_rss_1000_vms", p.rss_mb(), "MB")

        names = [f"vm-{i:04d}" for i in range(1000)]
        output = p.record_output(work / "filter.fifo")
        p.keys("/")
        time.sleep(0.5)
        latencies = filter_keystrokes(p, output, FILTER_KEYS, "vm-",
                                      lambda typed: next(n for n in names if typed in n))
        figure("tui_filter_keystroke_1000_vms_median", statistics.median(latencies) * 1000, "ms")
        figure("tui_filter_keystroke_1000_vms_p95", p95(latencies) * 1000, "ms")


def bench_storm(work: Path, env: dict[str, str], rate: float = 20.0, seconds: float = 10.0) -> None:
    log, go = work / "storm.log", work / "storm.go"
    argv = [PYTHON, str(ROOT / "scripts" / "bench_storm_host.py"), "--vms", "1000", "--rate", str(rate),
            "--seconds", str(seconds), "--log", str(log), "--go", str(go), "--data", str(work / "d")]
    with pane(argv, width=160, height=50, env=env) as p:
        p.wait(lambda s: "vm-0000" in s and "1000" in s, 60)
        time.sleep(1.0)
        cpu0, t0 = p.cpu_seconds(), time.monotonic()
        go.touch()
        # Watch the screen while the storm runs: when did each row last change, and to what.
        shown: list[tuple[float, str]] = []
        while not log.exists() and time.monotonic() - t0 < seconds + 10:
            stamp = time.monotonic()
            shown.append((stamp, p.screen()))
        cpu = p.cpu_seconds() - cpu0
        wall = time.monotonic() - t0
    lines = log.read_text().splitlines()
    generator_cpu = float(lines[-1].split()[-1])
    changes = [(float(t), name, state) for t, name, state in (line.split() for line in lines[:-1])]
    latencies = []
    missed = 0
    for stamp, name, state in changes:
        later = [(t, s) for t, s in shown if t >= stamp]
        hit = next((t for t, s in later if row_state(s, name) == state), None)
        if hit is None:
            missed += 1
        else:
            latencies.append(hit - stamp)
    figure("tui_storm_changes", len(changes), f"in {seconds:g} s ({rate:g}/s, 1000 VMs)")
    figure("tui_storm_cpu", (cpu - generator_cpu) / wall * 100, "% of a core (generator excluded)")
    figure("tui_storm_change_on_screen_median", statistics.median(latencies) * 1000, "ms")
    figure("tui_storm_change_on_screen_p95", p95(latencies) * 1000, "ms")
    figure("tui_storm_change_on_screen_max", max(latencies) * 1000, "ms")
    figure("tui_storm_changes_never_seen", missed, "")


# -- real VMs on qemu:///system -------------------------------------------------------------------
class RealVMs:
    """Tiny diskless VMs of this run, and when this process heard each of their events.

    Event times are taken by a libvirt connection of this process, so "event to screen" starts
    when a client can first know of the change. Its events are dispatched by the core's own loop
    (a process can register only one event implementation, and the bulk-halt figure runs a Lab).
    """

    def __init__(self, domain_type: str) -> None:
        eventloop.core_loop()
        self.conn = libvirt.open(SYSTEM)
        self.heard: dict[tuple[str, int], list[float]] = {}
        self.conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._heard, None)
        self.prefix = f"vmm-bench-{secrets.token_hex(2)}-"
        self.domain_type = domain_type
        self.doms: list[libvirt.virDomain] = []

    def _heard(self, _conn: object, dom: libvirt.virDomain, event: int, _detail: int, _o: object) -> None:
        self.heard.setdefault((dom.UUIDString(), event), []).append(time.monotonic())

    def make(self, count: int, start: bool = True) -> list[libvirt.virDomain]:
        made = []
        for _ in range(count):
            name = f"{self.prefix}{len(self.doms):02d}"
            dom = self.conn.defineXML(tiny_domain(name, domain_type=self.domain_type))
            self.doms.append(dom)
            if start:
                dom.create()
            made.append(dom)
        return made

    def cleanup(self) -> None:
        for dom in self.doms:
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        self.conn.close()


def bench_event_to_screen(vms: RealVMs, env: dict[str, str], work: Path, samples: int = 40) -> None:
    """From the moment a libvirt client hears an event to the moment the TUI writes the row."""
    (dom,) = vms.make(1)
    name, uuid = dom.name(), dom.UUIDString()
    with pane([VM_MANAGER, "-c", SYSTEM], env=env) as p:
        p.wait(lambda s: row_state(s, name) == "running", 60)
        output = p.record_output(work / "pane.fifo")
        time.sleep(0.5)
        from_event, from_call = [], []
        for i in range(samples):
            target = "paused" if i % 2 == 0 else "running"
            event = libvirt.VIR_DOMAIN_EVENT_SUSPENDED if i % 2 == 0 else libvirt.VIR_DOMAIN_EVENT_RESUMED
            heard_before, written_before = len(vms.heard.get((uuid, event), [])), len(output)
            t0 = time.monotonic()
            if target == "paused":
                dom.suspend()
            else:
                dom.resume()
            deadline = time.monotonic() + 10
            written = None
            while written is None and time.monotonic() < deadline:
                written = next((t for t, text in output[written_before:]
                                if name in text and target in text.split()), None)
                time.sleep(0.001)
            p.wait(lambda s, t=target: row_state(s, name) == t, 10)  # and it is what the pane shows
            heard = vms.heard.get((uuid, event), [])
            if written is not None and len(heard) > heard_before:
                from_event.append(written - heard[heard_before])
                from_call.append(written - t0)
            time.sleep(0.15)
    figure("event_to_screen_median", statistics.median(from_event) * 1000,
           f"ms (qemu:///system, tmux pane output, {len(from_event)} of {samples} events)")
    figure("event_to_screen_p95", p95(from_event) * 1000, "ms")
    figure("api_call_to_screen_median", statistics.median(from_call) * 1000,
           "ms (suspend/resume call included)")


def bench_bulk_halt(vms: RealVMs, settings: Settings, count: int, timeout: float) -> None:
    async def halt(n: int) -> float:
        doms = vms.make(n)
        uuids = {d.UUIDString() for d in doms}
        lab = await Lab.open(settings, SYSTEM)
        try:
            targets = [vm for vm in lab.vms() if vm.uuid in uuids]
            t0 = time.monotonic()
            results = await lab.act("halt", targets, halt_timeout=timeout)
            wall = time.monotonic() - t0
            assert all(r.ok and "destroyed" in r.message for r in results), results
            return wall
        finally:
            await lab.close()

    (dom,) = vms.make(1)
    t0 = time.monotonic()
    dom.destroy()
    figure("destroy_one_vm", time.monotonic() - t0, "s (libvirt's own cost, for context)")
    one = asyncio.run(halt(1))
    many = asyncio.run(halt(count))
    figure("bulk_halt_1_vm_ignoring_acpi", one, f"s (timeout {timeout:g} s)")
    figure(f"bulk_halt_{count}_vms_ignoring_acpi", many, "s")
    figure(f"bulk_halt_{count}_vs_1_ratio", many / one, "x")


def bench_list(runs: int = 5) -> None:
    def timed(argv: list[str]) -> float:
        t0 = time.monotonic()
        subprocess.run(argv, capture_output=True, check=True)
        return time.monotonic() - t0

    virsh = [timed(["virsh", "-c", SYSTEM, "list", "--all"]) for _ in range(runs)]
    ours = [timed([VM_MANAGER, "-c", SYSTEM, "list"]) for _ in range(runs)]
    figure("virsh_list_all", statistics.median(virsh) * 1000, "ms")
    figure("vm_manager_list", statistics.median(ours) * 1000, "ms")


def bench_quiet_class(vms: RealVMs, work: Path, env: dict[str, str], count: int = 30, runs: int = 5) -> None:
    """``list --json`` and ``share --class`` on a class of running VMs without network, against
    ``vm-manager --version`` in the same run: what is left is the work on the VMs themselves.

    Goal (issue 12): list within 100 ms of --version, share within 300 ms: a VM without an
    interface has no address to wait for, and ``share`` reads none at all.
    """
    lab_class = f"bench{secrets.token_hex(2)}"
    made = []
    for _ in range(count):
        name = f"{vms.prefix}q{len(vms.doms):02d}"
        dom = vms.conn.defineXML(tiny_domain(name, domain_type=vms.domain_type,
                                             meta=LabMeta(owner="bench", lab_class=lab_class)))
        vms.doms.append(dom)
        dom.create()
        made.append(dom)
    run_env = {**os.environ, **env, "SECRET_KEY": secrets.token_hex(32)}

    def timed(*argv: str) -> float:
        t0 = time.monotonic()
        subprocess.run([VM_MANAGER, *argv], capture_output=True, check=True, env=run_env)
        return time.monotonic() - t0

    version, listing, sharing = [], [], []
    for _ in range(runs):  # interleaved, so the machine's mood weighs on all three alike
        version.append(timed("--version"))
        listing.append(timed("-c", SYSTEM, "list", "--json"))
        sharing.append(timed("-c", SYSTEM, "share", "--class", lab_class, "--ttl", "5m"))
    base = statistics.median(version) * 1000
    list_ms, share_ms = statistics.median(listing) * 1000, statistics.median(sharing) * 1000
    figure("vm_manager_version", base, "ms")
    figure(f"list_json_{count}_running_no_network", list_ms, "ms")
    figure(f"share_class_{count}_running", share_ms, "ms")
    figure(f"list_json_{count}_over_version", list_ms - base, "ms (goal <= 100)")
    figure(f"share_class_{count}_over_version", share_ms - base, "ms (goal <= 300)")


def system_answers() -> bool:
    try:
        libvirt.open(SYSTEM).close()
        return True
    except libvirt.libvirtError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--halt-vms", type=int, default=20)
    parser.add_argument("--halt-timeout", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="skip the slow real-VM figures")
    parser.add_argument("--first-table", action="store_true",
                        help="only the 1,000-VM first-table figure (and the imports alone)")
    parser.add_argument("--quiet-class", action="store_true",
                        help="only list/share on 30 running VMs without network, beside --version")
    parser.add_argument("--runs", type=int, default=9, help="start-ups timed for the first-table figure")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_: None, None)
    with tempfile.TemporaryDirectory(prefix="vmm-bench-") as tmp:
        work = Path(tmp)
        env = {"VMM_DATA_DIR": str(work / "data"), "VMM_CONFIG_DIR": str(work / "config"),
               "TERM": "xterm-256color", "VMM_ENV_FILE": "/nonexistent"}
        print(f"# {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
        if args.first_table:
            bench_first_table(work, env, args.runs)
            return
        if args.quiet_class:
            quiet = RealVMs(os.environ.get("VMM_DOMAIN_TYPE", "qemu").replace("auto", "qemu"))
            try:
                bench_quiet_class(quiet, work, env)
            finally:
                quiet.cleanup()
            return
        bench_thousand(work, env, args.runs)
        bench_storm(work, env)
        if not system_answers():
            print(f"# {SYSTEM} does not answer: real-VM figures skipped (make bench starts libvirtd)")
            return
        domain_type = os.environ.get("VMM_DOMAIN_TYPE", "qemu")
        domain_type = "qemu" if domain_type == "auto" else domain_type
        vms = RealVMs(domain_type)
        try:
            bench_list()
            bench_quiet_class(vms, work, env)
            bench_event_to_screen(vms, env, work)
            if not args.quick:
                settings = Settings(data_dir=work / "data", config_dir=work / "config")
                bench_bulk_halt(vms, settings, args.halt_vms, args.halt_timeout)
        finally:
            vms.cleanup()


if __name__ == "__main__":
    main()
