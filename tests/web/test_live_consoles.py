"""Browser consoles against real VMs: share link -> cookie -> websocket -> the VM's own VNC greeting.

Tiny diskless domains on a real libvirtd (VNC on loopback, or on a Unix socket like provisioned
VMs), the server in-process, websockify as real processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest
from livelab import URI, Outside, Watch, domain_xml
from webtest import (
    Console,
    Listener,
    Serve,
    StartConsole,
    StartServe,
    cli,
    closed,
    eventually,
    greeting,
    listeners,
    probe,
    process_name,
    socket_owners,
    websockify_pids,
)

from core.access import group_id
from core.lab import Lab
from core.model import VMState
from core.settings import Settings
from core.web.app import COOKIE
from core.web.endpoints import group_members
from core.web.proxy import CLOSE_REVOKED, CLOSE_VM_STOPPED

pytestmark = pytest.mark.integration

GREETING = b"RFB 003.008\n"


async def running_vm(lab: Lab, outside: Outside, label: str, xml: str | None = None) -> str:
    """Define and start a tiny VM (``xml``: a domain of ours instead); its UUID once the Lab sees it run."""
    if xml is None:
        dom = outside.define(label, start=True)
    else:
        dom = outside.conn.defineXML(xml)
        outside.uuids.append(dom.UUIDString())
        dom.create()
    watch = Watch(lab)
    try:
        await watch.vm_in(dom.UUIDString(), VMState.RUNNING)
    finally:
        watch.close()
    return dom.UUIDString()


async def viewer(server: Console, uuid: str) -> aiohttp.ClientWebSocketResponse:
    """A browser of its own that follows a fresh share link and opens the console websocket."""
    _, token = server.link(uuid)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    return await server.websocket(browser, uuid)


async def test_share_link_reaches_the_vms_vnc(console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    uuid = await running_vm(live_lab, outside, "web-rfb")
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert ws.protocol == "binary"
    assert await greeting(ws) == GREETING
    endpoint = server.running()[uuid]
    assert endpoint.transport == "unix"
    assert stat.S_IMODE(endpoint.socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(endpoint.socket_path.parent.stat().st_mode) == 0o700
    # websockify and the handler it forked for this connection, in the group it was started in
    assert set(websockify_pids(server.settings.run_path)) == set(group_members(endpoint.process.pid))

    await ws.send_bytes(GREETING)  # the client's version: QEMU answers with its security types
    answer = await ws.receive(timeout=10)
    assert answer.type == aiohttp.WSMsgType.BINARY
    assert answer.data[0] >= 1

    await ws.close()  # the last viewer leaves: the endpoint goes
    await eventually(lambda: not websockify_pids(server.settings.run_path), what="websockify to exit")
    await eventually(lambda: not endpoint.socket_path.exists(), what="its socket to go")


async def test_refused_links_never_reach_vnc(console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    uuid = await running_vm(live_lab, outside, "web-a")
    other = await running_vm(live_lab, outside, "web-b")
    server = await console(live_lab)

    expired, expired_token = server.link(uuid, ttl=60)
    revoked, revoked_token = server.link(uuid)
    expired_browser, revoked_browser = server.browser(), server.browser()
    assert await server.open_link(expired_browser, expired_token) == 303
    assert await server.open_link(revoked_browser, revoked_token) == 303
    server.store.revoke(ids=[revoked.id])
    server.clock.offset = 61
    for browser, token in ((expired_browser, expired_token), (revoked_browser, revoked_token)):
        assert await server.open_link(browser, token) == 403
        assert (await server.status(browser, uuid))[0] == 403
    server.clock.offset = 0

    _, token = server.link(uuid)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    secret = next(c.value for c in browser.cookie_jar if c["path"] == f"/console/{uuid}")
    assert (await server.status(browser, other, headers={"Cookie": f"{COOKIE}={secret}"}))[0] == 403
    assert (await server.status(browser, uuid, origin="http://evil.example"))[0] == 403
    assert (await server.status(browser, uuid, origin=f"{server.base}.evil.example"))[0] == 403
    assert (await server.status(browser, uuid, origin=None))[0] == 403

    # A VM deleted, then made again under the same name (a new UUID): the old link and session fail.
    name = outside.domain(uuid).name()
    outside.domain(uuid).destroy()
    outside.domain(uuid).undefine()
    watch = Watch(live_lab)
    await watch.gone(uuid)
    watch.close()
    assert await server.open_link(server.browser(), token) == 403
    assert (await server.status(browser, uuid))[0] == 403
    remade = outside.conn.defineXML(domain_xml(name))
    outside.uuids.append(remade.UUIDString())
    remade.create()
    watch = Watch(live_lab)
    await watch.vm_in(remade.UUIDString(), VMState.RUNNING)
    watch.close()
    assert remade.UUIDString() != uuid
    assert await server.open_link(server.browser(), token) == 403
    cookie = {"Cookie": f"{COOKIE}={secret}"}
    assert (await server.status(browser, remade.UUIDString(), headers=cookie))[0] == 403

    assert server.running() == {}
    assert websockify_pids(server.settings.run_path) == []


async def test_revoking_a_link_closes_its_viewers_only(console: StartConsole, live_lab: Lab,
                                                       outside: Outside) -> None:
    uuid = await running_vm(live_lab, outside, "web-shared")
    server = await console(live_lab)
    revoked, revoked_token = server.link(uuid)
    kept, kept_token = server.link(uuid)
    first, second = server.browser(), server.browser()
    assert await server.open_link(first, revoked_token) == 303
    assert await server.open_link(second, kept_token) == 303
    ws1, ws2 = await server.websocket(first, uuid), await server.websocket(second, uuid)
    assert await greeting(ws1) == GREETING
    assert await greeting(ws2) == GREETING
    counts = await server.admin("GET", "/viewers")
    assert counts["by_vm"] == {uuid: 2}
    assert counts["by_link"] == {revoked.id: 1, kept.id: 1}
    assert counts["endpoints"][uuid]["users"] == 2  # one endpoint, shared
    pids = websockify_pids(server.settings.run_path)
    assert len(pids) >= 1

    reply = await server.admin("POST", "/revoke", {"ids": [revoked.id]})
    assert reply["closed"] == 1
    assert await closed(ws1, within=3) == CLOSE_REVOKED
    await ws2.send_bytes(GREETING)  # still relayed: QEMU answers the other viewer
    assert (await ws2.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
    assert (await server.admin("GET", "/viewers"))["by_link"] == {kept.id: 1}
    await ws2.close()
    await eventually(lambda: not server.running(), what="the endpoint to stop")


async def test_expiry_and_revocation_by_another_process_close_viewers(
        console: StartConsole, live_lab: Lab, outside: Outside, web_settings: Settings) -> None:
    from core.tokens import TokenStore

    uuid = await running_vm(live_lab, outside, "web-expiry")
    server = await console(live_lab, expiry_interval=0.3)
    short, short_token = server.link(uuid, ttl=30)
    other, other_token = server.link(uuid)
    first, second = server.browser(), server.browser()
    assert await server.open_link(first, short_token) == 303
    assert await server.open_link(second, other_token) == 303
    ws1, ws2 = await server.websocket(first, uuid), await server.websocket(second, uuid)
    assert await greeting(ws1) == GREETING
    assert await greeting(ws2) == GREETING

    server.clock.offset = 31  # the short link expires: the periodic check closes its viewer
    assert await closed(ws1, within=5) == CLOSE_REVOKED
    assert not ws2.closed
    cli = TokenStore(web_settings.database_path, "k" * 40)  # as `vm-manager revoke` without the server
    cli.revoke(ids=[other.id])
    cli.close()
    assert await closed(ws2, within=5) == CLOSE_REVOKED
    await eventually(lambda: not server.running(), what="the endpoint to stop")


async def test_vm_stopping_closes_its_console_and_a_restart_opens_again(
        console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    uuid = await running_vm(live_lab, outside, "web-stop")
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    pid = server.running()[uuid].process.pid

    outside.domain(uuid).destroy()
    # QEMU's VNC going away may close the relay first (1000); else the stop event does (4002).
    assert await closed(ws) in (aiohttp.WSCloseCode.OK, CLOSE_VM_STOPPED)
    await eventually(lambda: not server.running() and pid not in websockify_pids(), what="endpoint stop")

    outside.domain(uuid).create()  # the live XML is read again: VNC may be elsewhere now
    watch = Watch(live_lab)
    await watch.vm_in(uuid, VMState.RUNNING)
    watch.close()
    again = await viewer(server, uuid)
    assert await greeting(again) == GREETING
    await again.close()


async def test_a_dead_endpoint_is_replaced(console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    uuid = await running_vm(live_lab, outside, "web-dead")
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    dead = server.running()[uuid].process.pid
    os.killpg(dead, signal.SIGKILL)  # websockify and its handlers (a group we started)
    await closed(ws)
    fresh = await viewer(server, uuid)
    assert await greeting(fresh) == GREETING
    assert server.running()[uuid].process.pid != dead
    await fresh.close()


async def test_vnc_on_a_unix_socket(console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    """As provisioning makes them: VNC on ``<dir>/<uuid>.vnc``, the dir 0770 group libvirt-qemu."""
    sockets = outside.shared_dir() / "consoles"
    sockets.mkdir()
    sockets.chmod(0o770)
    os.chown(sockets, os.getuid(), group_id() or 0)
    root = ET.fromstring(domain_xml(outside.name("web-sock")))
    devices = root.find("devices")
    assert devices is not None
    for graphics in devices.findall("graphics"):
        devices.remove(graphics)
    graphics = ET.SubElement(devices, "graphics", type="vnc")
    ET.SubElement(graphics, "listen", type="socket", socket=str(sockets / "vm.vnc"))
    uuid = await running_vm(live_lab, outside, "", ET.tostring(root, encoding="unicode"))
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    assert server.running()[uuid].target == f"--unix-target {sockets / 'vm.vnc'}"
    await ws.close()


async def test_loopback_port_fallback(console: StartConsole, live_lab: Lab, outside: Outside,
                                      web_settings: Settings) -> None:
    uuid = await running_vm(live_lab, outside, "web-tcp")
    with socket.socket() as probe_socket:  # a free range of two ports
        probe_socket.bind(("127.0.0.1", 0))
        low = probe_socket.getsockname()[1]
    settings = dataclasses.replace(web_settings, console_ports=f"{low}-{low + 1}")
    server = await console(live_lab, settings, transport="tcp")
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    endpoint = server.running()[uuid]
    assert endpoint.transport == "tcp"
    assert endpoint.port in (low, low + 1)
    # The port is on loopback, but without the endpoint's secret websockify refuses the upgrade.
    port = Listener("tcp", f"127.0.0.1:{endpoint.port}", 0)
    answer = await asyncio.to_thread(probe, port, "/", server.base)
    assert b"RFB " not in answer
    assert b" 403 " in answer
    await ws.close()
    await eventually(lambda: not server.running(), what="the endpoint to stop")


async def test_exhausted_port_range_says_so(console: StartConsole, live_lab: Lab, outside: Outside,
                                            web_settings: Settings) -> None:
    uuid = await running_vm(live_lab, outside, "web-noport")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = dataclasses.replace(web_settings, console_ports=f"{port}-{port}")
        server = await console(live_lab, settings, transport="tcp")
        _, token = server.link(uuid)
        browser = server.browser()
        assert await server.open_link(browser, token) == 303
        status, _ = await server.status(browser, uuid)
        assert status == 503
        async with browser.get(f"{server.base}/console/{uuid}/ws", headers={
                "Origin": server.base, "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as response:
            assert response.status == 503
            assert f"VMM_CONSOLE_PORTS ({port}-{port})" in await response.text()
    assert websockify_pids(server.settings.run_path) == []


async def test_no_listening_socket_gives_vnc_without_a_token(console: StartConsole, live_lab: Lab,
                                                             outside: Outside) -> None:
    """During a console session, connect to every socket that listens now and did not before:
    none may greet with VNC, raw or after a websocket upgrade. QEMU's own VNC port is QEMU's."""
    uuid = await running_vm(live_lab, outside, "web-ports")
    before = listeners()
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    owners = socket_owners()
    ours = {os.getpid(), *websockify_pids(server.settings.run_path)}
    new = [s for s in listeners() - before if not process_name(owners.get(s.inode, 0)).startswith("qemu")]
    assert any(s.family == "unix" and s.address.endswith(f"{uuid}.sock") for s in new), new
    our_tcp = {s.address for s in new if s.family != "unix" and owners.get(s.inode) in ours}
    assert our_tcp == {f"127.0.0.1:{server.server.port}"}  # the server is our only TCP listener
    for listener in new:
        answer = await asyncio.to_thread(probe, listener, f"/console/{uuid}/ws", server.base)
        assert b"RFB " not in answer, f"{listener} gave a VNC greeting without a token"
    await ws.close()


async def test_shutdown_closes_every_console(console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    uuid = await running_vm(live_lab, outside, "web-down")
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    pid = server.running()[uuid].process.pid
    closing = asyncio.create_task(closed(ws))
    await server.server.close()
    assert await closing == aiohttp.WSCloseCode.GOING_AWAY
    assert pid not in websockify_pids()


async def test_serve_process_end_to_end(live_lab: Lab, outside: Outside, serve: StartServe,
                                        env: dict[str, str], run_dir: Path) -> None:
    """``vm-manager serve`` as operators run it: killed outright, its websockify dies with it; run
    again, revocation through the CLI closes the console at once; SIGTERM closes the rest, exit 0."""
    uuid = await running_vm(live_lab, outside, "web-serve")
    name = outside.domain(uuid).name()
    key = {"SECRET_KEY": "z" * 40}

    Opened = tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse, str]

    async def open_console(server: Serve) -> Opened:
        out = await asyncio.to_thread(cli, env, "-c", URI, "share", name, "--ttl", "10m", **key)
        assert out.returncode == 0, out.stderr
        url, _, _, _, link_id, _, _ = out.stdout.split()
        assert url.startswith(f"{server.base}/c/")
        browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with browser.get(url, allow_redirects=False) as response:
            assert response.status == 303
        ws = await browser.ws_connect(f"{server.base}/console/{uuid}/ws", protocols=("binary",),
                                      origin=server.base)
        assert await greeting(ws) == GREETING
        return browser, ws, link_id

    first = serve("-c", URI, "serve", **key)
    await asyncio.to_thread(first.wait_for, "serving consoles at")
    browser, ws, _ = await open_console(first)
    assert websockify_pids(run_dir)
    assert await asyncio.to_thread(first.stop, signal.SIGKILL) == -signal.SIGKILL
    await eventually(lambda: not websockify_pids(run_dir), what="websockify to die with its server")
    await browser.close()

    second = serve("-c", URI, "serve", **key)  # the same run dir: what the killed one left is cleared
    await asyncio.to_thread(second.wait_for, "serving consoles at")
    browser, ws, link_id = await open_console(second)
    other_browser, other, _ = await open_console(second)
    out = await asyncio.to_thread(cli, env, "-c", URI, "revoke", link_id, **key)
    assert out.returncode == 0, out.stderr
    assert f"revoked link {link_id} of {name}" in out.stdout
    assert "closed 1 open console" in out.stderr
    assert await closed(ws, within=3) == CLOSE_REVOKED
    assert not other.closed
    assert await asyncio.to_thread(second.stop) == 0
    assert await closed(other) == aiohttp.WSCloseCode.GOING_AWAY
    assert websockify_pids(run_dir) == []
    assert not list((run_dir / "consoles").glob("*.sock"))
    for session in (browser, other_browser):
        await session.close()
