"""The browser console's figures, one a line as ``name: value unit``.

Needs a libvirtd on qemu:///system (``make bench`` starts one), the installed noVNC
(``scripts/install_novnc.sh``) and Debian's Chromium; without them the figures are reported as
skipped. It starts tiny SeaBIOS VMs (and one whose screen never rests), runs ``vm-manager serve``
as its own process (so that its memory is its own), makes share links through the server's admin
API, and measures (``--only`` picks some):

- ``console_first_frame_{cold,warm}``: share link opened in headless Chromium -> the VM's screen
  first drawn on the canvas (the page's own clock, from the start of the navigation), median of
  several runs, each in a fresh browser context (no cache, no cookie); cold: the VM's only viewer
  (the server starts its endpoint), warm: another viewer holds the VM's console open;
- ``console_pss_*``: the PSS (``/proc/<pid>/smaps_rollup``) of the server and every process under it
  (its endpoint process: websockify's handler, a thread per viewer), idle and with many synthetic
  viewers held open across the VMs (also split: the server alone, the processes under it), and the
  difference per open console;
- ``console_throughput_<n>v_*``: full-frame (non-incremental) update requests answered per second
  and MiB/s, Raw encoding, with ``n`` synthetic viewers at once (``--throughput-viewers``, 1 and
  8) on one VM whose screen never rests (a boot sector of its own: see :data:`BUSY_SCREEN`), by
  three paths in alternating rounds (``--rounds``, median): straight on QEMU's VNC port (QEMU's
  own ceiling), through a websockify of our own (the direct path), and through the server; the
  CPU each path's processes spent per MiB, and ``ratio``: server/direct, round by round. One
  viewer shows what a student gets (QEMU's 30 ms refresh bounds it); 8 ask for more than a proxy
  path carries on this machine, so the paths' own costs decide. ``console_throughput_ratio`` is
  the figure at the most viewers;
- ``console_over_limit_*``: with the default limits (a server of its own), one link holding
  ``VMM_VIEWERS_PER_LINK`` viewers: how long the one over it waits for its refusal (the upgrade
  request to the 429, median), how long another link's viewer takes to get the VM's RFB greeting
  beside it, and how many such viewers the VM still takes (up to ``VMM_VIEWERS_PER_VM``).

The synthetic viewer is an RFB 3.8 client of its own over a websocket (share link -> cookie ->
``/console/<uuid>/ws``), no browser. Medians and ratios come from runs side by side in this one
process; compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lab import SYSTEM_URI  # noqa: E402
from core.testing.domains import DiskSpec, remove_domains, tiny_domain  # noqa: E402
from core.testing.processes import cpu_seconds, pss_kib, tree_pss  # noqa: E402
from core.testing.rfb import RfbViewer, open_direct, open_through_server, open_vnc  # noqa: E402
from core.testing.served import Server, free_port  # noqa: E402

BIN = Path(sys.executable).parent
WEBSOCKIFY = BIN / "websockify"
CHROMIUM = Path(os.environ.get("VMM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
NOVNC = ROOT / "noVNC" / "vendor" / "core" / "rfb.js"
PREFIX = f"vmm-bench-console-{secrets.token_hex(3)}-"

# Set by an init script in the page (CDP-injected, so the page's CSP does not apply): the page clock
# when a canvas first holds a lit pixel.
FIRST_FRAME_PROBE = """
(() => {
    const look = () => {
        const canvas = document.querySelector('#screen canvas');
        if (canvas && canvas.width) {
            const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 0; i < px.length; i += 4 * 7) {
                if (px[i] | px[i + 1] | px[i + 2]) {
                    window.__vmmFirstFrame = performance.now();
                    return;
                }
            }
        }
        requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
})();
"""


def figure(name: str, value: float | str, unit: str = "") -> None:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    print(f"{name}: {text} {unit}".rstrip(), flush=True)


def log(message: str) -> None:
    print(f"bench_console: {message}", file=sys.stderr, flush=True)


# -- VMs --------------------------------------------------------------------------------------------
def vnc_port(dom: libvirt.virDomain) -> int:
    graphics = ET.fromstring(dom.XMLDesc()).find("devices/graphics[@type='vnc']")
    assert graphics is not None
    return int(graphics.get("port", "-1"))


def start_vms(conn: libvirt.virConnect, count: int) -> list[libvirt.virDomain]:
    doms = []
    for index in range(count):
        dom = conn.defineXML(tiny_domain(f"{PREFIX}{index}"))
        doms.append(dom)
        dom.create()
    return doms


# -- viewer limits ----------------------------------------------------------------------------------
async def over_limit(work: Path, uuid: str, rounds: int) -> None:
    """The default limits at work: one link full, the one over it refused, others still served."""
    from core.settings import ConsoleSettings

    limits = ConsoleSettings()
    server = Server(work, limits.viewers_per_link, limits.viewers_per_vm)
    await server.start()
    held: list[RfbViewer] = []
    try:
        async with aiohttp.ClientSession() as session:
            link = (await server.links([uuid]))[uuid]
            for _ in range(limits.viewers_per_link):
                held.append(await open_through_server(session, server.base, link))
            refusals = []
            for _ in range(rounds):
                started = time.perf_counter()
                try:
                    held.append(await open_through_server(session, server.base, link))
                except aiohttp.WSServerHandshakeError as exc:
                    refusals.append(time.perf_counter() - started)
                    if exc.status != 429:
                        raise
                else:
                    raise RuntimeError("the viewer over VMM_VIEWERS_PER_LINK was let in")
            figure("console_over_limit_refused", statistics.median(refusals) * 1000, "ms")
            others = []
            while len(held) < limits.viewers_per_vm:
                other = (await server.links([uuid]))[uuid]
                started = time.perf_counter()
                held.append(await open_through_server(session, server.base, other))  # up to the RFB init
                others.append(time.perf_counter() - started)
            figure("console_over_limit_other_link_opened", statistics.median(others) * 1000, "ms")
            figure("console_over_limit_vm_viewers", str(len(held)))
            try:
                await open_through_server(session, server.base, (await server.links([uuid]))[uuid])
            except aiohttp.WSServerHandshakeError as exc:
                figure("console_over_limit_vm_full", str(exc.status))
            for viewer in held:
                await viewer.close()
    finally:
        server.stop()


# -- the measurements -------------------------------------------------------------------------------
async def first_frames(server: Server, uuid: str, runs: int, label: str) -> None:
    from playwright.async_api import async_playwright

    times, walls = [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs + 1):  # the first run warms Chromium up and is not counted
                link = (await server.links([uuid]))[uuid]
                context = await browser.new_context(viewport={"width": 1024, "height": 700})
                await context.add_init_script(FIRST_FRAME_PROBE)
                page = await context.new_page()
                start = time.monotonic()
                await page.goto(link, wait_until="commit")
                drawn = None
                while drawn is None and time.monotonic() - start < 30:
                    drawn = await page.evaluate("window.__vmmFirstFrame ?? null")
                    if drawn is None:
                        await asyncio.sleep(0.01)
                if drawn is None:
                    raise RuntimeError("no frame drawn within 30 s")
                redirects = await page.evaluate("performance.getEntriesByType('navigation')[0].redirectCount")
                walls.append((time.monotonic() - start) * 1000)
                times.append(drawn)
                await context.close()
                if redirects != 1:
                    log(f"navigation counted {redirects} redirects (expected 1: the share link's 303)")
        finally:
            await browser.close()
    times, walls = times[1:], walls[1:]
    figure(f"console_first_frame_{label}_median", statistics.median(times), "ms")
    figure(f"console_first_frame_{label}_min", min(times), "ms")
    figure(f"console_first_frame_{label}_max", max(times), "ms")
    figure(f"console_first_frame_{label}_wall_median", statistics.median(walls), "ms")
    figure(f"console_first_frame_{label}_runs", str(len(times)))


async def first_frames_both(server: Server, uuid: str, runs: int) -> None:
    """Cold: the VM's first viewer (the server starts its endpoint); warm: another viewer holds it open."""
    await first_frames(server, uuid, runs, "cold")
    link = (await server.links([uuid]))[uuid]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        holder = await open_through_server(session, server.base, link)
        try:
            await first_frames(server, uuid, runs, "warm")
        finally:
            await holder.close()


