"""Console endpoints: the pool of the open VMs' endpoints the server relays viewers to.

Every VM whose console is open gets an endpoint: websockify's proxy toward its VNC (QEMU's Unix
socket when the live domain XML has ``<listen type='socket'>``, else its loopback address),
listening on a socket of its own, a Unix socket in ``<run dir>/consoles`` (0700; socket 0600), or,
where a socket cannot serve (a path longer than the kernel takes), a loopback port of
VMM_CONSOLE_PORTS. Either way it demands the endpoint process's secret header
(:class:`core.web.console.secret.EndpointSecret`), so only this server gets through.

All the endpoints live in one process (about 15 MB each otherwise; :mod:`core.web.console.bridge`
starts it and speaks to it): this server adds a VM to it when the VM's first viewer comes and
removes it when the last one leaves or the VM stops; the process starts with the first open
console and stops with the last. If it dies, the next console starts another.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from core.errors import ConfigError, VMManagerError
from core.lab import Lab
from core.model import VM
from core.settings import Settings
from core.text import N_, count
from core.virt import DomainInfo
from core.web.console.bridge import Bridge, BridgeGone, EndpointError, PortTaken, VNCTarget, open_fields
from core.web.console.secret import ENDPOINT_SECRET_HEADER

log = logging.getLogger(__name__)

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last one a NUL
MAX_MESSAGE = 16 * 1024 * 1024
FAILURE_MEMORY = 60.0  # seconds a failure to open a VM's console is told to its page
TRANSPORTS = ("auto", "unix", "tcp")


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


def vnc_target(info: DomainInfo) -> VNCTarget:
    """Where the domain's VNC is reached: its Unix socket, else its loopback port."""
    for graphics in info.graphics:
        if graphics.kind != "vnc":
            continue
        if graphics.socket:
            return VNCTarget(unix=graphics.socket)
        if graphics.port is None:
            raise EndpointError(N_("%(name)s has no VNC port (is it running?)"), name=info.name)
        try:
            address = ipaddress.ip_address(graphics.listen or "127.0.0.1")
        except ValueError:
            raise EndpointError(N_("%(name)s: VNC listens on %(listen)s, not an address this server "
                                   "can reach"), name=info.name, listen=repr(graphics.listen),
                                permanent=True) from None
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        return VNCTarget(host=str(address), port=graphics.port)
    raise EndpointError(N_("%(name)s has no VNC display"), name=info.name, permanent=True)


