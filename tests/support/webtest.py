"""Helpers of the web tests: a console server run in-process, and looking at what it left running."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from core.lab import Lab
from core.links import client as admin_client
from core.links.shares import Link, TokenStore
from core.settings import Settings
from core.web import admin
from core.web.app import make_app
from core.web.keys import ENDPOINTS, STORE
from core.web.middlewares import runner_options
from support.cli import CHECKOUT, vm_manager
from support.clock import Clock


def uuid_of(lab: Lab, name: str) -> str:
    """The UUID of the VM named ``name`` in ``lab``'s inventory."""
    return next(vm.uuid for vm in lab.vms() if vm.name == name)


RFB = b"RFB "


@dataclass
class Console:
    """One console server, started in-process on a free port (and its admin API)."""

    settings: Settings
    app: web.Application
    server: TestServer
    admin_runner: web.AppRunner
    clock: Clock
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def store(self) -> TokenStore:
        return self.app[STORE]

    def link(self, uuid: str, name: str = "vm", ttl: float = 600.0) -> tuple[Link, str]:
        return self.store.create_link(uuid, name, ttl)

    def browser(self) -> aiohttp.ClientSession:
        """A browser of its own: a cookie jar that keeps cookies of an IP address."""
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(session)
        return session

    async def open_link(self, browser: aiohttp.ClientSession, token: str) -> int:
        async with browser.get(f"{self.base}/c/{token}", allow_redirects=False) as response:
            return response.status

    async def websocket(self, browser: aiohttp.ClientSession, uuid: str, *, origin: str | None = "",
                        headers: dict[str, str] | None = None) -> aiohttp.ClientWebSocketResponse:
        """The console websocket as the console page opens it (Origin: the server's own)."""
        return await browser.ws_connect(f"{self.base}/console/{uuid}/ws", protocols=("binary",),
                                        origin=self.base if origin == "" else origin, headers=headers,
                                        timeout=aiohttp.ClientWSTimeout(ws_close=5.0))

    async def status(self, browser: aiohttp.ClientSession, uuid: str, *, origin: str | None = "",
                     headers: dict[str, str] | None = None) -> tuple[int, str]:
        """The status (and page) a websocket attempt gets, 101 when it was accepted."""
        try:
            ws = await self.websocket(browser, uuid, origin=origin, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, exc.message
        await ws.close()
        return 101, ""

    async def admin(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await admin_client.call(self.settings, method, path, payload)
        assert reply is not None, "the admin API did not answer"
        return reply

    def running(self) -> dict[str, Any]:
        return self.app[ENDPOINTS].running()

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
        await admin.stop(self.admin_runner, self.settings.admin_socket)
        await self.server.close()


async def start_console(settings: Settings, lab: Lab, **options: Any) -> Console:
    port = unused_port()
    clock = Clock()
    app = make_app(settings, lab, secret_key="k" * 40, port=port, clock=clock, **options)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server(**runner_options(settings))
    admin_runner = await admin.start(app, settings.admin_socket)
    return Console(settings, app, server, admin_runner, clock)


async def greeting(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> bytes:
    """The first bytes the VM's VNC sends through the console websocket."""
    message = await ws.receive(timeout=within)
    assert message.type == aiohttp.WSMsgType.BINARY, f"got {message.type} {message.data!r} {message.extra!r}"
    return bytes(message.data)


async def closed(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> int | None:
    """Wait for the server to close ``ws``; returns the close code."""
    async with asyncio.timeout(within):
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.CLOSE:  # the code the server sent
                return int(message.data)
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code


async def eventually(check: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what or check}")
        await asyncio.sleep(0.05)


# -- processes and sockets --
def read_text(path: Path) -> str:
    """For async tests: reading a small file does not need a thread."""
    return path.read_text()


def cmdline(pid: int | str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def websockify_pids(run_dir: Path | None = None) -> list[int]:
    """Our endpoint processes (websockify's proxy run by ``core.web.console.wsbridge``), those of ``run_dir``
    when given."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if "core.web.console.wsbridge" not in cmdline(pid):
            continue
        if run_dir is not None:
            with contextlib.suppress(OSError):
                cwd = os.readlink(f"/proc/{pid}/cwd")
                if not cwd.startswith(os.fspath(run_dir)):
                    continue
        found.append(int(pid))
    return found


def socket_owners() -> dict[int, int]:
    """Socket inode -> pid of a process holding it."""
    owners: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        owners.setdefault(int(target[8:-1]), int(pid))
    return owners


@dataclass(frozen=True)
class Listener:
    family: str  # tcp | tcp6 | unix
    address: str  # host:port, or a socket path ("@name" for an abstract one)
    inode: int


def listeners() -> set[Listener]:
    """Every listening socket of this machine's network namespace: /proc/net/{tcp,tcp6,unix}."""
    found: set[Listener] = set()
    for family in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{family}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            host_hex, port_hex = fields[1].split(":")
            if family == "tcp":
                host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host_hex)[::-1])
            else:
                raw = bytes.fromhex(host_hex)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # per-word byte order
                host = socket.inet_ntop(socket.AF_INET6, words)
            found.add(Listener(family, f"{host}:{int(port_hex, 16)}", int(fields[9])))
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or int(fields[3], 16) & 0x10000 == 0:  # __SO_ACCEPTCON: listening
            continue
        path = fields[7]
        found.add(Listener("unix", "@" + path[1:] if path.startswith("@") else path, int(fields[6])))
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def probe(listener: Listener, path: str, origin: str, within: float = 1.0) -> bytes:
    """What a client without any token gets from a socket: what it sends unasked (a VNC server
    greets at once), then the answer to a websocket upgrade (and the first frame when accepted)."""
    got = b""
    for upgrade in (False, True):
        sock = _connect(listener)
        if sock is None:
            return got
        with sock:
            sock.settimeout(within)
            if upgrade:
                sock.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                              f"Origin: {origin}\r\n\r\n").encode())
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(4096)
                except (TimeoutError, OSError):
                    break
                if not chunk:
                    break
                got += chunk
    return got


def _connect(listener: Listener) -> socket.socket | None:
    try:
        if listener.family == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            abstract = listener.address.startswith("@")
            address: Any = "\0" + listener.address[1:] if abstract else listener.address
        else:
            host, _, port = listener.address.rpartition(":")
            family = socket.AF_INET6 if listener.family == "tcp6" else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if family == socket.AF_INET else "::1"
            address = (host, int(port))
        sock.settimeout(1.0)
        sock.connect(address)
        return sock
    except OSError:
        return None


# -- the CLI, as processes --


def cli(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``vm-manager ARGS`` run to its end, with ``env`` (and ``extra``) as its environment."""
    return vm_manager(*args, env=env, **extra)


class Serve:
    """``vm-manager ... serve --port P`` in the background; its stderr lines collected as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = unused_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", *args, "--port", str(self.port)], env=env, cwd=CHECKOUT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, within: float = 30.0) -> str:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=within)
            except queue.Empty:
                raise AssertionError(f"no {text!r} from serve; saw {seen}") from None
            seen.append(line)
            if text in line:
                return line

    def get(self, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=30)


StartConsole = Callable[..., Awaitable[Console]]
"""The ``console`` fixture."""
StartServe = Callable[..., Serve]
"""The ``serve`` fixture."""