async def memory(server: Server, links: dict[str, str], viewers: int) -> None:
    assert server.proc is not None
    # The endpoints of the first-frame runs stop with their last viewer: wait for none to be left.
    for _ in range(75):
        if not (await server.viewers())["endpoints"]:
            break
        await asyncio.sleep(0.2)
    idle, idle_procs = tree_pss(server.proc.pid)
    figure("console_pss_idle", idle, "MiB")
    figure("console_processes_idle", str(idle_procs))
    uuids = list(links)
    opened: list[RfbViewer] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        try:
            start = time.monotonic()
            # In waves of one viewer per VM: the first viewer of a VM starts its endpoint.
            for wave in range(0, viewers, len(uuids)):
                batch = [uuids[i % len(uuids)] for i in range(wave, min(viewers, wave + len(uuids)))]
                opened += await asyncio.gather(*(open_through_server(session, server.base, links[u])
                                                 for u in batch))
            await asyncio.gather(*(viewer.full_frame() for viewer in opened))
            figure("console_open_viewers_time", time.monotonic() - start, "s")
            await asyncio.sleep(1.0)
            counts = await server.viewers()
            held, held_procs = tree_pss(server.proc.pid)
            figure("console_viewers_open", f"{counts['total']} on {len(counts['endpoints'])} VMs")
            figure("console_pss_with_viewers", held, "MiB")
            server_only = pss_kib(server.proc.pid) / 1024
            figure("console_pss_server_with_viewers", server_only, "MiB")
            figure("console_pss_endpoints_with_viewers", held - server_only, "MiB")
            figure("console_processes_with_viewers", str(held_procs))
            figure("console_pss_per_viewer", (held - idle) / max(1, len(opened)) * 1024, "KiB")
        finally:
            await asyncio.gather(*(viewer.close() for viewer in opened), return_exceptions=True)