class Endpoint:
    """One VM's endpoint in the endpoint process, and how this server connects to it."""

    def __init__(self, uuid: str, bridge: Bridge, target: VNCTarget, *, socket_path: Path | None = None,
                 port: int | None = None) -> None:
        self.uuid = uuid
        self.bridge = bridge
        self.target = target  # the VM's VNC
        self.socket_path = socket_path
        self.port = port
        self.users = 0
        if socket_path is not None:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=os.fspath(socket_path))
            self.url = "http://endpoint/websockify"
        else:
            connector = aiohttp.TCPConnector()
            self.url = f"http://127.0.0.1:{port}/websockify"
        self._session = aiohttp.ClientSession(connector=connector)

    @property
    def process(self) -> asyncio.subprocess.Process:
        """The endpoint process serving this VM (and the other open VMs)."""
        return self.bridge.process

    @property
    def transport(self) -> str:
        return "unix" if self.socket_path is not None else "tcp"

    @property
    def where(self) -> str:
        return os.fspath(self.socket_path) if self.socket_path is not None else f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.bridge.alive() and self.uuid in self.bridge.vms

    def errors(self) -> str:
        return self.bridge.errors()

    async def connect(self, protocols: Sequence[str] = ()) -> aiohttp.ClientWebSocketResponse:
        """A websocket to the VM's VNC through this endpoint."""
        try:
            return await self._session.ws_connect(
                self.url, protocols=tuple(protocols), headers={ENDPOINT_SECRET_HEADER: self.bridge.secret},
                max_msg_size=MAX_MESSAGE, timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except (aiohttp.ClientError, OSError) as exc:
            raise EndpointError(N_("the console endpoint did not answer (%(error)s)"),
                                error=str(exc)) from exc

    async def close(self) -> None:
        """This server's side: its connections to the endpoint."""
        await self._session.close()


class Endpoints:
    """The open VMs' endpoints, shared by each VM's viewers, all served by one endpoint process.

    The process starts with the first console and stops with the last; a VM is added to it when
    its first viewer comes and removed when its last one leaves or the VM stops. When the process
    dies, its VMs' endpoints are dropped (their viewers' relays end with it) and the next console
    starts another.
    """

    def __init__(self, settings: Settings, lab: Lab, *, transport: str = "auto",
                 start_timeout: float = 10.0) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        self.lab = lab
        self.dir = settings.run_path / "consoles"
        self.ports = parse_ports(settings.consoles.ports)
        self.transport = transport
        self.start_timeout = start_timeout
        self._by_vm: dict[str, Endpoint] = {}
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._bridge: Bridge | None = None
        self._bridge_lock = asyncio.Lock()  # taken after a VM's lock, never before
        self._watchers: set[asyncio.Task[None]] = set()
        self._prepared = False
        self._failures: dict[str, tuple[float, EndpointError]] = {}  # VM uuid -> (monotonic time, why)

    def running(self) -> dict[str, Endpoint]:
        return dict(self._by_vm)

    def _prepare_dir(self) -> None:
        """``<run dir>/consoles``, ours alone (0700), emptied of what a killed server left."""
        if self._prepared:
            return
        for folder in (self.dir.parent, self.dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_uid != os.getuid():
                raise EndpointError(N_("%(folder)s belongs to another user: console endpoints need it "
                                       "private"), folder=str(folder), permanent=True)
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
        """The VM's endpoint, opened (again, when it died) as needed; counts one more user."""
        async with self._locks[vm.uuid]:
            endpoint = self._by_vm.get(vm.uuid)
            if endpoint is not None and not endpoint.alive():
                log.warning("console endpoint of %s died (%s): starting another", vm.name, endpoint.errors())
                await self._drop(endpoint)
                endpoint = None
            if endpoint is None:
                try:
                    endpoint = await self._start(vm)
                except EndpointError as exc:
                    self.failed(vm.uuid, exc)
                    raise
                self._by_vm[vm.uuid] = endpoint
            endpoint.users += 1
            return endpoint

    def failed(self, uuid: str, error: EndpointError) -> None:
        """Remember why the VM's console did not open, for :meth:`problem` to tell the page."""
        now = time.monotonic()
        for old in [u for u, (when, _) in self._failures.items() if now - when >= FAILURE_MEMORY]:
            del self._failures[old]  # forgotten anyway: VMs deleted since leave nothing behind
        self._failures[uuid] = (now, error)

    def opened(self, uuid: str) -> None:
        """A console of the VM opened: what failed before is over."""
        self._failures.pop(uuid, None)

    async def problem(self, vm: VM) -> EndpointError | None:
        """Why the VM's console cannot open, as far as can be told without opening one: where it
        runs and its display (read again from its live XML), else the last failure to open it
        (remembered for FAILURE_MEMORY seconds); None when nothing is known against it."""
        try:
            await self._target(vm)
        except EndpointError as exc:
            return exc
        when, error = self._failures.get(vm.uuid, (0.0, None))
        if error is not None and time.monotonic() - when < FAILURE_MEMORY:
            return error
        self._failures.pop(vm.uuid, None)
        return None

    async def release(self, endpoint: Endpoint) -> None:
        """One user fewer; the last one out closes the endpoint."""
        async with self._locks[endpoint.uuid]:
            endpoint.users -= 1
            if endpoint.users <= 0 and self._by_vm.get(endpoint.uuid) is endpoint:
                await self._drop(endpoint)

    async def stop_vm(self, uuid: str) -> None:
        """The VM stopped or went away: close its endpoint whoever still uses it."""
        endpoint = self._by_vm.get(uuid)
        if endpoint is not None:
            async with self._locks[uuid]:
                if self._by_vm.get(uuid) is endpoint:
                    await self._drop(endpoint)

    async def stop_all(self) -> None:
        for uuid in list(self._by_vm):
            await self.stop_vm(uuid)
        async with self._bridge_lock:
            if self._bridge is not None:
                await self._stop_bridge(self._bridge)
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def _drop(self, endpoint: Endpoint) -> None:
        if self._by_vm.get(endpoint.uuid) is endpoint:
            del self._by_vm[endpoint.uuid]
        bridge = endpoint.bridge
        async with self._bridge_lock:
            if endpoint.uuid in bridge.vms:
                await bridge.close(endpoint.uuid, self.start_timeout)
            if endpoint.socket_path is not None and self._bridge is bridge:  # else _stop_bridge's
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(endpoint.socket_path)
            if self._bridge is bridge and not bridge.vms:
                await self._stop_bridge(bridge)
        await endpoint.close()
        log.info("console endpoint of %s closed", endpoint.uuid)

    async def _stop_bridge(self, bridge: Bridge) -> None:
        """Stop the endpoint process; the sockets of the VMs it still served go (it may have been killed)."""
        if self._bridge is bridge:
            self._bridge = None
        left = set(bridge.vms)
        await bridge.stop()
        for uuid in left:  # unless a new process serves that VM already (under the same name)
            if self._bridge is None or uuid not in self._bridge.vms:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir / f"{uuid}.sock")
        log.info("console endpoint process %d stopped", bridge.process.pid)

    async def _watch(self, bridge: Bridge) -> None:
        """Notice the endpoint process dying under us: drop its VMs' endpoints, clear up after it."""
        await bridge.process.wait()
        if bridge.stopping:
            return
        log.warning("console endpoint process %d died (exit %s: %s) with %s open: "
                    "the next console starts another", bridge.process.pid, bridge.process.returncode,
                    bridge.errors() or "no message", count(len(bridge.vms), "console"))
        dead = [self._by_vm.pop(uuid) for uuid, endpoint in list(self._by_vm.items())
                if endpoint.bridge is bridge]
        async with self._bridge_lock:
            await self._stop_bridge(bridge)
        for endpoint in dead:
            await endpoint.close()

    async def _target(self, vm: VM) -> VNCTarget:
        """Where the endpoint reaches the VM's VNC, from its live domain XML (read at every start: a VM
        started again may have a new VNC address)."""
        if self.lab.is_remote(vm):
            raise EndpointError(N_("%(name)s runs on another machine (%(host)s): its console can only be "
                                   "reached by a server on that machine"), name=vm.name, host=vm.host,
                                permanent=True)
        try:
            info = await self.lab.details(vm)
        except VMManagerError as exc:
            raise EndpointError(N_("cannot read the display of %(name)s: %(error)s"), name=vm.name,
                                error=exc.message) from exc
        return vnc_target(info)

    async def _start(self, vm: VM) -> Endpoint:
        self._prepare_dir()
        target = await self._target(vm)
        path = self.dir / f"{vm.uuid}.sock"
        if self._use_unix(path):
            endpoint = await self._open(vm, target, socket_path=path)
        else:
            endpoint = await self._open_on_port(vm, target)
        log.info("console endpoint of %s opened on %s (pid %d) toward %s", vm.name, endpoint.where,
                 endpoint.process.pid, target)
        return endpoint

    async def _open_on_port(self, vm: VM, target: VNCTarget) -> Endpoint:
        taken = {e.port for e in self._by_vm.values()}
        for port in self.ports:
            if port in taken or not _port_free(port):
                continue
            with contextlib.suppress(PortTaken):  # lost a race for this port: try the next one
                return await self._open(vm, target, port=port)
        raise EndpointError(N_("every console port of VMM_CONSOLE_PORTS (%(low)d-%(high)d) is in use: no "
                               "console can open until one is free"), low=self.ports.start,
                            high=self.ports.stop - 1)

    async def _open(self, vm: VM, target: VNCTarget, *, socket_path: Path | None = None,
                    port: int | None = None) -> Endpoint:
        """Have the endpoint process (started now if none runs) serve the VM."""
        fields = open_fields(vm.uuid, target, socket_path=socket_path, port=port)
        async with self._bridge_lock:
            if socket_path is not None:  # left by a killed endpoint process
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(socket_path)
            for attempt in (1, 2):  # a process found dead while talking to it: once more, with a new one
                bridge = self._bridge
                try:
                    if bridge is None or not bridge.alive():
                        if bridge is not None:
                            await self._stop_bridge(bridge)
                        bridge = self._bridge = await Bridge.spawn(self.dir)
                        watcher = asyncio.create_task(self._watch(bridge), name="websockify-watch")
                        self._watchers.add(watcher)
                        watcher.add_done_callback(self._watchers.discard)
                    await bridge.open(fields, self.start_timeout)
                    return Endpoint(vm.uuid, bridge, target, socket_path=socket_path, port=port)
                except BridgeGone as exc:
                    if attempt == 2:
                        raise EndpointError(N_("the console endpoint of %(name)s did not start: %(error)s"),
                                            name=vm.name, error=exc.message) from exc
                    assert bridge is not None
                    log.warning("console endpoint process %d: %s; starting another", bridge.process.pid,
                                exc.message)
                finally:
                    if bridge is not None and self._bridge is bridge and not bridge.vms:
                        await self._stop_bridge(bridge)
        raise AssertionError("unreachable")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True
