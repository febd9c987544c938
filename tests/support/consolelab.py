"""Helpers of the browser tests: the console server, RFB parsing, VM screenshots, reboot events.

:class:`Serve` is ``vm-manager serve`` as an operator runs it, a process of its own; share links
come from ``vm-manager share`` against the same data dir. :class:`ConsoleServer` runs the same
server in the test's own process, for a test that needs its insides (the portal test adds an
account to its database and waits on its inventory). :class:`Harness` is a stand-in that serves
the console page the way the server does (the page at ``/console/<uuid>``, our files at
``/static/``, noVNC at ``/novnc/``, the RFB websocket at ``/console/<uuid>/ws``) and relays its
websocket to a ``websockify`` in front of the VM's VNC port, recording what the browser sends (RFB
messages from the client) so that tests can read the key events off the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import libvirt
from aiohttp import web
from aiohttp.test_utils import unused_port

from support.cli import CHECKOUT

NOVNC = CHECKOUT / "noVNC"
VENDOR = NOVNC / "vendor"
CHROMIUM = Path(os.environ.get("VMM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
WEBSOCKIFY = Path(sys.executable).with_name("websockify")
VM_MANAGER = Path(sys.executable).with_name("vm-manager")
# What the web server sends with the page: only our own scripts run (no inline ones).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}


# ---- RFB, as the browser speaks it ----

@dataclass(frozen=True)
class Key:
    """One key event from the client: QEMU's extended key event carries a scancode, a plain one none."""

    keysym: int
    down: bool
    scancode: int | None


@dataclass
class ClientStream:
    """Parses the client-to-server half of an RFB 3.8 session (security type None, as QEMU's VNC offers)."""

    buffer: bytearray = field(default_factory=bytearray)
    stage: str = "version"
    keys: list[Key] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    error: str | None = None

    def feed(self, data: bytes) -> None:
        if self.error:
            return
        self.buffer += data
        while self.error is None and (size := self._next_size()) is not None and len(self.buffer) >= size:
            message = bytes(self.buffer[:size])
            del self.buffer[:size]
            self._take(message)

    def _next_size(self) -> int | None:
        buf = self.buffer
        if self.stage == "version":
            return 12
        if self.stage in ("security", "init"):
            return 1 if buf else None
        if not buf:
            return None
        kind = buf[0]
        fixed = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10}
        if kind in fixed:
            return fixed[kind]
        needs = {2: 4, 6: 8, 248: 9, 251: 8, 255: 2}
        if kind not in needs:
            self.error = f"unknown client message type {kind}"
            return None
        if len(buf) < needs[kind]:
            return None
        if kind == 2:
            return 4 + 4 * int.from_bytes(buf[2:4], "big")
        if kind == 6:
            return 8 + abs(int.from_bytes(buf[4:8], "big", signed=True))
        if kind == 248:
            return 9 + buf[8]
        if kind == 251:
            return 8 + 16 * buf[6]
        if buf[1] == 0:  # QEMU extended key event
            return 12
        self.error = f"unknown QEMU client message {buf[1]}"
        return None

    def _take(self, message: bytes) -> None:
        if self.stage == "version":
            self.stage = "security"
            return
        if self.stage == "security":
            self.stage = "init"
            return
        if self.stage == "init":
            self.stage = "normal"
            return
        kind = message[0]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == 4:
            self.keys.append(Key(int.from_bytes(message[4:8], "big"), bool(message[1]), None))
        elif kind == 255:
            down = bool(int.from_bytes(message[2:4], "big"))
            scancode = int.from_bytes(message[8:12], "big")
            self.keys.append(Key(int.from_bytes(message[4:8], "big"), down, scancode))


# ---- the VMs ----

def vnc_port(dom: libvirt.virDomain) -> int | None:
    """The VNC port of a running domain (autoport), or None."""
    if not dom.isActive():
        return None
    graphics = ET.fromstring(dom.XMLDesc()).find("devices/graphics[@type='vnc']")
    if graphics is None or int(graphics.get("port", "-1")) <= 0:
        return None
    return int(graphics.get("port", "-1"))