# -- throughput -------------------------------------------------------------------------------------
# QEMU answers an update request only at its VNC refresh timer's next tick, and that timer slows down
# while the screen does not change (ui/vnc.c: 30 ms, +50 ms a tick without change up to 3 s, halved
# after a change). On SeaBIOS's idle screen, whose blinking cursor is its only change, a full frame
# comes every 100-200 ms (7 frames/s) through any path, straight on QEMU's VNC port too: such a
# figure tells nothing about the path. So the throughput VM boots this sector (16-bit real mode,
# from a read-only disk), which keeps the whole text screen changing: the PIT set to 100 Hz, at each
# tick every character and colour byte of the 80x25 screen moves on by one, then hlt until the next
# one (10 % of a core under TCG here: the VM runs only for these figures). The timer stays at its
# 30 ms floor: about 33 full frames/s a viewer, and more viewers ask for more (QEMU sends a viewer
# one forced update a tick).
BUSY_SCREEN = bytes.fromhex(
    "fa31c08ed0bc007c"            # cli; ss:sp = 0:7c00
    "b036e643b89c2ee64088e0e640"  # PIT channel 0, mode 3, divisor 11932 (100 Hz)
    "b800b88ec0fb"                # es = 0xb800 (the text screen); sti
    "31ffb9a00f"                  # again: di = 0; cx = 4000 (80x25 characters and colours)
    "26fe0547e2fa"                #   inc byte [es:di]; inc di; loop
    "f4ebf2")                     # hlt; jmp again


def start_busy_vm(conn: libvirt.virConnect, directory: Path) -> libvirt.virDomain:
    """A VM whose screen never rests (:data:`BUSY_SCREEN` on a 1 MiB raw disk in ``directory``)."""
    disk = directory / "busy-screen.img"
    disk.write_bytes((BUSY_SCREEN.ljust(510, b"\0") + b"\x55\xaa").ljust(1 << 20, b"\0"))
    disk.chmod(0o644)
    disks = [DiskSpec(os.fspath(disk), "raw", readonly=True)]
    dom = conn.defineXML(tiny_domain(f"{PREFIX}busy", disks=disks))
    dom.create()
    return dom


def machine_busy() -> tuple[float, float]:
    """The machine's busy and total CPU time so far (``/proc/stat``), in clock ticks."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)  # all but idle and iowait


@dataclass
class Rounds:
    """One path's rounds at one number of viewers."""

    fps: list[float] = field(default_factory=list)
    mib: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # share of a core, the path's processes
    root_cpu: list[float] = field(default_factory=list)  # of them, its first one (serve, websockify)
    client: list[float] = field(default_factory=list)  # share of a core, this process


