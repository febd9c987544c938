"""The web server's HTTP side on libvirt's test driver: links, cookies, pages, headers, logs, admin API.

The test driver has no QEMU, so no VNC: what needs a real console is in test_live_consoles.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.webtest import (
    Console,
    StartConsole,
    closed,
    eventually,
    greeting,
    read_text,
    uuid_of,
    websockify_pids,
)

from core.lab import Lab
from core.model import VMState
from core.records.audit import Actor, AuditLog
from core.settings import RecordSettings, Settings
from core.testing import testdriver
from core.web.console.proxy import CLOSE_VM_STOPPED, DISPLAY_CLOSED
from core.web.console.routes import COOKIE
from core.web.keys import ENDPOINTS, find_vm
from core.web.middlewares import ACCESS_LOG

SECURITY_HEADERS = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY"}


@pytest.fixture
def novnc(tmp_path: Path) -> Path:
    """A stand-in for noVNC/: our page and script, and a vendor folder."""
    root = tmp_path / "noVNC"
    files = {"console.html": "<!doctype html><title>console</title>", "console.js": "// console",
             "README.md": "# ours", ".hidden": "no", "vendor/core/rfb.js": "// rfb",
             "vendor/vendor/pako/lib/zlib/inflate.js": "// pako", "vendor/vendor/pako/README.md": "# pako",
             "vendor/vnc.html": "<!doctype html>", "vendor/vnc_lite.html": "<!doctype html>",
             "vendor/COPYRIGHT": "MPL-2.0", "vendor/app/ui.js": "// noVNC's own app",
             "vendor/core/.hidden.js": "no"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "secret.txt").write_text("outside")
    return root


@pytest.fixture
def access_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "access.log"
    handler = logging.FileHandler(path)
    level = ACCESS_LOG.level
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.addHandler(handler)
    yield path
    ACCESS_LOG.removeHandler(handler)
    ACCESS_LOG.setLevel(level)
    handler.close()


def assert_secure_headers(response: aiohttp.ClientResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, f"{response.url}: {name}"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


async def test_share_link_opens_a_strict_session(console: StartConsole, test_lab: Lab) -> None:
    server = await console(test_lab)
    uuid = uuid_of(test_lab, "web-a")
    _, token = server.link(uuid, "web-a")
    browser = server.browser()
    async with browser.get(f"{server.base}/c/{token}", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/console/{uuid}"
        assert response.headers["Cache-Control"] == "no-store"
        assert_secure_headers(response)
        cookie = response.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert cookie.startswith(f"{COOKIE}=")
    assert attributes["path"] == f"Path=/console/{uuid}"
    assert attributes["samesite"] == "SameSite=Strict"
    assert "httponly" in attributes
    assert "secure" not in attributes
    assert token not in cookie  # the cookie holds a session secret, not the link's token


async def test_https_public_url_makes_secure_cookies_and_is_the_only_origin(
        console: StartConsole, test_lab: Lab, web_settings: Settings) -> None:
    settings = dataclasses.replace(web_settings, web=dataclasses.replace(web_settings.web, public_url="https://vm.example.org/"))
    server = await console(test_lab, settings)
    uuid = uuid_of(test_lab, "web-a")
    _, token = server.link(uuid)
    browser = server.browser()
    async with browser.get(f"{server.base}/c/{token}", allow_redirects=False) as response:
        assert "; Secure" in response.headers["Set-Cookie"]
        assert "connect-src 'self' wss://vm.example.org" in response.headers["Content-Security-Policy"]
    secret = response.cookies[COOKIE].value
    headers = {"Cookie": f"{COOKIE}={secret}"}
    assert (await server.status(browser, uuid, headers=headers))[0] == 403  # Origin http://127.0.0.1:port
    # The right Origin passes the checks (the test driver's VM then has no VNC: 503, not 403).
    assert (await server.status(browser, uuid, origin="https://vm.example.org", headers=headers))[0] == 503


async def test_links_that_do_not_work_get_403(console: StartConsole, test_lab: Lab) -> None:
    server = await console(test_lab)
    uuid = uuid_of(test_lab, "web-a")
    revoked, revoked_token = server.link(uuid)
    server.store.revoke(ids=[revoked.id])
    _, expiring = server.link(uuid, ttl=60)
    _, gone = server.link("99999999-9999-4999-8999-999999999999", "deleted-vm")
    browser = server.browser()
    server.clock.offset = 61
    for token in ("A" * 43, "short", revoked_token, expiring, gone, "%2e%2e%2fadmin"):
        async with browser.get(f"{server.base}/c/{token}", allow_redirects=False) as response:
            assert response.status == 403, token
            assert response.content_type == "text/html"
            assert "Set-Cookie" not in response.headers
            assert_secure_headers(response)
            assert "does not work" in await response.text()
    assert server.running() == {}
    assert websockify_pids(server.settings.run_path) == []


async def test_console_page_without_its_cookie_reloads_once_then_refuses(
        console: StartConsole, test_lab: Lab, novnc: Path) -> None:
    server = await console(test_lab, novnc_dir=novnc)
    uuid = uuid_of(test_lab, "web-a")
    stranger = server.browser()
    async with stranger.get(f"{server.base}/console/{uuid}", allow_redirects=False) as response:
        assert response.status == 200
        assert f'http-equiv="refresh" content="0;url=/console/{uuid}?retry=1"' in await response.text()
    async with stranger.get(f"{server.base}/console/{uuid}?retry=1", allow_redirects=False) as response:
        assert response.status == 403

    _, token = server.link(uuid)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    async with browser.get(f"{server.base}/console/{uuid}?retry=1", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/console/{uuid}"
    async with browser.get(f"{server.base}/console/{uuid}") as response:
        assert response.status == 200
        assert await response.text() == "<!doctype html><title>console</title>"
        assert response.headers["Cache-Control"] == "no-store"
        assert_secure_headers(response)
    other = uuid_of(test_lab, "web-b")  # the jar sends the cookie only under its own path
    async with browser.get(f"{server.base}/console/{other}?retry=1") as response:
        assert response.status == 403


async def test_console_page_not_installed(console: StartConsole, test_lab: Lab, tmp_path: Path) -> None:
    server = await console(test_lab, novnc_dir=tmp_path / "missing")
    uuid = uuid_of(test_lab, "web-a")
    _, token = server.link(uuid)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    async with browser.get(f"{server.base}/console/{uuid}") as response:
        assert response.status == 503
    async with browser.get(f"{server.base}/novnc/core/rfb.js") as response:
        assert response.status == 404


async def test_static_files(console: StartConsole, test_lab: Lab, novnc: Path,
                            caplog: pytest.LogCaptureFixture) -> None:
    server = await console(test_lab, novnc_dir=novnc)
    browser = server.browser()
    served = {"/static/console.js": "// console", "/novnc/core/rfb.js": "// rfb",
              "/novnc/vendor/pako/lib/zlib/inflate.js": "// pako"}
    for path, body in served.items():
        async with browser.get(server.base + path) as response:
            assert response.status == 200
            assert await response.text() == body
            assert "javascript" in response.content_type
            assert_secure_headers(response)
    for path in ("/static/vendor/core/rfb.js", "/static/.hidden", "/static/%2e%2e/secret.txt",
                 "/novnc/%2e%2e/console.html", "/novnc/..%2f..%2fsecret.txt", "/static/", "/c/",
                 # only what the console page loads: not our README, nor noVNC's pages, app or licence
                 "/static/README.md", "/static/console.html", "/novnc/vnc.html", "/novnc/vnc_lite.html",
                 "/novnc/COPYRIGHT", "/novnc/app/ui.js", "/novnc/vendor/pako/README.md",
                 "/novnc/core/.hidden.js", "/novnc/core/%2e%2e/app/ui.js",
                 "/static/console.js%00.html", "/novnc/core/rfb%00.js"):  # a NUL: 404, no traceback
        async with browser.get(server.base + path, allow_redirects=False) as response:
            assert response.status == 404, path
            assert_secure_headers(response)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    async with browser.get(server.base + "/", allow_redirects=False) as response:  # the portal: sign in first
        assert (response.status, response.headers["Location"]) == (303, "/login")


async def test_websocket_refusals_come_before_any_endpoint(console: StartConsole, test_lab: Lab) -> None:
    server = await console(test_lab)
    a, b, off = (uuid_of(test_lab, n) for n in ("web-a", "web-b", "web-off"))
    _, token = server.link(a)
    _, off_token = server.link(off)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    assert await server.open_link(browser, off_token) == 303
    secret = next(c.value for c in browser.cookie_jar if c["path"] == f"/console/{a}")

    assert (await server.status(browser, a, origin="http://evil.example"))[0] == 403
    assert (await server.status(browser, a, origin=None))[0] == 403
    assert (await server.status(server.browser(), a))[0] == 403  # no cookie
    assert (await server.status(server.browser(), b, headers={"Cookie": f"{COOKIE}={secret}"}))[0] == 403
    assert (await server.status(browser, off))[0] == 409  # a VM that is not running
    status, _ = await server.status(browser, a)
    assert status == 503  # past every check: the test driver's VM has no VNC display
    assert server.running() == {}
    assert websockify_pids(server.settings.run_path) == []


async def test_access_log_never_holds_a_token(console: StartConsole, test_lab: Lab, access_log: Path,
                                              novnc: Path) -> None:
    server = await console(test_lab, novnc_dir=novnc)
    uuid = uuid_of(test_lab, "web-a")
    _, token = server.link(uuid)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    async with browser.get(f"{server.base}/console/{uuid}") as response:
        assert response.status == 200
    async with browser.get(f"{server.base}/c/{token}/more?token={token}", allow_redirects=False):
        pass
    async with browser.get(f"{server.base}/c/{'B' * 43}", allow_redirects=False):
        pass
    text = read_text(access_log)
    assert token not in text
    assert "B" * 43 not in text
    assert text.count('"GET /c/<redacted>') == 3
    assert f'"GET /console/{uuid}" 200' in text


async def test_forwarded_headers_only_from_trusted_proxies(console: StartConsole, test_lab: Lab,
                                                           web_settings: Settings, access_log: Path) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https"}
    trusted = await console(
        test_lab,
        dataclasses.replace(
            web_settings, web=dataclasses.replace(web_settings.web, trusted_proxies="127.0.0.1")
        ),
    )
    async with trusted.browser().get(f"{trusted.base}/nothing", headers=forwarded):
        pass
    untrusted = await console(
        test_lab,
        dataclasses.replace(
            web_settings, web=dataclasses.replace(web_settings.web, trusted_proxies="10.0.0.0/8")
        ),
    )
    async with untrusted.browser().get(f"{untrusted.base}/else", headers=forwarded):
        pass
    lines = read_text(access_log).splitlines()
    assert any(line.startswith('203.0.113.9 "GET /nothing"') for line in lines), lines
    assert any(line.startswith('127.0.0.1 "GET /else"') for line in lines), lines


async def test_admin_api(console: StartConsole, test_lab: Lab) -> None:
    server = await console(test_lab)
    run = server.settings.run_path
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(server.settings.admin_socket).st_mode) == 0o600
    a, b = uuid_of(test_lab, "web-a"), uuid_of(test_lab, "web-b")

    made = await server.admin("POST", "/links", {"vms": [a, b, "nope"], "ttl": "30m"})
    assert [row["name"] for row in made["links"]] == ["web-a", "web-b"]
    assert made["errors"] == [{"vm": "nope", "error": "no such VM"}]
    url = made["links"][0]["url"]
    assert url.startswith(f"{server.base}/c/")
    browser = server.browser()
    assert await server.open_link(browser, url.rpartition("/")[2]) == 303
    listed = await server.admin("GET", "/links")
    assert {row["id"] for row in listed["links"]} == {row["id"] for row in made["links"]}
    assert await server.admin("GET", "/viewers") == {"total": 0, "by_vm": {}, "by_link": {}, "endpoints": {}}

    reply = await server.admin("POST", "/revoke", {"ids": [made["links"][0]["id"], "00000000"],
                                                   "tokens": [url.rpartition("/")[2]], "vms": [b]})
    assert [(r["kind"], r["found"], len(r["revoked"])) for r in reply["results"]] == [
        ("id", True, 1), ("id", False, 0), ("token", True, 0), ("vm", True, 1)]
    assert all(r["value"] == "***" for r in reply["results"] if r["kind"] == "token")
    assert await server.open_link(browser, url.rpartition("/")[2]) == 403
    assert (await server.admin("GET", "/links"))["links"] == []

    with pytest.raises(Exception, match="bad duration"):
        await server.admin("POST", "/links", {"vms": [a], "ttl": "forever"})
    with pytest.raises(Exception, match="list of strings"):
        await server.admin("POST", "/revoke", {"ids": "abc"})


def test_find_vm_is_by_uuid(test_lab: Lab) -> None:
    vm = test_lab.vms()[0]
    assert find_vm(test_lab, vm.uuid) == vm
    assert find_vm(test_lab, vm.name) is None


async def test_shutdown_closes_the_admin_socket(console: StartConsole, test_lab: Lab) -> None:
    server: Console = await console(test_lab)
    await server.close()
    server.sessions.clear()
    from core.links import client as admin_client

    assert await admin_client.call(server.settings, "GET", "/viewers") is None


class FakeEndpoint:
    """Stands for a websockify endpoint: a websocket server in-process that greets like VNC and echoes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession()
        self.released = 0

    async def connect(self, protocols: list[str]) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(self.url, protocols=protocols)

    def errors(self) -> str:
        return ""


