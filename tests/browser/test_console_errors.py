"""Why a console does not open, shown on the console page in headless Chromium: the real server
(``core.web``), real VMs, noVNC.

A refused websocket upgrade tells the browser nothing, so the page asks the server
(``POST /console/<uuid>/status``) and shows its answer: it stops for good where trying again is
useless (a VM without a VNC display), and keeps trying where the cause may pass (no console port
free, the VM off, its link or VM with as many viewers as allowed) -- and connects once it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from support import leftovers
from support.consolelab import ConsoleServer, open_console, until, wait_state
from support.livelab import URI, Outside, domain_xml

from core.lab import Lab
from core.links.shares import TokenStore
from core.settings import ConsoleSettings, Settings
from core.web.app import make_app
from core.web.keys import LAB, STORE, VIEWERS, find_vm
from core.web.middlewares import runner_options

pytestmark = pytest.mark.integration


async def in_inventory(lab: Lab, uuid: str) -> Any:
    deadline = time.monotonic() + 20
    while (vm := find_vm(lab, uuid)) is None:
        assert time.monotonic() < deadline, f"{uuid} never reached the server's inventory"
        await asyncio.sleep(0.05)
    return vm


async def share(lab: Lab, store: TokenStore, base: str, dom: libvirt.virDomain) -> str:
    vm = await in_inventory(lab, dom.UUIDString())
    _link, token = store.create_link(vm.uuid, vm.name, 3600)
    return f"{base}/c/{token}"


async def open_page(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    """The console page, not waited for: the page, its uncaught errors, its websocket attempts."""
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    page = await context.new_page()
    errors: list[str] = []
    sockets: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    response = await page.goto(url)
    assert response is not None
    assert response.ok
    return page, errors, sockets


async def reason(page: Any) -> str:
    return str(await page.evaluate("document.body.dataset.reason"))


@contextlib.asynccontextmanager
async def tcp_console_server(settings: Settings) -> AsyncIterator[tuple[str, web.Application]]:
    """The real server (as ``vm-manager serve`` makes it) with its endpoints on loopback ports of
    ``settings.consoles.ports`` (where Unix sockets cannot serve)."""
    lab = await asyncio.wait_for(Lab.open(settings, URI), 30)
    port = unused_port()
    app = make_app(settings, lab, secret_key=secrets.token_hex(32), port=port, transport="tcp",
                   expiry_interval=0.5)
    runner = web.AppRunner(app, handle_signals=False, **runner_options(settings))  # type: ignore[arg-type]
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()
        await asyncio.wait_for(lab.close(), 15)


async def test_a_vm_without_a_display_says_so_and_stops_trying(outside: Outside, server: ConsoleServer,
                                                               browser: Any) -> None:
    root = ET.fromstring(domain_xml(outside.name("nodisplay")))
    devices = root.find("devices")
    assert devices is not None
    for graphics in devices.findall("graphics"):
        devices.remove(graphics)
    dom = outside.conn.defineXML(ET.tostring(root, encoding="unicode"))
    outside.uuids.append(dom.UUIDString())
    dom.create()
    page, errors, sockets = await open_page(browser, (await server.share(dom))[0])

    await wait_state(page, "ended")
    assert await reason(page) == f"{dom.name()} has no VNC display"
    assert f"{dom.name()} has no VNC display" in await page.text_content("#status")
    assert await page.is_visible("#overlay")
    assert await page.is_hidden("#reconnect")  # nothing to try again
    tried = len(sockets)
    assert tried == 1
    await asyncio.sleep(4)  # longer than the first retries: none comes
    assert len(sockets) == tried
    assert await page.evaluate("document.body.dataset.state") == "ended"
    assert server.viewers() == 0
    assert errors == []


async def test_no_free_console_port_says_so_then_connects_once_one_is(outside: Outside, novnc: Path,
                                                                      browser: Any, tmp_path: Path) -> None:
    dom = outside.define("noport", start=True)
    run = Path(tempfile.mkdtemp(prefix="vmm-run-"))
    taken = socket.create_server(("127.0.0.1", 0))  # the one console port, taken by someone else
    port = taken.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        runtime_dir=run,
        consoles=ConsoleSettings(ports=f"{port}-{port}"),
    )
    try:
        async with tcp_console_server(settings) as (base, app):
            page, errors, sockets = await open_page(browser, await share(app[LAB], app[STORE], base, dom))
            await until(page, "(document.body.dataset.reason || '').includes('VMM_CONSOLE_PORTS')", 15_000,
                        "the page to tell why")
            assert await reason(page) == (f"every console port of VMM_CONSOLE_PORTS ({port}-{port}) is in "
                                          "use: no console can open until one is free")
            assert await page.evaluate("document.body.dataset.state") in ("disconnected", "connecting")
            assert "VMM_CONSOLE_PORTS" in await page.text_content("#status")
            # Not final: the page goes on trying, with back-off ...
            await until(page, "Number(document.body.dataset.retries) >= 2", 15_000, "a second retry")
            assert len(sockets) >= 2
            # ... and connects once the port is free.
            taken.close()
            await wait_state(page, "connected", within_ms=30_000)
            assert len(app[VIEWERS]) == 1
            assert errors == []
    finally:
        taken.close()
        shutil.rmtree(run, ignore_errors=True)


async def test_a_vm_that_is_off_is_waited_for(outside: Outside, server: ConsoleServer, browser: Any) -> None:
    dom = outside.define("later")  # defined, not started
    page, errors, _sockets = await open_page(browser, (await server.share(dom))[0])
    await until(page, "(document.body.dataset.reason || '').includes('is off')", 15_000,
                "the page to tell why")
    assert await reason(page) == f"{dom.name()} is off: the console opens again when it runs."
    assert await page.evaluate("document.body.dataset.state") in ("disconnected", "connecting")
    await asyncio.to_thread(dom.create)
    await wait_state(page, "connected", within_ms=30_000)
    assert errors == []


async def test_a_link_or_vm_with_every_viewer_allowed_says_so_then_connects_when_one_closes(
        outside: Outside, novnc: Path, browser: Any, tmp_path: Path) -> None:
    """VMM_VIEWERS_PER_LINK 1, VMM_VIEWERS_PER_VM 2: a second window of a link is told so, and so
    is a third link's window on the VM; each connects by itself once a viewer closes."""
    dom = outside.define("full", start=True)
    run = leftovers.run_dir()
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", runtime_dir=run,
                        consoles=ConsoleSettings(viewers_per_link=1, viewers_per_vm=2))
    server = ConsoleServer(settings, URI)
    try:
        await server.start()
        url, _ = await server.share(dom)
        first, first_errors = await open_console(browser, url)
        second, second_errors, _ = await open_page(browser, url)
        await until(second, "(document.body.dataset.reason || '').includes('already open')", 15_000,
                    "the page to tell why")
        assert await reason(second) == ("This console link is already open in as many windows as allowed "
                                        "(1): close one of them, and this page connects by itself.")
        assert "already open in as many windows as allowed (1)" in await second.text_content("#status")
        assert await second.is_visible("#overlay")
        assert await second.evaluate("document.body.dataset.state") in ("disconnected", "connecting")
        await first.context.close()  # the first window goes: the second connects by itself
        await wait_state(second, "connected", within_ms=30_000)

        other_url, _ = await server.share(dom)
        other, other_errors = await open_console(browser, other_url)  # the VM's second viewer
        late, late_errors, _ = await open_page(browser, (await server.share(dom))[0])
        await until(late, "(document.body.dataset.reason || '').includes('already has')", 15_000,
                    "the page to tell why")
        assert await reason(late) == (f"{dom.name()} already has as many consoles open as allowed (2): "
                                      "this page connects by itself when one of them closes.")
        assert server.viewers() == 2
        await other.context.close()
        await wait_state(late, "connected", within_ms=30_000)
        assert server.viewers() == 2
        assert first_errors == second_errors == other_errors == late_errors == []
    finally:
        await server.close()
        shutil.rmtree(run, ignore_errors=True)