async def one_round(viewers: list[RfbViewer], seconds: float) -> tuple[float, float, float]:
    """Every viewer asks for full frames back to back for ``seconds``: frames/s and MiB/s of them
    all together, and the time it took (until the last frame asked for came)."""
    deadline = time.monotonic() + seconds

    async def run(viewer: RfbViewer) -> tuple[int, int]:
        frames = size = 0
        while time.monotonic() < deadline:
            size += await viewer.full_frame()
            frames += 1
        return frames, size

    start = time.monotonic()
    done = await asyncio.gather(*(run(viewer) for viewer in viewers))
    elapsed = time.monotonic() - start
    return (sum(f for f, _ in done) / elapsed, sum(b for _, b in done) / elapsed / (1 << 20), elapsed)


async def throughput(server: Server, link: str, vnc: int, seconds: float, rounds: int,
                     levels: list[int]) -> None:
    """Full frames through three paths to the same VM, in alternating rounds: straight on QEMU's VNC
    port (what QEMU gives: the ceiling), a websockify of our own (the direct path), and the server
    (share link -> cookie -> serve -> its endpoint process -> VNC)."""
    assert server.proc is not None
    port = free_port()
    direct_proxy = subprocess.Popen(  # noqa: ASYNC220 -- returns at once
        [WEBSOCKIFY, f"127.0.0.1:{port}", f"127.0.0.1:{vnc}"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            await asyncio.sleep(0.05)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
            paths = {"vnc": (None, lambda: open_vnc(vnc)),
                     "direct": (direct_proxy.pid, lambda: open_direct(session, port)),
                     "server": (server.proc.pid, lambda: open_through_server(session, server.base, link))}
            ratios = {count: await throughput_level(paths, count, seconds, rounds, count == levels[0])
                      for count in levels}
        most = max(levels)
        figure("console_throughput_ratio", ratios[most], f"(server/direct, {most} viewers)")
    finally:
        direct_proxy.terminate()
        direct_proxy.wait(5)


async def throughput_level(paths: dict[str, tuple[int | None, Any]], count: int, seconds: float,
                           rounds: int, first: bool) -> float:
    """Rounds of ``count`` viewers on each path; prints their figures, returns the server/direct ratio."""
    viewers: dict[str, list[RfbViewer]] = {}
    try:
        for name, (_pid, opener) in paths.items():
            viewers[name] = [await opener() for _ in range(count)]
            await asyncio.gather(*(viewer.full_frame() for viewer in viewers[name]))
        if first:
            sample = viewers["server"][0]
            figure("console_frame_size", f"{sample.width}x{sample.height}x{sample.bpp}bpp")
        results = {name: Rounds() for name in paths}
        for index in range(rounds):
            # Each round runs the paths one after the other, in turn forwards and backwards, so that
            # none is always first or last.
            order = list(paths) if index % 2 == 0 else list(reversed(paths))
            for name in order:
                pid = paths[name][0]
                cpu, client, machine = cpu_seconds(pid), time.process_time(), machine_busy()
                fps, mib, elapsed = await one_round(viewers[name], seconds)
                row = results[name]
                row.fps.append(fps)
                row.mib.append(mib)
                cpu_after, machine_after = cpu_seconds(pid), machine_busy()
                row.root_cpu.append((cpu_after[0] - cpu[0]) / elapsed)
                row.cpu.append((cpu_after[1] - cpu[1]) / elapsed)
                row.client.append((time.process_time() - client) / elapsed)
                busy = (machine_after[0] - machine[0]) / max(1, machine_after[1] - machine[1])
                log(f"round {index + 1}, {count} viewer(s), {name}: {fps:.1f} frames/s, {mib:.1f} MiB/s, "
                    f"path CPU {row.cpu[-1]:.0%} of a core ({row.root_cpu[-1]:.0%} its first process), "
                    f"client {row.client[-1]:.0%}, machine {busy:.0%} busy")
    finally:
        await asyncio.gather(*(viewer.close() for group in viewers.values() for viewer in group),
                             return_exceptions=True)
    per_viewer = statistics.median(results["vnc"].fps) / count
    if per_viewer < 20:
        log(f"warning: {per_viewer:.1f} frames/s a viewer straight on QEMU's VNC: the VM's screen is not "
            "changing, and QEMU's refresh timer, not the paths, sets these figures")
    label = f"console_throughput_{count}v"
    for name, row in results.items():
        figure(f"{label}_{name}", statistics.median(row.fps), "frames/s")
        figure(f"{label}_{name}_mib", statistics.median(row.mib), "MiB/s")
        if paths[name][0] is not None:
            figure(f"{label}_{name}_cpu", statistics.median(row.cpu) * 100, "% of a core")
            if name == "server":
                figure(f"{label}_{name}_cpu_serve", statistics.median(row.root_cpu) * 100,
                       "% of a core (the serve process; the rest: its endpoint process)")
            figure(f"{label}_{name}_cpu_per_mib",
                   statistics.median(c / m * 1000 for c, m in zip(row.cpu, row.mib, strict=True)), "ms/MiB")
    figure(f"{label}_client_cpu_max", max(c for row in results.values() for c in row.client) * 100,
           "% of a core")
    # Side by side: each round's server figure against the direct one of the same round.
    ratios = sorted(s / d for s, d in zip(results["server"].fps, results["direct"].fps, strict=True))
    figure(f"{label}_ratio", statistics.median(ratios),
           f"(server/direct, median of {rounds} rounds; {ratios[0]:.2f}-{ratios[-1]:.2f})")
    figure(f"{label}_direct_of_vnc", statistics.median(results["direct"].fps) / statistics.median(
        results["vnc"].fps), "(direct/straight on VNC)")
    return statistics.median(ratios)


def missing_tools() -> list[str]:
    return [what for what, ok in (("noVNC (scripts/install_novnc.sh)", NOVNC.is_file()),
                                  (str(CHROMIUM), CHROMIUM.exists())) if not ok]


PARTS = ("first-frame", "memory", "throughput", "limits")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), metavar="PARTS",
                        help=f"which figures, comma-separated among {', '.join(PARTS)} (default: all)")
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--first-frame-runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one throughput round")
    parser.add_argument("--rounds", type=int, default=9, help="throughput rounds of each path")
    parser.add_argument("--throughput-viewers", default="1,8", metavar="N,...",
                        help="viewers of each path at once, one level after the other (default 1,8)")
    args = parser.parse_args()
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    if parts - set(PARTS):
        parser.error(f"--only: unknown {', '.join(sorted(parts - set(PARTS)))}")
    levels = [int(n) for n in args.throughput_viewers.split(",")]

    missing = missing_tools()
    try:
        conn = libvirt.open(SYSTEM_URI)
    except libvirt.libvirtError:
        missing.append(f"{SYSTEM_URI} (make bench starts libvirtd)")
        conn = None
    if missing:
        figure("console", f"skipped: no {', '.join(missing)}")
        return 0

    work = Path(tempfile.mkdtemp(prefix="vmm-bc-"))
    shared = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp"))  # QEMU reads the busy VM's disk here
    os.chmod(shared, 0o755)
    server = Server(work)
    try:
        wanted = args.vms if parts & {"first-frame", "memory"} else 1 if "limits" in parts else 0
        doms = start_vms(conn, wanted)
        await server.start()
        await asyncio.sleep(3)  # SeaBIOS has drawn its screen
        if "first-frame" in parts:
            log("first frames")
            await first_frames_both(server, doms[0].UUIDString(), args.first_frame_runs)
        if "memory" in parts:
            log("memory")
            await memory(server, await server.links([dom.UUIDString() for dom in doms]), args.viewers)
        if "throughput" in parts:
            log("throughput")
            busy = start_busy_vm(conn, shared)
            await asyncio.sleep(2)  # booted, in its loop
            link = (await server.links([busy.UUIDString()]))[busy.UUIDString()]
            await throughput(server, link, vnc_port(busy), args.seconds, args.rounds, levels)
        if "limits" in parts:
            log("viewer limits")
            (work / "limits").mkdir()
            await over_limit(work / "limits", doms[0].UUIDString(), args.rounds * 3)
    except BaseException:
        for path in (server.stderr, work / "server.log"):
            with contextlib.suppress(OSError):
                log(f"{path.name}, its end:\n{path.read_text()[-3000:]}")
        raise
    finally:
        server.stop()
        remove_domains(conn, PREFIX)
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