@contextlib.asynccontextmanager
async def stand_in_vnc(echo: bool) -> AsyncIterator[str]:
    """A stand-in endpoint's URL: its VM's display greets, then echoes (``echo``) or ends."""
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("binary",))
        await ws.prepare(request)
        await ws.send_bytes(b"RFB 003.008\n")
        if echo:
            async for message in ws:
                await ws.send_bytes(message.data)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        await server.close()


@pytest.fixture
async def echo_vnc() -> AsyncIterator[str]:
    async with stand_in_vnc(echo=True) as url:
        yield url


def relay_to(server: Console, url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeEndpoint, list[str]]:
    """Every console of ``server`` relayed to the stand-in endpoint at ``url``; returns it and the
    list of the VMs whose endpoint the server stopped."""
    endpoints = server.app[ENDPOINTS]
    fake = FakeEndpoint(url)
    stopped: list[str] = []

    async def acquire(vm: object) -> FakeEndpoint:
        return fake

    async def release(endpoint: FakeEndpoint) -> None:
        endpoint.released += 1

    async def stop_vm(uuid: str) -> None:
        stopped.append(uuid)

    monkeypatch.setattr(endpoints, "acquire", acquire)
    monkeypatch.setattr(endpoints, "release", release)
    monkeypatch.setattr(endpoints, "stop_vm", stop_vm)
    return fake, stopped


