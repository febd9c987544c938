"""Endpoint details that need no VM (port ranges, VNC targets, the transport choice, the auth plugin),
and the endpoint process serving every open console, toward VNC servers of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.webtest import eventually, websockify_pids
from websockify.auth_plugins import AuthenticationError

from core.errors import ConfigError
from core.lab import Lab
from core.links.urls import base_url, origin_of
from core.metadata import LabMeta
from core.model import VM
from core.settings import Settings
from core.virt.domainxml import DomainInfo, Graphics
from core.web.console.bridge import EndpointError, VNCTarget, group_members
from core.web.console.endpoints import Endpoints, parse_ports, vnc_target
from core.web.console.secret import ENDPOINT_SECRET_ENV, ENDPOINT_SECRET_HEADER, EndpointSecret


def info(*graphics: Graphics) -> DomainInfo:
    return DomainInfo("vm", "u", "kvm", 1, 64, LabMeta(), (), (), graphics)


def test_parse_ports() -> None:
    assert parse_ports("6900-6999") == range(6900, 7000)
    assert parse_ports(" 7000 ") == range(7000, 7001)
    for bad in ("", "a-b", "6999-6900", "80-90", "6900-70000"):
        with pytest.raises(ConfigError, match="VMM_CONSOLE_PORTS"):
            parse_ports(bad)


def test_vnc_targets() -> None:
    assert vnc_target(info(Graphics("vnc", "/s/u.vnc", None, "/s/u.vnc"))) == VNCTarget(unix="/s/u.vnc")
    assert vnc_target(info(Graphics("vnc", "127.0.0.1", 5901, ""))) == VNCTarget(host="127.0.0.1", port=5901)
    assert vnc_target(info(Graphics("vnc", "0.0.0.0", 5902, ""))) == VNCTarget(host="127.0.0.1", port=5902)
    assert vnc_target(info(Graphics("vnc", "::", 5903, ""))) == VNCTarget(host="::1", port=5903)
    # what the endpoint process is told: an IPv6 address in brackets, a socket by its path
    assert VNCTarget(host="::1", port=5903).fields() == {"target": "[::1]:5903"}
    assert VNCTarget(host="127.0.0.1", port=5901).fields() == {"target": "127.0.0.1:5901"}
    assert VNCTarget(unix="/s/u.vnc").fields() == {"unix_target": "/s/u.vnc"}
    assert vnc_target(info(Graphics("spice", "127.0.0.1", 5930, ""),
                           Graphics("vnc", "127.0.0.1", 5904, ""))) == VNCTarget(host="127.0.0.1", port=5904)
    for graphics, problem in ((Graphics("vnc", "127.0.0.1", None, ""), "no VNC port"),
                              (Graphics("spice", "127.0.0.1", 5930, ""), "no VNC display"),
                              (Graphics("vnc", "host.example", 5900, ""), "not an address")):
        with pytest.raises(EndpointError, match=problem):
            vnc_target(info(graphics))


def test_long_run_dirs_fall_back_to_loopback_ports(test_lab: Lab, web_settings: Settings) -> None:
    assert Endpoints(web_settings, test_lab)._use_unix(web_settings.run_path / "consoles" / "x.sock")
    deep = Path("/tmp/" + "d" * 80)
    long = dataclasses.replace(web_settings, runtime_dir=deep)
    assert not Endpoints(long, test_lab)._use_unix(deep / "consoles" / f"{'u' * 36}.sock")
    assert not Endpoints(web_settings, test_lab, transport="tcp")._use_unix(Path("/tmp/x.sock"))
    with pytest.raises(ValueError, match="transport"):
        Endpoints(web_settings, test_lab, transport="udp")


def test_endpoint_auth_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_SECRET_ENV, "s3cret")
    plugin = EndpointSecret()
    plugin.authenticate({ENDPOINT_SECRET_HEADER: "s3cret"}, None, None)
    for headers in ({}, {ENDPOINT_SECRET_HEADER: "s3cre"}, {ENDPOINT_SECRET_HEADER: "s3cret "}):
        with pytest.raises(AuthenticationError):
            plugin.authenticate(headers, None, None)
    monkeypatch.delenv(ENDPOINT_SECRET_ENV)
    with pytest.raises(AuthenticationError):  # no secret at all: nobody gets in
        EndpointSecret().authenticate({ENDPOINT_SECRET_HEADER: ""}, None, None)


def test_public_url_and_origin(web_settings: Settings) -> None:
    assert origin_of("https://VM.example.org:443/") == "https://vm.example.org"
    assert origin_of("http://10.0.0.5:5000") == "http://10.0.0.5:5000"
    assert origin_of("http://[::1]:8080/") == "http://[::1]:8080"
    assert base_url(web_settings, "0.0.0.0", 8000) == "http://0.0.0.0:8000"
    assert (
        base_url(
            dataclasses.replace(
                web_settings, web=dataclasses.replace(web_settings.web, public_url="https://vm.example.org/")
            )
        )
        == "https://vm.example.org"
    )
    for bad in ("vm.example.org", "ftp://vm.example.org", "https://vm.example.org/consoles"):
        with pytest.raises(ConfigError, match="PUBLIC_URL"):
            base_url(
                dataclasses.replace(web_settings, web=dataclasses.replace(web_settings.web, public_url=bad))
            )


# -- the endpoint process, on VNC servers of the test's own --
class FakeVnc:
    """A VNC server on a Unix socket as far as a viewer sees: it greets (with its name after the
    version, so a test knows whose screen it reached) and holds the connection until closed."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.server: asyncio.Server | None = None

    async def start(self) -> FakeVnc:
        self.server = await asyncio.start_unix_server(self._greet, os.fspath(self.path))
        return self

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING + self.name.encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()  # until the endpoint hangs up
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class OnFakeVnc(Endpoints):
    """Endpoints toward the test's VNC servers: the libvirt test driver's VMs have no display. Only
    the read of the domain XML is left out; the endpoint process, its sockets and websockify are real."""

    targets: dict[str, VNCTarget]

    async def _target(self, vm: VM) -> VNCTarget:
        return self.targets[vm.uuid]


