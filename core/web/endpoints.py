"""Console endpoints: one websockify process per VM whose console is open.

websockify's proxy (run by :mod:`core.web.wsbridge`: its own request handler, a thread per
viewer instead of websockify's forked process per viewer) bridges a websocket to the VM's VNC:
QEMU's Unix socket when the live domain XML has ``<listen type='socket'>``, else its loopback
address. It listens on a Unix socket in
``<run dir>/consoles`` (0700; socket 0600), or, where a socket cannot serve (a path longer than
the kernel takes), on a loopback port of VMM_CONSOLE_PORTS. Either way it demands the endpoint's
own secret header (:class:`core.web.EndpointSecret`), so only this server gets through.

Viewers of one VM share its endpoint; the last one leaving stops it, and so does the VM stopping.
The domain XML is read again at every start: a VM started again may have a new VNC address.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from core.domainxml import DomainInfo
from core.errors import ConfigError, VMManagerError
from core.lab import Lab
from core.model import VM
from core.settings import PROJECT_DIR, Settings
from core.web import ENDPOINT_SECRET_ENV, ENDPOINT_SECRET_HEADER

log = logging.getLogger(__name__)

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last one a NUL
MAX_MESSAGE = 16 * 1024 * 1024
TRANSPORTS = ("auto", "unix", "tcp")


class EndpointError(VMManagerError):
    title = "Console unavailable"


class _PortTaken(EndpointError):
    """Someone bound the port between our check and websockify's bind."""


def parse_ports(text: str) -> range:
    """``6900-6999`` (or one port) as a range; ConfigError naming VMM_CONSOLE_PORTS otherwise."""
    first, _, last = text.strip().partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"VMM_CONSOLE_PORTS must be like 6900-6999, not {text!r}") from None
    if not 1024 <= low <= high <= 65535:
        raise ConfigError(f"VMM_CONSOLE_PORTS must be a range within 1024-65535, not {text!r}")
    return range(low, high + 1)


def vnc_target(info: DomainInfo) -> list[str]:
    """websockify's target arguments for the domain's VNC: its Unix socket, else its loopback port."""
    for graphics in info.graphics:
        if graphics.kind != "vnc":
            continue
        if graphics.socket:
            return ["--unix-target", graphics.socket]
        if graphics.port is None:
            raise EndpointError(f"{info.name} has no VNC port (is it running?)")
        try:
            address = ipaddress.ip_address(graphics.listen or "127.0.0.1")
        except ValueError:
            raise EndpointError(f"{info.name}: VNC listens on {graphics.listen!r}, not an address "
                                "this server can reach") from None
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = f"[{address}]" if address.version == 6 else str(address)
        return [f"{host}:{graphics.port}"]
    raise EndpointError(f"{info.name} has no VNC display")


