"""Browser consoles against real VMs: share link -> cookie -> websocket -> the VM's own VNC greeting.

Tiny diskless domains on a real libvirtd (VNC on loopback, or on a Unix socket like provisioned
VMs), the server in-process, websockify as real processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import socket
import stat
import struct
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from support.livelab import URI, Outside, Watch, domain_xml, unavailable
from support.portalweb import Student, add_accounts
from support.webtest import (
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

from core.auth.accounts import Accounts
from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.web.console.bridge import VNCTarget, group_members
from core.web.console.proxy import CLOSE_REVOKED, CLOSE_VM_STOPPED
from core.web.console.routes import COOKIE
from core.web.keys import VIEWERS
from core.web.portal import CONSOLE_CHECK

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
    from core.links.shares import TokenStore

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
    # Within the server's own bounds: the endpoint process's answer to "close" (10 s, its start
    # timeout), then its stop (3 s before SIGKILL). Once in a full run under load it took more than 10.
    await eventually(lambda: not server.running() and pid not in websockify_pids(), within=20,
                     what="endpoint stop")

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


def endpoint_connections(path: Path) -> int:
    """Connections the endpoint accepted on its Unix socket and still holds (the accepting side of
    each carries the socket's path in /proc/net/unix, in state 03: connected)."""
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    return sum(1 for fields in rows if len(fields) >= 8 and fields[7] == str(path) and fields[5] == "03")


async def test_a_browser_gone_before_its_console_opened_leaves_no_vnc_connection(
        live_lab: Lab, outside: Outside, web_settings: Settings) -> None:
    """The server connected to the VM's endpoint, then could not answer the browser (it left
    meanwhile): that connection to the VM is closed too, not left open beside the other viewers.

    The server runs as ``vm-manager serve`` runs it (``core.web.app.serve``: a handler goes on when
    its client leaves, where aiohttp's test server would cancel it)."""
    from core.links import client as admin_client
    from core.web.app import serve

    uuid = await running_vm(live_lab, outside, "web-gone")
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    stop, up = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve(web_settings, live_lab, secret_key=secrets.token_hex(32),
                                       host="127.0.0.1", port=port, stop=stop, started=lambda _url: up.set()))
    browsers = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(2)]
    try:
        await asyncio.wait_for(up.wait(), 30)

        async def opened(browser: aiohttp.ClientSession) -> str:
            made = await admin_client.call(web_settings, "POST", "/links", {"vms": [uuid]})
            assert made is not None
            async with browser.get(made["links"][0]["url"], allow_redirects=False) as response:
                assert response.status == 303
            return next(c.value for c in browser.cookie_jar if c["path"] == f"/console/{uuid}")

        await opened(browsers[0])
        staying = await browsers[0].ws_connect(f"{base}/console/{uuid}/ws", protocols=("binary",),
                                               origin=base)
        assert await greeting(staying) == GREETING  # it keeps the endpoint open through what follows
        path = web_settings.run_path / "consoles" / f"{uuid}.sock"
        assert endpoint_connections(path) == 1
        [bridge] = websockify_pids(web_settings.run_path)
        secret = await opened(browsers[1])
        request = (f"GET /console/{uuid}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\nOrigin: {base}\r\n"
                   f"Cookie: {COOKIE}={secret}\r\n\r\n").encode()
        for _ in range(3):
            # The endpoint process held still (as a loaded machine may hold it): the server's
            # connection to it waits for its answer while the browser gives up and goes.
            os.kill(bridge, signal.SIGSTOP)
            try:
                leaving = socket.create_connection(("127.0.0.1", port))
                leaving.sendall(request)
                await asyncio.sleep(0.5)  # the server checks the request and connects to the endpoint
                leaving.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                leaving.close()  # a reset: the browser is gone
                await asyncio.sleep(0.3)  # the server notices
            finally:
                os.kill(bridge, signal.SIGCONT)
            await eventually(lambda: endpoint_connections(path) == 1, within=5,
                             what="the endpoint to hold the staying viewer's connection alone")

        async def users() -> int:
            viewers = await admin_client.call(web_settings, "GET", "/viewers")
            assert viewers is not None
            return int(viewers["endpoints"][uuid]["users"])

        deadline = time.monotonic() + 20  # each closing waits for websockify's close, up to 5 s
        while await users() != 1:
            assert time.monotonic() < deadline, f"{await users()} users of the endpoint, not 1"
            await asyncio.sleep(0.1)
        await staying.send_bytes(GREETING)  # the viewer that stayed is still served
        assert (await staying.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
        await staying.close()
    finally:
        for browser in browsers:
            await browser.close()
        stop.set()
        await asyncio.wait_for(server, 30)
    assert websockify_pids(web_settings.run_path) == []


async def test_vnc_on_a_unix_socket(console: StartConsole, live_lab: Lab, outside: Outside) -> None:
    """As provisioning makes them: VNC on ``<dir>/<uuid>.vnc``, the dir 0770 group libvirt-qemu."""
    xml, vnc_socket = unix_vnc_domain(outside, "web-sock")
    uuid = await running_vm(live_lab, outside, "", xml)
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING
    assert server.running()[uuid].target == VNCTarget(unix=f"{vnc_socket}")
    await ws.close()


async def test_loopback_port_fallback(console: StartConsole, live_lab: Lab, outside: Outside,
                                      web_settings: Settings) -> None:
    uuid = await running_vm(live_lab, outside, "web-tcp")
    with socket.socket() as probe_socket:  # a free range of two ports
        probe_socket.bind(("127.0.0.1", 0))
        low = probe_socket.getsockname()[1]
    settings = dataclasses.replace(
        web_settings, consoles=dataclasses.replace(web_settings.consoles, ports=f"{low}-{low + 1}")
    )
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
        settings = dataclasses.replace(
            web_settings, consoles=dataclasses.replace(web_settings.consoles, ports=f"{port}-{port}")
        )
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
        # What the console page is told (a refused upgrade tells a browser nothing): not final,
        # a port may free up.
        async with browser.post(f"{server.base}/console/{uuid}/status",
                                headers={"Origin": server.base}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["final"] is False
        assert body["running"] is True
        assert f"every console port of VMM_CONSOLE_PORTS ({port}-{port}) is in use" in body["reason"]
    assert websockify_pids(server.settings.run_path) == []


def unix_vnc_domain(outside: Outside, label: str, meta: LabMeta | None = None) -> tuple[str, Path]:
    """A tiny domain's XML with VNC on a Unix socket, as provisioning makes them (a folder 0770 of
    QEMU's group); the XML and the socket's path."""
    sockets = outside.consoles_dir()
    root = ET.fromstring(domain_xml(outside.name(label), meta=meta))
    devices = root.find("devices")
    assert devices is not None
    for graphics in devices.findall("graphics"):
        devices.remove(graphics)
    graphics = ET.SubElement(devices, "graphics", type="vnc")
    ET.SubElement(graphics, "listen", type="socket", socket=str(sockets / "vm.vnc"))
    return ET.tostring(root, encoding="unicode"), sockets / "vm.vnc"


PROBE_AS = "nobody"  # a local user with no group of ours: anyone on the machine, or on the network


def probe_as_nobody(targets: list[Listener], path: str, origin: str) -> dict[str, bytes]:
    """:func:`webtest.probe` of each listener, run by a process of user ``nobody`` (no groups):
    what anyone without a token (and without the service's or QEMU's rights) gets from it."""
    import json

    from support.asuser import python_as

    here = Path(__file__).resolve().parent
    done = python_as(
        "import json, sys\nfrom support.webtest import Listener, probe",
        "args = json.load(sys.stdin)\n"
        "out = {t[1]: probe(Listener(*t), args['path'], args['origin']).hex() for t in args['targets']}\n"
        "print(json.dumps(out))",
        user=PROBE_AS, group="nogroup",
        input=json.dumps({"targets": [[t.family, t.address, t.inode] for t in targets], "path": path,
                          "origin": origin}),
        timeout=120, cwd="/", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{here.parent}:{here.parents[1]}"})
    assert done.returncode == 0, done.stderr
    return {address: bytes.fromhex(data) for address, data in json.loads(done.stdout).items()}


async def test_no_listening_socket_gives_vnc_without_a_token(console: StartConsole, live_lab: Lab,
                                                             outside: Outside) -> None:
    """During a console session of a VM made as provisioning makes them (VNC on a Unix socket), every
    TCP and Unix socket of the machine that listens now and did not before the test -- QEMU's
    included -- is probed without a token, as a user of no group of ours: raw, and with a websocket
    upgrade. None may give a VNC greeting. (Sockets of other tests' QEMUs are not this session's.)"""
    if os.geteuid() != 0:
        unavailable("probing as another user needs root")
    before = listeners()
    xml, vnc_socket = unix_vnc_domain(outside, "web-ports")
    uuid = await running_vm(live_lab, outside, "", xml)
    qemu = outside.qemu_pid(outside.domain(uuid).name())
    server = await console(live_lab)
    ws = await viewer(server, uuid)
    assert await greeting(ws) == GREETING

    owners = socket_owners()
    ours = {os.getpid(), *websockify_pids(server.settings.run_path)}
    def this_session(s: Listener) -> bool:
        return owners.get(s.inode) == qemu or not process_name(owners.get(s.inode, 0)).startswith("qemu")

    new = sorted(filter(this_session, listeners() - before), key=lambda s: (s.family, s.address))
    addresses = {s.address for s in new}
    assert str(vnc_socket) in addresses, new  # QEMU's VNC is among them: probed, not skipped
    assert any(s.address.endswith(f"{uuid}.sock") for s in new), new  # and our endpoint's
    assert {s.address for s in new if s.family != "unix" and owners.get(s.inode) in ours} == {
        f"127.0.0.1:{server.server.port}"}  # the server is our only TCP listener
    assert not [s for s in new if s.family != "unix" and owners.get(s.inode) == qemu]  # QEMU: no TCP

    answers = await asyncio.to_thread(probe_as_nobody, new, f"/console/{uuid}/ws", server.base)
    assert set(answers) == addresses
    for listener in new:
        assert b"RFB " not in answers[listener.address], f"{listener} gave a VNC greeting without a token"
    # The probe does see VNC where it can reach it: as root, QEMU's own socket greets at once. What
    # keeps it from others is the folder only QEMU's group may enter.
    vnc = next(s for s in new if s.address == str(vnc_socket))
    assert (await asyncio.to_thread(probe, vnc, "/", server.base)).startswith(b"RFB ")
    # Our endpoint's socket refuses even root without the endpoint's secret: no upgrade, no VNC.
    endpoint = next(s for s in new if s.address.endswith(f"{uuid}.sock"))
    answer = await asyncio.to_thread(probe, endpoint, f"/console/{uuid}/ws", server.base)
    assert b"RFB " not in answer
    assert b" 403 " in answer
    await ws.close()


async def test_a_vm_given_to_another_student_closes_the_former_owners_consoles(
        console: StartConsole, live_lab: Lab, outside: Outside, web_settings: Settings,
        env: dict[str, str]) -> None:
    """``vm-manager assign VM --owner bob``: alice's consoles of it, opened from the portal, close
    at once and her console session no longer opens it (page, websocket, status); an operator's
    console and a share link's stay open; bob opens his. Checked at opening too: a console session
    alice holds without a websocket open is refused as well."""
    settings = dataclasses.replace(
        web_settings, web=dataclasses.replace(web_settings.web, trusted_proxies="127.0.0.1")
    )
    add_accounts(settings)
    uuid = await running_vm(live_lab, outside, "", domain_xml(outside.name("web-owner"),
                                                              meta=LabMeta("alice", "net101")))
    name = outside.domain(uuid).name()
    server = await console(live_lab, settings)

    async def portal_console(user: str, address: str) -> tuple[Student, aiohttp.ClientWebSocketResponse]:
        student = Student(server, address)
        assert (await student.sign_in(user)).location == "/"
        assert (await student.submit(f"/vms/{uuid}/console")).location == f"/console/{uuid}"
        ws = await server.websocket(student.browser, uuid)
        assert await greeting(ws) == GREETING
        return student, ws

    alice, hers = await portal_console("alice", "192.0.2.10")
    [viewed] = server.store.links()
    assert viewed.owner == "alice"
    olga, operators = await portal_console("olga", "192.0.2.40")
    shared = await viewer(server, uuid)
    assert await greeting(shared) == GREETING
    later = Student(server, "192.0.2.11")  # alice elsewhere: a console session, no websocket yet
    assert (await later.sign_in("alice")).location == "/"
    assert (await later.submit(f"/vms/{uuid}/console")).status == 303

    out = await asyncio.to_thread(cli, env, "-c", URI, "assign", name, "--owner", "bob")
    assert out.returncode == 0, out.stderr
    assert await closed(hers, within=10) == CLOSE_REVOKED
    for ws in (operators, shared):  # still relayed
        await ws.send_bytes(GREETING)
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
    assert server.store.get(viewed.id).revoked is not None  # type: ignore[union-attr]
    for student in (alice, later):
        assert (await server.status(student.browser, uuid))[0] == 403
        assert (await student.get(f"/console/{uuid}?retry=1")).status == 403
        async with student.browser.post(f"{server.base}/console/{uuid}/status",
                                        headers={"Origin": server.base}) as response:
            assert response.status == 403
            assert (await response.json())["final"] is True
        assert name not in (await student.get("/")).text
        assert (await student.submit(f"/vms/{uuid}/console")).status == 404
    bob, his = await portal_console("bob", "192.0.2.20")
    for ws in (his, operators, shared):
        await ws.close()


async def refusal(server: Console, browser: aiohttp.ClientSession, uuid: str) -> tuple[int, str]:
    """The status and page a websocket upgrade of the console gets when it is refused."""
    async with browser.get(f"{server.base}/console/{uuid}/ws", headers={
            "Origin": server.base, "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": "binary"}) as response:
        return response.status, await response.text()


async def console_status(server: Console, browser: aiohttp.ClientSession, uuid: str) -> dict[str, Any]:
    """What the console page is told after a refused websocket (``POST /console/<uuid>/status``)."""
    async with browser.post(f"{server.base}/console/{uuid}/status",
                            headers={"Origin": server.base}) as response:
        assert response.status == 200
        return dict(await response.json())


async def test_one_link_cannot_take_every_console_of_a_vm(console: StartConsole, live_lab: Lab,
                                                          outside: Outside, web_settings: Settings) -> None:
    """QEMU's VNC serves 32 clients a display: one link's holder once opened 31 and the next viewer
    was refused. Now a link has at most VMM_VIEWERS_PER_LINK viewers, its sessions together, and a
    VM at most VMM_VIEWERS_PER_VM through all its links; the viewer over either is refused (429)
    before anything reaches the VM, its page is told why (not final), and a closed viewer gives its
    place back."""
    uuid = await running_vm(live_lab, outside, "web-full")
    name = outside.domain(uuid).name()
    settings = dataclasses.replace(web_settings, consoles=dataclasses.replace(
        web_settings.consoles, viewers_per_link=2, viewers_per_vm=3))
    server = await console(live_lab, settings)
    _, token = server.link(uuid)
    holder, second_browser = server.browser(), server.browser()
    for browser in (holder, second_browser):
        assert await server.open_link(browser, token) == 303

    # Six at once on one link: two open, four are refused (a place is taken before any await).
    opened = await asyncio.gather(*(server.websocket(holder, uuid) for _ in range(6)),
                                  return_exceptions=True)
    held = [ws for ws in opened if isinstance(ws, aiohttp.ClientWebSocketResponse)]
    refused = [exc for exc in opened if isinstance(exc, aiohttp.WSServerHandshakeError)]
    assert len(held) == 2
    assert [exc.status for exc in refused] == [429] * 4
    for ws in held:
        assert await greeting(ws) == GREETING
    socket_path = server.running()[uuid].socket_path
    assert endpoint_connections(socket_path) == 2

    # Another browser on the same link (a session of its own): the link's viewers count together.
    link_full = ("This console link is already open in as many windows as allowed (2): close one of them, "
                 "and this page connects by itself.")
    status, page = await refusal(server, second_browser, uuid)
    assert (status, link_full in page) == (429, True)
    assert await console_status(server, second_browser, uuid) == {"final": False, "running": True,
                                                                  "reason": link_full}
    assert endpoint_connections(socket_path) == 2  # nothing reached the VM for it

    # Another link takes the VM's third place; a fourth link's viewer is refused by the VM's limit.
    third = await viewer(server, uuid)
    assert await greeting(third) == GREETING
    _, late_token = server.link(uuid)
    late = server.browser()
    assert await server.open_link(late, late_token) == 303
    vm_full = (f"{name} already has as many consoles open as allowed (3): this page connects by itself "
               "when one of them closes.")
    status, page = await refusal(server, late, uuid)
    assert (status, vm_full in page) == (429, True)
    assert (await console_status(server, late, uuid))["reason"] == vm_full
    assert endpoint_connections(socket_path) == 3
    counts = await server.admin("GET", "/viewers")
    assert counts["by_vm"] == {uuid: 3}

    # A viewer that closes gives its place back: the late link's viewer opens, and sees the VM.
    await held[0].close()
    await eventually(lambda: len(server.app[VIEWERS]) == 2, what="the closed viewer to be gone")
    assert await console_status(server, late, uuid) == {"final": False, "running": True, "reason": ""}
    late_ws = await server.websocket(late, uuid)
    assert await greeting(late_ws) == GREETING
    for ws in (held[1], third, late_ws):
        await ws.close()
    await eventually(lambda: not server.running(), what="the endpoint to stop")


async def watching_from_the_portal(
        console: StartConsole, live_lab: Lab, outside: Outside, web_settings: Settings,
        user: str, address: str, vm: str) -> tuple[Console, Student, str, aiohttp.ClientWebSocketResponse]:
    """``user`` (a local account, see add_accounts) signed in from ``address`` and watching alice's
    running VM ``vm`` through a console opened from the portal: the server, the browser, the
    VM's UUID and the console's websocket (past the VM's greeting)."""
    settings = dataclasses.replace(
        web_settings, web=dataclasses.replace(web_settings.web, trusted_proxies="127.0.0.1")
    )
    add_accounts(settings)
    meta = LabMeta("alice", "net101")
    uuid = await running_vm(live_lab, outside, "", domain_xml(outside.name(vm), meta=meta))
    server = await console(live_lab, settings)
    browser = Student(server, address)
    assert (await browser.sign_in(user)).location == "/"
    assert (await browser.submit(f"/vms/{uuid}/console")).location == f"/console/{uuid}"
    ws = await server.websocket(browser.browser, uuid)
    assert await greeting(ws) == GREETING
    return server, browser, uuid, ws


async def test_a_password_change_closes_the_consoles_its_sessions_opened(
        console: StartConsole, live_lab: Lab, outside: Outside, web_settings: Settings,
        env: dict[str, str]) -> None:
    """An operator watches a student's VM from the portal; ``vm-manager user passwd`` of the
    operator (another process) closes that console at once, and its session opens nothing more."""
    server, olga, uuid, ws = await watching_from_the_portal(console, live_lab, outside, web_settings,
                                                            "olga", "192.0.2.40", "web-passwd")
    shared = await viewer(server, uuid)  # a share link's viewer of the same VM stays
    assert await greeting(shared) == GREETING

    out = await asyncio.to_thread(cli, env, "user", "passwd", "olga", "--password-stdin",
                                  stdin="olga-new-secret\n")
    assert out.returncode == 0, out.stderr
    assert "1 portal session ended, 1 console link revoked, 1 console closed" in out.stdout
    assert await closed(ws, within=3) == CLOSE_REVOKED
    await shared.send_bytes(GREETING)
    assert (await shared.receive(timeout=10)).type == aiohttp.WSMsgType.BINARY
    assert (await server.status(olga.browser, uuid))[0] == 403
    assert (await olga.get("/")).location == "/login"
    await shared.close()


async def test_an_open_console_ends_with_its_session_without_a_page_loaded(
        console: StartConsole, live_lab: Lab, outside: Outside, web_settings: Settings) -> None:
    """alice's account changed by other means than the CLI while she only watches her VM: the
    server checks the sessions behind open consoles too, and hers ends, closing the console."""
    server, alice, _, ws = await watching_from_the_portal(console, live_lab, outside, web_settings,
                                                          "alice", "192.0.2.10", "web-watch")
    accounts = Accounts(server.settings.database_path)
    try:
        accounts.set_password("alice", "alice-secret-new")
    finally:
        accounts.close()
    assert await closed(ws, within=CONSOLE_CHECK + 5) == CLOSE_REVOKED
    assert (await alice.get("/")).location == "/login"


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
    key = {"SECRET_KEY": "5d0e8a4f2c7b9e1d3a6f8c0b2e4d7a9c1f3e5b7d"}  # as openssl rand -hex 20 makes

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