GREETING = b"RFB 003.008\n"


@pytest.fixture
async def vnc(tmp_path: Path, test_lab: Lab) -> AsyncIterator[dict[str, FakeVnc]]:
    """A fake VNC for each running VM of ``test_lab``, by name."""
    servers = {vm.name: await FakeVnc(tmp_path / f"{vm.name}.vnc", vm.name).start()
               for vm in test_lab.vms() if vm.state.is_active}
    yield servers
    for server in servers.values():
        await server.close()


@pytest.fixture
async def endpoints(web_settings: Settings, test_lab: Lab, vnc: dict[str, FakeVnc]
                    ) -> AsyncIterator[Callable[..., OnFakeVnc]]:
    """``endpoints(transport=…)``; every one made is stopped at the end, and checked to leave nothing."""
    made: list[OnFakeVnc] = []

    def make(settings: Settings = web_settings, **options: Any) -> OnFakeVnc:
        endpoints = OnFakeVnc(settings, test_lab, **options)
        endpoints.targets = {vm.uuid: VNCTarget(unix=os.fspath(vnc[vm.name].path))
                             for vm in test_lab.vms() if vm.name in vnc}
        made.append(endpoints)
        return endpoints

    yield make
    for endpoints in made:
        await endpoints.stop_all()
    assert websockify_pids(web_settings.run_path) == []
    assert list((web_settings.run_path / "consoles").glob("*.sock")) == []


def vm_named(lab: Lab, name: str) -> VM:
    return next(vm for vm in lab.vms() if vm.name == name)


async def screen(ws: aiohttp.ClientWebSocketResponse, size: int) -> bytes:
    """The first ``size`` bytes the VNC behind ``ws`` sends."""
    got = b""
    while len(got) < size:
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.BINARY, message
        got += message.data
    return got