class Endpoint:
    """One running websockify toward one VM's VNC, and how this server connects to it."""

    def __init__(self, uuid: str, process: asyncio.subprocess.Process, secret: str, *,
                 socket_path: Path | None = None, port: int | None = None) -> None:
        self.uuid = uuid
        self.process = process
        self.socket_path = socket_path
        self.port = port
        self.users = 0
        self._secret = secret
        self._errors: collections.deque[str] = collections.deque(maxlen=20)
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"websockify-{uuid}")
        if socket_path is not None:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=os.fspath(socket_path))
            self.url = "http://endpoint/websockify"
        else:
            connector = aiohttp.TCPConnector()
            self.url = f"http://127.0.0.1:{port}/websockify"
        self._session = aiohttp.ClientSession(connector=connector)

    @property
    def transport(self) -> str:
        return "unix" if self.socket_path is not None else "tcp"

    @property
    def where(self) -> str:
        return os.fspath(self.socket_path) if self.socket_path is not None else f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.returncode is None

    def errors(self) -> str:
        return " / ".join(self._errors)

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self._errors.append(line)
                log.debug("websockify %s: %s", self.uuid, line)

    async def ready(self, within: float) -> bool:
        """Wait until the endpoint accepts connections; False when websockify died or took too long."""
        deadline = time.monotonic() + within
        while self.alive() and time.monotonic() < deadline:
            try:
                if self.socket_path is not None:
                    _, writer = await asyncio.open_unix_connection(os.fspath(self.socket_path))
                else:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    async def connect(self, protocols: Sequence[str] = ()) -> aiohttp.ClientWebSocketResponse:
        """A websocket to the VM's VNC through this endpoint."""
        try:
            return await self._session.ws_connect(
                self.url, protocols=tuple(protocols), headers={ENDPOINT_SECRET_HEADER: self._secret},
                max_msg_size=MAX_MESSAGE, timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except (aiohttp.ClientError, OSError) as exc:
            raise EndpointError(f"the console endpoint did not answer ({exc})") from exc

    async def stop(self) -> None:
        """Stop websockify and every handler it forked (its process group); remove its socket."""
        pgid = self.process.pid
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                await self.process.wait()
        await _reap_group(pgid)
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        with contextlib.suppress(TimeoutError):  # its stderr ends with it: keep its last lines
            await asyncio.wait_for(self._stderr_task, 1.0)
        await self._session.close()


def group_members(pgid: int) -> list[int]:
    """Processes still in process group ``pgid`` (a group id is not reused while it has members)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 3 and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


async def _reap_group(pgid: int) -> None:
    """Kill what is left of a stopped websockify's group: handlers its exit left behind."""
    for _ in range(100):
        members = group_members(pgid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.02)
    log.warning("websockify handlers of group %d would not die", pgid)


class Endpoints:
    """The running endpoints, one per VM, shared by that VM's viewers."""

    def __init__(self, settings: Settings, lab: Lab, *, transport: str = "auto",
                 start_timeout: float = 10.0) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        self.lab = lab
        self.dir = settings.run_path / "consoles"
        self.ports = parse_ports(settings.console_ports)
        self.transport = transport
        self.start_timeout = start_timeout
        self._by_vm: dict[str, Endpoint] = {}
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._prepared = False

    def running(self) -> dict[str, Endpoint]:
        return dict(self._by_vm)

    def _prepare_dir(self) -> None:
        """``<run dir>/consoles``, ours alone (0700), emptied of what a killed server left."""
        if self._prepared:
            return
        for folder in (self.dir.parent, self.dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_uid != os.getuid():
                raise EndpointError(f"{folder} belongs to another user: console endpoints need it private")
            folder.chmod(0o700)
        for stale in self.dir.glob("*.sock"):
            stale.unlink(missing_ok=True)
        self._prepared = True

    def _use_unix(self, path: Path) -> bool:
        if self.transport != "auto":
            return self.transport == "unix"
        if len(os.fsencode(path)) <= UNIX_PATH_MAX:
            return True
        log.warning("%s is too long for a Unix socket: console endpoints use loopback ports "
                    "(VMM_CONSOLE_PORTS); set VMM_RUNTIME_DIR to a shorter directory", path)
        return False

    async def acquire(self, vm: VM) -> Endpoint:
        """The VM's endpoint, started (or replaced, when it died) as needed; counts one more user."""
        async with self._locks[vm.uuid]:
            endpoint = self._by_vm.get(vm.uuid)
            if endpoint is not None and not endpoint.alive():
                log.warning("console endpoint of %s died (%s): starting another", vm.name, endpoint.errors())
                await self._drop(endpoint)
                endpoint = None
            if endpoint is None:
                endpoint = await self._start(vm)
                self._by_vm[vm.uuid] = endpoint
            endpoint.users += 1
            return endpoint

    async def release(self, endpoint: Endpoint) -> None:
        """One user fewer; the last one out stops the endpoint."""
        async with self._locks[endpoint.uuid]:
            endpoint.users -= 1
            if endpoint.users <= 0 and self._by_vm.get(endpoint.uuid) is endpoint:
                await self._drop(endpoint)

    async def stop_vm(self, uuid: str) -> None:
        """The VM stopped or went away: stop its endpoint whoever still uses it."""
        endpoint = self._by_vm.get(uuid)
        if endpoint is not None:
            async with self._locks[uuid]:
                if self._by_vm.get(uuid) is endpoint:
                    await self._drop(endpoint)

    async def stop_all(self) -> None:
        for uuid in list(self._by_vm):
            await self.stop_vm(uuid)

    async def _drop(self, endpoint: Endpoint) -> None:
        if self._by_vm.get(endpoint.uuid) is endpoint:
            del self._by_vm[endpoint.uuid]
        await endpoint.stop()
        log.info("console endpoint of %s stopped", endpoint.uuid)

    async def _start(self, vm: VM) -> Endpoint:
        self._prepare_dir()
        host = self.lab.hosts.get(vm.host)
        if host is not None and host.remote:
            raise EndpointError(f"{vm.name} runs on another machine ({vm.host}): its console can only "
                                "be reached by a server on that machine")
        try:
            info = await self.lab.details(vm)
        except VMManagerError as exc:
            raise EndpointError(f"cannot read {vm.name}'s display: {exc.message}") from exc
        target = vnc_target(info)
        path = self.dir / f"{vm.uuid}.sock"
        if self._use_unix(path):
            endpoint = await self._spawn(vm, target, socket_path=path)
        else:
            endpoint = await self._start_on_port(vm, target)
        log.info("console endpoint of %s started on %s (pid %d) toward %s", vm.name, endpoint.where,
                 endpoint.process.pid, " ".join(target))
        return endpoint

    async def _start_on_port(self, vm: VM, target: list[str]) -> Endpoint:
        taken = {e.port for e in self._by_vm.values()}
        for port in self.ports:
            if port in taken or not _port_free(port):
                continue
            with contextlib.suppress(_PortTaken):  # lost a race for this port: try the next one
                return await self._spawn(vm, target, port=port)
        raise EndpointError(f"every console port of VMM_CONSOLE_PORTS ({self.ports.start}-"
                            f"{self.ports.stop - 1}) is in use: no console can open until one is free")

    async def _spawn(self, vm: VM, target: list[str], *, socket_path: Path | None = None,
                     port: int | None = None) -> Endpoint:
        secret = secrets.token_urlsafe(32)
        listen = (["--unix-listen", os.fspath(socket_path)] if socket_path is not None
                  else ["--listen", f"127.0.0.1:{port}"])
        argv = [*_die_with_us(), sys.executable, "-m", "core.web.wsbridge", *listen, *target]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENDPOINT_SECRET_ENV: secret,
               "PYTHONPATH": os.fspath(PROJECT_DIR)}
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, cwd=self.dir, env=env, start_new_session=True)
        endpoint = Endpoint(vm.uuid, process, secret, socket_path=socket_path, port=port)
        if await endpoint.ready(self.start_timeout):
            return endpoint
        await endpoint.stop()
        problem = endpoint.errors() or f"no answer within {self.start_timeout:g} s"
        if "Address already in use" in problem:
            raise _PortTaken(f"port {port} in use")
        raise EndpointError(f"the console endpoint of {vm.name} did not start: {problem}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _die_with_us() -> list[str]:
    """``setpriv --pdeathsig TERM``: websockify ends with this server even when it is killed."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