async def test_relay_and_vm_stop_without_qemu(console: StartConsole, test_lab: Lab, echo_vnc: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay against a stand-in endpoint that never closes by itself: the VM stopping in the
    inventory must close its viewers (4002) and stop its endpoint, and leave other VMs' alone."""
    server = await console(test_lab)
    fake, stopped = relay_to(server, echo_vnc, monkeypatch)
    a, b = uuid_of(test_lab, "web-a"), uuid_of(test_lab, "web-b")
    sockets = {}
    for uuid in (a, b):
        _, token = server.link(uuid)
        browser = server.browser()
        assert await server.open_link(browser, token) == 303
        sockets[uuid] = await server.websocket(browser, uuid)
        assert sockets[uuid].protocol == "binary"
        assert await greeting(sockets[uuid]) == b"RFB 003.008\n"
    await sockets[b].send_bytes(b"x" * 100_000)
    assert await greeting(sockets[b]) == b"x" * 100_000

    vm = next(vm for vm in test_lab.vms() if vm.uuid == a)
    assert (await test_lab.act("destroy", [vm]))[0].ok
    assert await closed(sockets[a]) == CLOSE_VM_STOPPED
    await eventually(lambda: stopped == [a], what="the endpoint of the stopped VM to stop")
    assert not sockets[b].closed
    await sockets[b].close()
    await eventually(lambda: fake.released == 2, what="both viewers to release the endpoint")
    await fake.session.close()


@pytest.fixture
async def ending_vnc() -> AsyncIterator[str]:
    """A stand-in endpoint whose VM's display greets, then ends the connection."""
    async with stand_in_vnc(echo=False) as url:
        yield url


async def watching_web_a(server: Console, lab: Lab) -> aiohttp.ClientWebSocketResponse:
    """A browser watching VM web-a through a share link: its websocket, past the display's greeting."""
    uuid = uuid_of(lab, "web-a")
    _, token = server.link(uuid)
    browser = server.browser()
    assert await server.open_link(browser, token) == 303
    ws = await server.websocket(browser, uuid)
    assert await greeting(ws) == b"RFB 003.008\n"
    return ws


async def test_a_console_the_vm_side_ended_says_so(console: StartConsole, test_lab: Lab, ending_vnc: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The page shows the close's reason ("the server closed the console: ..."): it names what ended."""
    server = await console(test_lab)
    fake, _ = relay_to(server, ending_vnc, monkeypatch)
    ws = await watching_web_a(server, test_lab)
    message = await ws.receive()
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.OK
    assert message.extra == DISPLAY_CLOSED
    assert "display" in message.extra
    await fake.session.close()


async def test_an_open_console_outlives_the_idle_timeout(console: StartConsole, test_lab: Lab,
                                                        web_settings: Settings, echo_vnc: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """VMM_HTTP_IDLE_TIMEOUT closes connections without a whole request, not a console's
    websocket: one opened before a half-open connection still relays after that one is closed."""
    settings = dataclasses.replace(web_settings, web=dataclasses.replace(web_settings.web, idle_timeout=0.5))
    server = await console(test_lab, settings)
    fake, _ = relay_to(server, echo_vnc, monkeypatch)
    ws = await watching_web_a(server, test_lab)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server, unanswered
    writer.close()
    await ws.send_bytes(b"still here")
    assert await greeting(ws) == b"still here"
    await ws.close()
    await fake.session.close()


async def status_of(server: Console, browser: aiohttp.ClientSession, uuid: str, *, origin: str | None = "",
                    language: str = "") -> tuple[int, dict[str, object]]:
    """What the console page asks after a failed connection: POST /console/<uuid>/status."""
    headers = {"Accept-Language": language} if language else {}
    if origin is not None:
        headers["Origin"] = server.base if origin == "" else origin
    async with browser.post(f"{server.base}/console/{uuid}/status", headers=headers) as response:
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        return response.status, await response.json()


async def test_console_status_tells_the_page_why(console: StartConsole, test_lab: Lab) -> None:
    """The reason a console does not open, under the websocket's own checks; final when trying
    again is useless, in the browser's language."""
    server = await console(test_lab)
    a, off = uuid_of(test_lab, "web-a"), uuid_of(test_lab, "web-off")
    browser = server.browser()
    for uuid in (a, off):
        _, token = server.link(uuid)
        assert await server.open_link(browser, token) == 303

    # Without the session or from another page: 403, final, and nothing about the VM.
    for who, origin in ((server.browser(), ""), (browser, "http://evil.example"), (browser, None)):
        status, body = await status_of(server, who, a, origin=origin)
        assert (status, body["final"], body["running"]) == (403, True, False)
        assert "web-a" not in str(body["reason"])
    # An off VM: not final, the page keeps waiting for it.
    status, body = await status_of(server, browser, off)
    assert (status, body["final"], body["running"]) == (200, False, False)
    assert body["reason"] == "web-off is off: the console opens again when it runs."
    # Running, but no VNC display (the test driver's VMs have none): final, the page stops trying.
    assert (await server.status(browser, a))[0] == 503  # the websocket itself says no more than 503
    status, body = await status_of(server, browser, a)
    assert (status, body) == (200, {"final": True, "running": True, "reason": "web-a has no VNC display"})
    status, body = await status_of(server, browser, a, language="fr-FR,fr;q=0.9")
    assert body["reason"] == "web-a n’a pas d’écran VNC"
    status, body = await status_of(server, browser, off, language="fr")
    assert body["reason"] == ("web-off est dans l’état « éteinte » : la console se rouvrira quand elle sera "
                              "en marche.")
    async with browser.get(f"{server.base}/console/{a}/status") as response:  # a POST only
        assert response.status == 405
    assert server.running() == {}
    assert websockify_pids(server.settings.run_path) == []


async def test_console_status_shows_a_bidi_name_escaped(console: StartConsole, web_settings: Settings,
                                                        tmp_path: Path) -> None:
    """A VM's name in the console page's status message goes through the one rule of core.text:
    its bidi override shows escaped (``rtl`` U+202E ``gpj.exe`` would read "rtlexe.jpg")."""
    uri = testdriver.write(tmp_path / "bidi.xml", [testdriver.Spec("rtl\u202egpj.exe", VMState.SHUTOFF)])
    lab = await Lab.open(web_settings, uri)
    try:
        server = await console(lab)
        uuid = uuid_of(lab, "rtl\u202egpj.exe")
        browser = server.browser()
        _, token = server.link(uuid)
        assert await server.open_link(browser, token) == 303
        _, body = await status_of(server, browser, uuid)
        assert body["reason"] == "rtl\\u202egpj.exe is off: the console opens again when it runs."
    finally:
        await lab.close()


async def test_the_servers_own_pages_speak_the_browsers_language(console: StartConsole, test_lab: Lab,
                                                                 novnc: Path) -> None:
    server = await console(test_lab, novnc_dir=novnc)
    uuid = uuid_of(test_lab, "web-a")
    browser = server.browser()
    french = {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}
    async with browser.get(f"{server.base}/c/{'A' * 43}", headers=french) as response:
        assert response.status == 403
        text = await response.text()
        assert '<html lang="fr">' in text
        assert "Ce lien de console ne fonctionne pas" in text
        assert "does not work" not in text
    for path in ("/nothing/here", "/static/.hidden", "/novnc/missing.js"):
        async with browser.get(server.base + path, headers=french) as response:
            assert response.status == 404, path
            assert response.content_type == "text/html"
            text = await response.text()
            assert "<h1>Introuvable</h1>" in text
            assert "Il n’y a rien à cette adresse." in text
            assert_secure_headers(response)
    async with browser.get(f"{server.base}/nothing?lang=en", headers=french) as response:
        assert "<h1>Not found</h1>" in await response.text()  # the switch wins
    async with browser.get(f"{server.base}/console/{uuid}?retry=1", headers=french) as response:
        assert response.status == 403
        assert "Ce navigateur n’a pas de session valide pour cette console" in await response.text()
    async with browser.get(f"{server.base}/console/{uuid}", headers=french) as response:
        assert "Ouverture de la console…" in await response.text()
    _, token = server.link(uuid_of(test_lab, "web-off"))
    assert await server.open_link(browser, token) == 303
    off = uuid_of(test_lab, "web-off")
    async with browser.get(f"{server.base}/console/{off}/ws", headers={
            **french, "Origin": server.base, "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as response:
        assert response.status == 409
        assert "web-off est dans l’état « éteinte » : démarrez-la d’abord." in await response.text()
    async with browser.get(f"{server.base}/nothing") as response:  # English without a choice
        assert "<h1>Not found</h1>" in await response.text()
        assert '<html lang="en">' in await response.text()


async def test_the_server_purges_the_audit_log_after_its_days(console: StartConsole, test_lab: Lab,
                                                             web_settings: Settings) -> None:
    """Entries older than VMM_AUDIT_DAYS are gone once the server has started; newer ones stay."""
    day = 86400.0
    for age in (400, 366, 364, 1):
        old = AuditLog(web_settings.database_path, clock=lambda age=age: time.time() - age * day)
        old.record(Actor("alice", "web", "192.0.2.7"), f"signin-{age}")
        old.close()
    await console(test_lab, web_settings)
    audit = AuditLog(web_settings.database_path)
    try:
        await eventually(lambda: len(audit.entries()) == 2, what="the purge at start")
        assert [e.action for e in audit.entries()] == ["signin-364", "signin-1"]
    finally:
        audit.close()
    assert RecordSettings().audit_days == 365