async def test_one_process_serves_every_open_vm(endpoints: Callable[..., OnFakeVnc], test_lab: Lab,
                                                web_settings: Settings) -> None:
    server = endpoints()
    a, b = vm_named(test_lab, "web-a"), vm_named(test_lab, "web-b")
    first = await server.acquire(a)
    again = await server.acquire(a)
    other = await server.acquire(b)
    assert first is again
    assert first.users == 2
    assert other.users == 1
    assert first.process.pid == other.process.pid
    assert websockify_pids(web_settings.run_path) == [first.process.pid]
    assert group_members(first.process.pid) == [first.process.pid]  # a thread per viewer, no forks
    assert first.socket_path is not None
    assert other.socket_path is not None
    assert first.socket_path != other.socket_path
    for path in (first.socket_path, other.socket_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.socket_path.parent.stat().st_mode) == 0o700

    ws_a, ws_b = await first.connect(["binary"]), await other.connect(["binary"])
    assert ws_a.protocol == "binary"
    assert await screen(ws_a, 17) == GREETING + b"web-a"  # each VM's socket reaches its own VNC
    assert await screen(ws_b, 17) == GREETING + b"web-b"
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(os.fspath(first.socket_path))) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # no secret, no screen
            await s.ws_connect("http://endpoint/websockify", protocols=("binary",))
        assert refused.value.status == 403

    await server.release(first)
    assert first.socket_path.exists()
    await server.release(first)  # a's last viewer leaves: a's endpoint goes, with its relays
    assert not first.socket_path.exists()
    assert (await ws_a.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert set(server.running()) == {b.uuid}
    await ws_b.send_bytes(b"still there")
    assert not ws_b.closed
    assert other.alive()
    assert websockify_pids(web_settings.run_path) == [other.process.pid]

    await server.stop_vm(b.uuid)  # b stops: its viewer is cut, and the process ends with the last VM
    assert (await ws_b.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert server.running() == {}
    assert other.process.returncode is not None
    assert websockify_pids(web_settings.run_path) == []
    assert list(first.socket_path.parent.glob("*.sock")) == []
    await server.release(other)  # its viewer's own release, after the stop: nothing more happens
    assert server.running() == {}


async def test_a_dead_process_is_noticed_and_replaced(endpoints: Callable[..., OnFakeVnc], test_lab: Lab,
                                                      web_settings: Settings) -> None:
    server = endpoints()
    a, b = vm_named(test_lab, "web-a"), vm_named(test_lab, "web-b")
    old_a, old_b = await server.acquire(a), await server.acquire(b)
    dead = old_a.process.pid
    ws = await old_a.connect(["binary"])
    assert await screen(ws, 17) == GREETING + b"web-a"
    os.kill(dead, signal.SIGKILL)
    assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                   aiohttp.WSMsgType.ERROR)
    # Noticed without waiting for a viewer: its endpoints dropped, the sockets it left removed.
    await eventually(lambda: not server.running(), what="the dead process's endpoints to go")
    assert not old_a.alive()
    assert not old_b.alive()
    assert list((web_settings.run_path / "consoles").glob("*.sock")) == []

    fresh = await server.acquire(a)  # the next console starts another process
    assert fresh.process.pid != dead
    ws = await fresh.connect(["binary"])
    assert await screen(ws, 17) == GREETING + b"web-a"
    for endpoint in (old_a, old_b):  # the old viewers leaving later changes nothing
        await server.release(endpoint)
    assert server.running() == {a.uuid: fresh}
    await ws.close()
    await server.release(fresh)
    assert server.running() == {}
    await eventually(lambda: not websockify_pids(web_settings.run_path), what="the process to stop")


async def test_loopback_ports_take_the_next_free_one(endpoints: Callable[..., OnFakeVnc], test_lab: Lab,
                                                     web_settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        low = taken.getsockname()[1]
        if not all(_free(port) for port in (low + 1, low + 2)):
            pytest.skip("the ports after a free one are taken here")
        settings = dataclasses.replace(
            web_settings, consoles=dataclasses.replace(web_settings.consoles, ports=f"{low}-{low + 2}")
        )
        server = endpoints(settings, transport="tcp")
        a, b = vm_named(test_lab, "web-a"), vm_named(test_lab, "web-b")
        first, second = await server.acquire(a), await server.acquire(b)
        assert (first.transport, first.port, second.port) == ("tcp", low + 1, low + 2)
        assert first.process.pid == second.process.pid
        ws = await second.connect(["binary"])
        assert await screen(ws, 17) == GREETING + b"web-b"
        async with aiohttp.ClientSession() as session:  # loopback, but no secret: refused
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"http://127.0.0.1:{first.port}/websockify")
            assert refused.value.status == 403

        # A port taken between our check and the process's bind: the process says so, keeps serving.
        with pytest.raises(EndpointError, match="Address already in use"):
            await first.bridge.open({"vm": "late", "listen": f"127.0.0.1:{low}",
                                     "target": "127.0.0.1:1"}, 5.0)
        assert first.alive()
        assert not ws.closed
        await ws.close()
        await server.stop_all()
        assert server.running() == {}
        assert not websockify_pids(web_settings.run_path)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_an_unreachable_vnc_and_a_failed_start(endpoints: Callable[..., OnFakeVnc], test_lab: Lab,
                                                     web_settings: Settings) -> None:
    server = endpoints()
    a, b = vm_named(test_lab, "web-a"), vm_named(test_lab, "web-b")
    server.targets[a.uuid] = VNCTarget(unix="/nonexistent/vm.vnc")
    endpoint, other = await server.acquire(a), await server.acquire(b)
    ws = await endpoint.connect(["binary"])  # upgraded, then closed by websockify: VNC is not there
    message = await ws.receive(timeout=10)
    assert (message.type, message.data, message.extra) == (
        aiohttp.WSMsgType.CLOSE, 1011, "Failed to connect to downstream server")
    ws = await other.connect(["binary"])  # the other VM's console is not disturbed
    assert await screen(ws, 17) == GREETING + b"web-b"
    await ws.close()
    assert endpoint.alive()
    assert other.alive()
    await server.release(endpoint)
    await server.release(other)
    await eventually(lambda: not websockify_pids(web_settings.run_path), what="the process to stop")

    # No socket can be made (its path is too long): the process started for it stops at once.
    deep = dataclasses.replace(web_settings, runtime_dir=web_settings.run_path / ("d" * 70))
    with pytest.raises(EndpointError, match="too long"):
        await endpoints(deep, transport="unix").acquire(a)
    assert websockify_pids(web_settings.run_path) == []
