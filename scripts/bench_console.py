"""The browser console's figures, one a line as ``name: value unit``.

Needs a libvirtd on qemu:///system (``make bench`` starts one), the installed noVNC
(``scripts/install_novnc.sh``) and Debian's Chromium; without them the figures are reported as
skipped. It starts tiny SeaBIOS VMs, runs ``vm-manager serve`` as its own process (so that its
memory is its own), makes share links through the server's admin API, and measures:

- ``console_first_frame_{cold,warm}``: share link opened in headless Chromium -> the VM's screen
  first drawn on the canvas (the page's own clock, from the start of the navigation), median of
  several runs, each in a fresh browser context (no cache, no cookie); cold: the VM's only viewer
  (the server starts its endpoint), warm: another viewer holds the VM's console open;
- ``console_pss_*``: the PSS (``/proc/<pid>/smaps_rollup``) of the server and every process under it
  (its endpoint process: websockify's handler, a thread per viewer), idle and with many synthetic
  viewers held open across the VMs (also split: the server alone, the processes under it), and the
  difference per open console;
- ``console_throughput_*``: full-frame (non-incremental) update requests answered per second, Raw
  encoding, by one synthetic RFB client through the server and directly through a websockify of
  our own to the same VM, in alternating rounds; and their ratio.

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
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.domainbuild import tiny_domain  # noqa: E402
from core.lab import SYSTEM_URI  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.web import admin  # noqa: E402

BIN = Path(sys.executable).parent
VM_MANAGER = BIN / "vm-manager"
WEBSOCKIFY = BIN / "websockify"
CHROMIUM = Path(os.environ.get("VMM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
NOVNC = ROOT / "noVNC" / "vendor" / "core" / "rfb.js"
PREFIX = f"vmm-bench-console-{secrets.token_hex(3)}-"
COOKIE = "vmm_console"

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- memory -----------------------------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    """``root`` and every process under it (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss(root: int) -> tuple[float, int]:
    """PSS of ``root`` and its descendants, MiB, and how many processes that is."""
    pids = descendants(root)
    return sum(pss_kib(pid) for pid in pids) / 1024, len(pids)


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


def remove_vms(conn: libvirt.virConnect) -> None:
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(PREFIX):
            continue
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()


# -- a synthetic RFB viewer --------------------------------------------------------------------------
class RfbViewer:
    """An RFB 3.8 client over a websocket: security None, Raw encoding only."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._buffer = bytearray()
        self.width = self.height = self.bpp = 0
        self.received = 0

    async def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            message = await self.ws.receive()
            if message.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"the console closed ({message.type.name} {message.data!r})")
            self._buffer += message.data
            self.received += len(message.data)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def handshake(self) -> None:
        version = await self._read(12)
        if not version.startswith(b"RFB 003."):
            raise ConnectionError(f"not an RFB server: {version!r}")
        await self.ws.send_bytes(b"RFB 003.008\n")
        count = (await self._read(1))[0]
        types = await self._read(count)
        if 1 not in types:
            raise ConnectionError(f"no security type None among {list(types)}")
        await self.ws.send_bytes(b"\x01")
        (result,) = struct.unpack(">I", await self._read(4))
        if result != 0:
            raise ConnectionError(f"security result {result}")
        await self.ws.send_bytes(b"\x01")  # ClientInit: shared
        self.width, self.height = struct.unpack(">HH", await self._read(4))
        pixel_format = await self._read(16)
        self.bpp = pixel_format[0]
        (name_length,) = struct.unpack(">I", await self._read(4))
        await self._read(name_length)
        await self.ws.send_bytes(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw

    async def full_frame(self) -> int:
        """Ask for the whole screen (non-incremental) and read the update; returns its pixel bytes."""
        await self.ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        while True:
            kind = (await self._read(1))[0]
            if kind == 0:
                break
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                _pad, length = struct.unpack(">3sI", await self._read(7))
                await self._read(length)
                continue
            raise ConnectionError(f"unexpected server message {kind}")
        _pad, rects = struct.unpack(">BH", await self._read(3))
        pixels = 0
        for _ in range(rects):
            _x, _y, width, height, encoding = struct.unpack(">HHHHi", await self._read(12))
            if encoding != 0:
                raise ConnectionError(f"unexpected encoding {encoding}")
            size = width * height * self.bpp // 8
            await self._read(size)
            pixels += size
        return pixels

    async def close(self) -> None:
        await self.ws.close()


async def open_through_server(session: aiohttp.ClientSession, base: str, link: str) -> RfbViewer:
    """Share link -> session cookie -> the console websocket, as a browser does it."""
    async with session.get(link, allow_redirects=False) as answer:
        if answer.status != 303:
            raise ConnectionError(f"the share link answered {answer.status}")
        where = answer.headers["Location"]
        secret = answer.cookies[COOKIE].value
    ws = await session.ws_connect(f"{base}{where}/ws", protocols=("binary",), max_msg_size=0,
                                  headers={"Origin": base, "Cookie": f"{COOKIE}={secret}"})
    viewer = RfbViewer(ws)
    await viewer.handshake()
    return viewer


async def open_direct(session: aiohttp.ClientSession, port: int) -> RfbViewer:
    ws = await session.ws_connect(f"ws://127.0.0.1:{port}/", protocols=("binary",), max_msg_size=0)
    viewer = RfbViewer(ws)
    await viewer.handshake()
    return viewer


async def frames_per_second(viewer: RfbViewer, seconds: float) -> tuple[float, float]:
    """Full frames per second and MiB/s over ``seconds``."""
    frames = 0
    size = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        size += await viewer.full_frame()
        frames += 1
    elapsed = time.monotonic() - start
    return frames / elapsed, size / elapsed / (1 << 20)


# -- the server ------------------------------------------------------------------------------------
class Server:
    """``vm-manager serve`` in a process of its own, with a private data dir."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(data_dir=work / "data", config_dir=work / "config", runtime_dir=work / "run")
        self.env = {**os.environ, "VMM_DATA_DIR": str(work / "data"), "VMM_CONFIG_DIR": str(work / "config"),
                    "VMM_RUNTIME_DIR": str(work / "run"), "SECRET_KEY": secrets.token_urlsafe(48),
                    "LIBVIRT_DEFAULT_URI": SYSTEM_URI, "VMM_LOG_FILE": str(work / "server.log")}
        self.env.pop("PUBLIC_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = work / "server.stderr"

    async def start(self) -> None:
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 -- returns at once
                [VM_MANAGER, "-c", SYSTEM_URI, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vm-manager serve exited: {self.stderr.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if await admin.call(self.settings, "GET", "/viewers") is not None:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("vm-manager serve did not answer within 60 s")

    async def links(self, uuids: list[str]) -> dict[str, str]:
        reply = await admin.call(self.settings, "POST", "/links", {"vms": uuids, "ttl": "1h"})
        assert reply is not None
        if reply["errors"]:
            raise RuntimeError(f"share links refused: {reply['errors']}")
        return {row["vm"]: row["url"] for row in reply["links"]}

    async def viewers(self) -> dict[str, Any]:
        reply = await admin.call(self.settings, "GET", "/viewers")
        assert reply is not None
        return reply

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


async def throughput(server: Server, link: str, vnc: int, seconds: float, rounds: int) -> None:
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
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            via_server = await open_through_server(session, server.base, link)
            direct = await open_direct(session, port)
            await via_server.full_frame()
            await direct.full_frame()
            served, straight, served_mib, straight_mib = [], [], [], []
            for _ in range(rounds):
                fps, mib = await frames_per_second(via_server, seconds)
                served.append(fps)
                served_mib.append(mib)
                fps, mib = await frames_per_second(direct, seconds)
                straight.append(fps)
                straight_mib.append(mib)
            await via_server.close()
            await direct.close()
        figure("console_frame_size", f"{via_server.width}x{via_server.height}x{via_server.bpp}bpp")
        figure("console_throughput_server", statistics.median(served), "frames/s")
        figure("console_throughput_direct", statistics.median(straight), "frames/s")
        figure("console_throughput_server_mib", statistics.median(served_mib), "MiB/s")
        figure("console_throughput_direct_mib", statistics.median(straight_mib), "MiB/s")
        figure("console_throughput_ratio", statistics.median(served) / statistics.median(straight),
               "(server/direct)")
    finally:
        direct_proxy.terminate()
        direct_proxy.wait(5)


def missing_tools() -> list[str]:
    return [what for what, ok in (("noVNC (scripts/install_novnc.sh)", NOVNC.is_file()),
                                  (str(CHROMIUM), CHROMIUM.exists())) if not ok]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--first-frame-runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

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
    server = Server(work)
    try:
        doms = start_vms(conn, args.vms)
        await server.start()
        links = await server.links([dom.UUIDString() for dom in doms])
        await asyncio.sleep(3)  # SeaBIOS has drawn its screen
        log("first frames")
        await first_frames_both(server, doms[0].UUIDString(), args.first_frame_runs)
        log("memory")
        await memory(server, links, args.viewers)
        log("throughput")
        fresh = await server.links([doms[1].UUIDString()])
        await throughput(server, fresh[doms[1].UUIDString()], vnc_port(doms[1]), args.seconds, args.rounds)
    finally:
        server.stop()
        remove_vms(conn)
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