def screenshot(dom: libvirt.virDomain) -> bytes:
    """The VM's screen as QEMU dumps it (``virsh screenshot``): a PNG, or a PPM from older QEMUs."""
    conn = dom.connect()
    stream = conn.newStream(0)
    try:
        dom.screenshot(stream, 0)
        chunks = []
        while data := stream.recv(1 << 20):
            chunks.append(data)
        stream.finish()
    except libvirt.libvirtError:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return b"".join(chunks)


def parse_ppm(data: bytes) -> tuple[int, int, bytes]:
    """A binary PPM (P6, maxval 255): width, height, RGB bytes."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maxval != 255:
        raise ValueError(f"not an 8-bit P6 PPM: {magic!r} maxval {maxval}")
    pixels = data[pos + 1:pos + 1 + width * height * 3]
    if len(pixels) != width * height * 3:
        raise ValueError("truncated PPM")
    return width, height, pixels


# ---- the same server (core.web), in the test's own loop ----

class ConsoleServer:
    """The server of ``vm-manager serve`` in the test's process: a Lab on qemu:///system and the
    aiohttp app on a loopback port, for a test that needs its insides (:class:`Serve` otherwise).

    :meth:`share` makes a share link the way ``vm-manager share`` does (the token store).
    """

    def __init__(self, settings: Any, uri: str) -> None:
        self.settings = settings
        self.uri = uri
        self.lab: Any = None
        self.app: web.Application | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, *, expiry_interval: float = 0.5) -> None:
        import secrets

        from core.lab import Lab
        from core.web.app import make_app
        from core.web.middlewares import runner_options

        self.lab = await asyncio.wait_for(Lab.open(self.settings, self.uri), 30)
        port = unused_port()
        self.app = make_app(self.settings, self.lab, secret_key=secrets.token_urlsafe(48), host="127.0.0.1",
                            port=port, expiry_interval=expiry_interval)
        self._runner = web.AppRunner(self.app, handle_signals=False, **runner_options(self.settings))  # type: ignore[arg-type]
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.lab is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lab.close(), 15)

    @property
    def store(self) -> Any:
        from core.web.keys import STORE

        assert self.app is not None
        return self.app[STORE]

    async def share(self, dom: libvirt.virDomain, ttl: float = 3600) -> tuple[str, str]:
        """A share link of ``dom`` (once the server's inventory has it): its URL and link id."""
        from core.web.keys import find_vm

        uuid = dom.UUIDString()
        deadline = time.monotonic() + 20
        while (vm := find_vm(self.lab, uuid)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{dom.name()} never reached the server's inventory")
            await asyncio.sleep(0.05)
        link, token = self.store.create_link(vm.uuid, vm.name, ttl)
        return f"{self.url}/c/{token}", link.id

    def viewers(self) -> int:
        from core.web.keys import VIEWERS

        assert self.app is not None
        return len(self.app[VIEWERS])


# ---- the real console server, as an operator runs it ----

SHARED = re.compile(r"^(?P<url>\S+/c/\S+)  expires \S+  id (?P<id>[0-9a-f]{8})  vm (?P<vm>\S+)$")


class Serve:
    """``vm-manager -c URI serve`` in a process of its own: its own data, config and run dirs,
    SECRET_KEY, PUBLIC_URL on a loopback port. :meth:`share` and :meth:`revoke` run ``vm-manager
    share`` / ``revoke`` against the same dirs (they reach the server through its admin API), and
    :meth:`viewers` asks that API, as the TUI does.
    """

    def __init__(self, home: Path, run: Path, uri: str) -> None:
        from core.settings import Settings

        self.uri = uri
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(data_dir=home / "data", config_dir=home / "config", runtime_dir=run)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.fspath(home),
                    "VMM_ENV_FILE": "/nonexistent", "VMM_DATA_DIR": os.fspath(home / "data"),
                    "VMM_CONFIG_DIR": os.fspath(home / "config"), "VMM_RUNTIME_DIR": os.fspath(run),
                    "SECRET_KEY": secrets.token_urlsafe(48), "PUBLIC_URL": self.url}
        self.home = home
        self.process: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self._serving = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, within: float = 60) -> None:
        self.process = subprocess.Popen(
            [VM_MANAGER, "-c", self.uri, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, cwd=self.home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + within
        while not self._serving.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vm-manager serve did not start: {self.last_words()}")

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))
            if line.startswith("serving consoles at "):
                self._serving.set()

    def last_words(self) -> str:
        return " / ".join(self.stderr[-20:]) or "nothing on stderr"

    def running(self) -> None:
        assert self.process is not None
        status = self.process.poll()
        assert status is None, f"vm-manager serve is gone (exit status {status}): {self.last_words()}"

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; its exit status (its stderr read to the end)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"vm-manager serve ignored SIGTERM for 30 s: {self.last_words()}") from None
        if self._reader is not None:
            self._reader.join(5)
        return status

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """``vm-manager -c URI ARGS`` with the server's environment: exit status, stdout, stderr."""
        process = await asyncio.create_subprocess_exec(
            VM_MANAGER, "-c", self.uri, *args, env=self.env, cwd=self.home, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def share(self, dom: libvirt.virDomain, ttl: str = "1h") -> tuple[str, str]:
        """``vm-manager share NAME``: the link's URL and id. Retried while the server's inventory
        has not seen the new VM yet (the server answers "no such VM")."""
        self.running()
        deadline = time.monotonic() + 20
        while True:
            status, out, err = await self.cli("share", dom.name(), "--ttl", ttl)
            if status == 0:
                break
            if "no such VM" not in err or time.monotonic() > deadline:
                raise AssertionError(f"vm-manager share {dom.name()} failed ({status}): {err.strip()}")
            await asyncio.sleep(0.2)
        rows = [m for line in out.splitlines() if (m := SHARED.match(line))]
        assert [row["vm"] for row in rows] == [dom.name()], f"vm-manager share printed {out!r}"
        assert rows[0]["url"].startswith(f"{self.url}/c/"), f"the link does not point at PUBLIC_URL: {out!r}"
        return rows[0]["url"], rows[0]["id"]

    async def revoke(self, link_id: str) -> str:
        """``vm-manager revoke ID``: its output."""
        self.running()
        status, out, err = await self.cli("revoke", link_id)
        assert status == 0, f"vm-manager revoke {link_id} failed ({status}): {err.strip()}"
        return out

    async def viewers(self, dom: libvirt.virDomain) -> int:
        """The server's open consoles of ``dom`` (its admin API)."""
        from core.links import client as admin_client

        reply = await admin_client.call(self.settings, "GET", "/viewers")
        assert reply is not None, "the admin API does not answer"
        return int(reply["by_vm"].get(dom.UUIDString(), 0))


# ---- a stand-in server that shows the RFB traffic ----

class Harness:
    """Serves the console page like the web server does, and relays its websocket to websockify.

    One websockify per VNC port, started on first use; every websocket session's client bytes are
    parsed into :attr:`streams` (per VM uuid, in order).
    """

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn
        self.url = ""
        self.streams: dict[str, list[ClientStream]] = {}
        self.sessions: dict[str, int] = {}
        self._proxies: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    def console_url(self, dom: libvirt.virDomain) -> str:
        return f"{self.url}/console/{dom.UUIDString()}"

    def keys(self, uuid: str) -> list[Key]:
        return [key for stream in self.streams.get(uuid, []) for key in stream.keys]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/console/{uuid}", self._page)
        app.router.add_get("/console/{uuid}/ws", self._ws)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_static("/novnc/", VENDOR)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for proc, _port in self._proxies.values():
            proc.terminate()
        for proc, _port in self._proxies.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _domain(self, uuid: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            return None

    async def _page(self, request: web.Request) -> web.StreamResponse:
        if self._domain(request.match_info["uuid"]) is None:
            raise web.HTTPNotFound()
        return web.FileResponse(NOVNC / "console.html", headers={
            "Content-Security-Policy": CSP, "Cache-Control": "no-store", "Content-Type": "text/html"})

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(NOVNC / name, headers={"Content-Type": STATIC_FILES[name]})

    async def _websockify(self, vnc: int) -> int:
        async with self._lock:
            if vnc in self._proxies and self._proxies[vnc][0].poll() is None:
                return self._proxies[vnc][1]
            port = unused_port()
            proc = spawn_websockify(port, vnc)
            self._proxies[vnc] = (proc, port)
            await wait_listening(port, proc)
            return port

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        uuid = request.match_info["uuid"]
        dom = self._domain(uuid)
        if dom is None:
            raise web.HTTPNotFound()
        browser = web.WebSocketResponse(protocols=("binary",), max_msg_size=0)
        await browser.prepare(request)
        vnc = vnc_port(dom)
        if vnc is None:
            await browser.close(code=1011, message=b"VM not running")
            return browser
        stream = ClientStream()
        self.streams.setdefault(uuid, []).append(stream)
        self.sessions[uuid] = self.sessions.get(uuid, 0) + 1
        port = await self._websockify(vnc)
        async with aiohttp.ClientSession() as session:
            try:
                target = await session.ws_connect(f"ws://127.0.0.1:{port}/", protocols=("binary",),
                                                  max_msg_size=0)
            except aiohttp.ClientError:
                await browser.close(code=1011, message=b"VM not reachable")
                return browser
            await relay(browser, target, stream)
        return browser


async def relay(browser: web.WebSocketResponse, target: aiohttp.ClientWebSocketResponse,
                stream: ClientStream) -> None:
    """Pump both ways; the first direction to end closes the other."""

    async def up() -> None:
        async for msg in browser:
            if msg.type == aiohttp.WSMsgType.BINARY:
                stream.feed(msg.data)
                await target.send_bytes(msg.data)

    async def down() -> None:
        async for msg in target:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await browser.send_bytes(msg.data)

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await target.close()
        await browser.close()


def spawn_websockify(port: int, vnc: int) -> subprocess.Popen[bytes]:
    """``websockify 127.0.0.1:PORT 127.0.0.1:VNC`` (returns at once: a plain call, not an async one)."""
    return subprocess.Popen([WEBSOCKIFY, f"127.0.0.1:{port}", f"127.0.0.1:{vnc}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)



async def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"websockify exited ({proc.returncode})") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {within:g} s") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return


class RebootWatch:
    """libvirt's REBOOT events of one domain (a guest reset: what Ctrl+Alt+Del makes SeaBIOS do)."""

    def __init__(self, dom: libvirt.virDomain) -> None:
        from core.virt.eventloop import core_loop

        core_loop()  # the process's libvirt event loop: events are dispatched there
        self.count = 0
        self._event = threading.Event()
        self._conn = libvirt.open("qemu:///system")
        target = self._conn.lookupByUUIDString(dom.UUIDString())
        self._id = self._conn.domainEventRegisterAny(target, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
                                                     self._on_reboot, None)

    def _on_reboot(self, *_args: object) -> None:
        self.count += 1
        self._event.set()

    async def wait(self, within: float) -> bool:
        return await asyncio.to_thread(self._event.wait, within)

    async def quiet(self, period: float, within: float) -> bool:
        """True once no reset came for ``period`` seconds; False if resets go on for ``within``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen = self.count
            await asyncio.sleep(period)
            if self.count == seen:
                return True
        return False

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.domainEventDeregisterAny(self._id)
        with contextlib.suppress(libvirt.libvirtError):
            self._conn.close()



async def until(page: Any, expression: str, within_ms: float = 10_000, what: str = "") -> Any:
    """Poll a JS expression until truthy and return it. (Playwright's ``wait_for_function`` evals its
    predicate inside the page, which the console's CSP forbids; ``evaluate`` goes through the
    debugger protocol and is not subject to it.)"""
    deadline = time.monotonic() + within_ms / 1000
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or expression} still false after {within_ms / 1000:g} s")
        await asyncio.sleep(0.05)


# Page-side: RGBA -> RGB -> base64, the one way pixels come out of the browser.
_RGB_BASE64 = """
    const toRgbBase64 = (rgba) => {
        const rgb = new Uint8Array(rgba.length / 4 * 3);
        for (let i = 0, j = 0; i < rgba.length; i += 4) {
            rgb[j++] = rgba[i]; rgb[j++] = rgba[i + 1]; rgb[j++] = rgba[i + 2];
        }
        let text = '';
        for (let i = 0; i < rgb.length; i += 0x8000) {
            text += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
        }
        return btoa(text);
    };
"""


async def canvas_rgb(page: Any) -> tuple[int, int, bytes]:
    """The noVNC canvas of the console page, unscaled: width, height, RGB bytes."""
    width, height, data = await page.evaluate(f"""() => {{
        {_RGB_BASE64}
        const canvas = document.querySelector('#screen canvas');
        if (!canvas || !canvas.width) {{ return [0, 0, '']; }}
        const rgba = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        return [canvas.width, canvas.height, toRgbBase64(rgba)];
    }}""")
    return width, height, base64.b64decode(data)


async def decode_image(page: Any, data: bytes) -> tuple[int, int, bytes]:
    """A screenshot as libvirt hands it over: PPM (older QEMU) here, PNG by the browser's own decoder."""
    if data.startswith(b"P6"):
        return parse_ppm(data)
    width, height, rgb = await page.evaluate(f"""async (b64) => {{
        {_RGB_BASE64}
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const bitmap = await createImageBitmap(new Blob([bytes], {{ type: 'image/png' }}),
            {{ colorSpaceConversion: 'none', premultiplyAlpha: 'none' }});
        const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
        const ctx = canvas.getContext('2d');
        ctx.drawImage(bitmap, 0, 0);
        return [bitmap.width, bitmap.height,
                toRgbBase64(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data)];
    }}""", base64.b64encode(data).decode())
    return width, height, base64.b64decode(rgb)


async def vm_screen(page: Any, dom: libvirt.virDomain) -> tuple[int, int, bytes]:
    """The VM's screen as QEMU has it (``virsh screenshot``): width, height, RGB bytes."""
    return await decode_image(page, await asyncio.to_thread(screenshot, dom))


# ---- the console page ----

CONNECT_TIMEOUT_MS = 20_000


async def open_console(browser: Any, url: str, *, width: int = 1024, height: int = 700,
                       locale: str = "en-US") -> tuple[Any, list[str]]:
    """A new page on the console URL, waited until connected; returns it and its uncaught errors."""
    context = await browser.new_context(viewport={"width": width, "height": height}, locale=locale)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = await page.goto(url)
    assert response is not None
    assert response.ok, f"{url} answered {response.status}"
    await wait_state(page, "connected")
    return page, errors


async def wait_state(page: Any, state: str, *, connects: int | None = None,
                     within_ms: float = CONNECT_TIMEOUT_MS) -> None:
    condition = f"document.body.dataset.state === '{state}'"
    if connects is not None:
        condition += f" && Number(document.body.dataset.connects) >= {connects}"
    try:
        await until(page, condition, within_ms)
    except TimeoutError as exc:
        status = await page.evaluate("document.getElementById('status').textContent")
        data = await page.evaluate("JSON.stringify(document.body.dataset)")
        raise AssertionError(f"the console did not reach {condition}: status {status!r}, {data}") from exc


def compare(a: tuple[int, int, bytes], b: tuple[int, int, bytes]) -> tuple[float, float]:
    """Mean absolute difference per channel (0-255), and the share of pixels that differ clearly."""
    (wa, ha, pa), (wb, hb, pb) = a, b
    assert (wa, ha) == (wb, hb), f"sizes differ: canvas {wa}x{ha}, VM {wb}x{hb}"
    total = sum(abs(x - y) for x, y in zip(pa, pb, strict=True))
    differing = sum(1 for i in range(0, len(pa), 3)
                    if abs(pa[i] - pb[i]) + abs(pa[i + 1] - pb[i + 1]) + abs(pa[i + 2] - pb[i + 2]) > 48)
    return total / len(pa), differing / (wa * ha)


def lit_share(image: tuple[int, int, bytes]) -> float:
    """The share of pixels that are not black (text on the VGA console)."""
    width, height, pixels = image
    lit = sum(1 for i in range(0, len(pixels), 3) if pixels[i] + pixels[i + 1] + pixels[i + 2] > 96)
    return lit / (width * height)


async def settled_screen(page: Any, dom: libvirt.virDomain, within: float = 20) -> tuple[int, int, bytes]:
    """The VM's screen once SeaBIOS has printed something and it stayed the same for a moment."""
    deadline = time.monotonic() + within
    last = b""
    while time.monotonic() < deadline:
        shot = await asyncio.to_thread(screenshot, dom)
        if shot == last:
            decoded = await vm_screen(page, dom)
            if lit_share(decoded) > 0.005:  # SeaBIOS's lines light about 2 %
                return decoded
        last = shot
        await asyncio.sleep(0.5)
    raise AssertionError(f"the VM's screen did not settle with text on it within {within:g} s")
