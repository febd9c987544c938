"""The aiohttp application: share links, console pages, the console websocket, static files, and
the student portal (``core.web.portal``, which documents its own URLs).

URL contract (``<uuid>``: the VM's UUID, lowercase):

- ``GET /c/<token>``: a valid share link opens a console session (cookie ``vmm_console``,
  HttpOnly, SameSite=Strict, Path=/console/<uuid>) and answers 303 to ``/console/<uuid>``;
  anything else answers 403 and touches no VNC.
- ``GET /console/<uuid>``: ``noVNC/console.html`` for a browser holding that VM's session; a
  browser without the cookie gets a page that loads the URL once more (``?retry=1``), then 403.
- ``GET /console/<uuid>/ws``: the console websocket (subprotocol ``binary`` when asked), after
  the session and the Origin (PUBLIC_URL's) are checked; 403 before any upgrade otherwise.
- ``POST /console/<uuid>/status``: why the console does not open, under the same checks, for the
  console page (a refused upgrade tells a browser nothing): ``{"final", "running", "reason"}``.
- ``GET /novnc/...``: ``noVNC/vendor/``; ``GET /static/...``: ``noVNC/`` except ``vendor``.

A console session the portal opened for a student opens only while the VM is theirs: it is
checked at every opening, and a VM given to someone else closes (and revokes) those consoles.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from core.errors import ConfigError
from core.lab import Lab
from core.links.shares import Link, TokenStore
from core.links.urls import DEFAULT_HOST, DEFAULT_PORT, base_url, origin_of
from core.model import VM, Update
from core.settings import PROJECT_DIR, Settings
from core.text import N_
from core.web import i18n, pages
from core.web.console.endpoints import MAX_MESSAGE, EndpointError, Endpoints
from core.web.console.proxy import CLOSE_REVOKED, Viewers, relay

log = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("core.web.access")

NOVNC_DIR = PROJECT_DIR / "noVNC"
COOKIE = "vmm_console"
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
HEARTBEAT = 30.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class WebConfig:
    base_url: str  # where links point: PUBLIC_URL, else http://<host>:<port> of serve
    origin: str  # the only Origin the websocket accepts
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    novnc_dir: Path
    expiry_interval: float

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies whatever the request (PUBLIC_URL is https); see :func:`secure_cookies`."""
        return self.origin.startswith("https:")


CONFIG = web.AppKey("config", WebConfig)
LAB = web.AppKey("lab", Lab)
STORE = web.AppKey("store", TokenStore)
ENDPOINTS = web.AppKey("endpoints", Endpoints)
VIEWERS = web.AppKey("viewers", Viewers)
CLIENT = web.RequestKey("client", str)  # the client's address, as trusted proxies report it


def make_app(settings: Settings, lab: Lab, *, secret_key: str, host: str = DEFAULT_HOST,
             port: int = DEFAULT_PORT, novnc_dir: Path = NOVNC_DIR, transport: str = "auto",
             expiry_interval: float = 5.0, clock: Callable[[], float] = time.time) -> web.Application:
    """The console server for ``lab``; ``host``/``port`` make the links when PUBLIC_URL is unset."""
    base = base_url(settings, host, port)
    config = WebConfig(base, origin_of(base), parse_proxies(settings.web.trusted_proxies), novnc_dir,
                       expiry_interval)
    app = web.Application(middlewares=[forwarded_for, own_error_pages])
    app[CONFIG] = config
    app[LAB] = lab
    app[VIEWERS] = Viewers()
    app[ENDPOINTS] = Endpoints(settings, lab, transport=transport)
    app[STORE] = TokenStore(settings.database_path, secret_key, clock)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        watchers = [asyncio.create_task(_expire_viewers(app), name="console-expiry")]
        unsubscribe = lab.subscribe(_on_inventory(app, watchers))
        yield
        unsubscribe()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await app[ENDPOINTS].stop_all()
        app[STORE].close()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(_close_consoles)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/c/{token}", open_link, allow_head=False)
    app.router.add_get(f"/console/{{uuid:{UUID}}}", console_page)
    app.router.add_get(f"/console/{{uuid:{UUID}}}/ws", console_socket, allow_head=False)
    app.router.add_post(f"/console/{{uuid:{UUID}}}/status", console_status)
    app.router.add_get("/novnc/{path:.+}", _files(lambda: config.novnc_dir / "vendor"))
    app.router.add_get("/static/{path:.+}", _files(lambda: config.novnc_dir, hidden={"vendor"}))
    from core.web import portal  # it imports this module

    portal.setup(app, settings, lab, app[STORE], secret_key=secret_key, clock=clock)
    return app


def parse_proxies(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """VMM_TRUSTED_PROXIES: addresses or networks, comma-separated."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",")
                     if part.strip())
    except ValueError as exc:
        raise ConfigError(f"VMM_TRUSTED_PROXIES: {exc}") from None


# -- handlers --
async def open_link(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    link = store.link_for_token(request.match_info["token"])
    vm = find_vm(request.app[LAB], link.vm_uuid) if link is not None else None
    if link is None or vm is None:
        log.info("share link refused for %s", request[CLIENT])
        return pages.refused(request)
    response = web.Response(status=303, headers={"Location": f"/console/{link.vm_uuid}", **pages.NO_STORE})
    open_console_session(response, store, link, secure=secure_cookies(request))
    log.info("share link %s of %s opened by %s", link.id, vm.name, request[CLIENT])
    return response


async def console_page(request: web.Request) -> web.StreamResponse:
    uuid = request.match_info["uuid"].lower()
    access = console_access(request, uuid)
    retry = "retry" in request.query
    if access is None:
        if retry:
            return pages.refused(request, N_(
                "This browser holds no valid session for this console: open the share link again (with "
                "cookies allowed), or ask your teacher for a new one."))
        return pages.retry_with_cookie(request, f"/console/{uuid}?retry=1")
    if retry or request.match_info["uuid"] != uuid:
        return web.Response(status=303, headers={"Location": f"/console/{uuid}", **pages.NO_STORE})
    page = request.app[CONFIG].novnc_dir / "console.html"
    try:
        html = await asyncio.to_thread(page.read_text, encoding="utf-8")
    except OSError:
        return pages.page(request, 503, N_("Console unavailable"),
                          N_("The console page is not installed on this server."))
    # console.js speaks the page's language (its texts for each are its own).
    html = html.replace('<html lang="en">', f'<html lang="{i18n.of_request(request)}">', 1)
    return web.Response(text=html, content_type="text/html", headers=pages.NO_STORE)


async def console_socket(request: web.Request) -> web.StreamResponse:
    """Check, then relay the browser's websocket to the VM's endpoint."""
    uuid = request.match_info["uuid"].lower()
    app = request.app
    if not _right_origin(request, uuid):
        return pages.refused(request, N_("This console can only be opened from its own page."))
    access = console_access(request, uuid)
    if access is None:
        log.info("console websocket of %s refused: no valid session from %s", uuid, request[CLIENT])
        return pages.refused(request)
    link, vm = access
    if not vm.state.is_active:
        return pages.page(request, 409, N_("The VM is not running"),
                          N_("%(name)s is %(state)s: start it first."), name=vm.name,
                          state=_state(request, vm))
    asked = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if not web.WebSocketResponse(protocols=asked).can_prepare(request).ok:
        return pages.page(request, 400, N_("Not a websocket"),
                          N_("This address takes websocket connections only."))
    endpoints = app[ENDPOINTS]
    try:
        endpoint = await endpoints.acquire(vm)
    except EndpointError as exc:
        log.warning("console of %s unavailable: %s", vm.name, exc.message)
        return pages.page(request, 503, exc.title, exc.template, **exc.values)
    try:
        try:
            upstream = await endpoint.connect(asked)
        except EndpointError as exc:
            log.warning("console of %s: %s (%s)", vm.name, exc.message, endpoint.errors())
            endpoints.failed(uuid, exc)
            return pages.page(request, 502, exc.title, exc.template, **exc.values)
        try:  # from here on the connection to the VM is ours to close, whatever happens
            browser = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                            heartbeat=HEARTBEAT, max_msg_size=MAX_MESSAGE, compress=False)
            try:
                await browser.prepare(request)
            except ConnectionResetError:  # the browser left while we connected: no error of ours
                log.info("console of %s: the browser left before it opened (%s)", vm.name, request[CLIENT])
                return browser
            endpoints.opened(uuid)
            viewer = app[VIEWERS].add(link.id, uuid, browser, owner=link.owner)
            log.info("console of %s opened through link %s by %s", vm.name, link.id, request[CLIENT])
            try:
                now = find_vm(app[LAB], uuid)
                still = now is not None and link.opens_for(now.meta.owner)  # given away while we connected?
                if still and not app[STORE].inactive([link.id]):  # revoked while we connected: closed already
                    await relay(browser, upstream)
            finally:
                app[VIEWERS].discard(viewer)
                log.info("console of %s closed (link %s)", vm.name, link.id)
                await browser.close()
            return browser
        finally:
            await upstream.close()
    finally:
        await endpoints.release(endpoint)


async def console_status(request: web.Request) -> web.StreamResponse:
    """Why the console does not open, for the console page after a failed connection (a refused
    websocket upgrade tells a browser nothing): ``{"final", "running", "reason"}``, ``reason`` in the
    request's language, ``final`` when trying again is useless. A POST, so that the browser sends
    its Origin, which is checked as for the websocket; the console session too."""
    uuid = request.match_info["uuid"].lower()
    lang = i18n.of_request(request)
    if not _right_origin(request, uuid):
        return _status(403, True, False,
                       i18n.gettext(lang, N_("This console can only be opened from its own page.")))
    access = console_access(request, uuid)
    if access is None:
        return _status(403, True, False, i18n.gettext(
            lang, N_("This console link no longer works (expired, revoked, or its VM is gone or no longer "
                     "yours): ask for a new one.")))
    _link, vm = access
    if not vm.state.is_active:
        return _status(200, False, False, i18n.gettext(
            lang, N_("%(name)s is %(state)s: the console opens again when it runs."), name=vm.name,
            state=_state(request, vm)))
    problem = await request.app[ENDPOINTS].problem(vm)
    if problem is None:
        return _status(200, False, True, "")
    return _status(200, problem.permanent, True, i18n.gettext(lang, problem.template, **problem.values))


def _status(status: int, final: bool, running: bool, reason: str) -> web.Response:
    return web.json_response({"final": final, "running": running, "reason": reason}, status=status,
                             headers=pages.NO_STORE)


def _right_origin(request: web.Request, uuid: str) -> bool:
    origin = request.headers.get("Origin", "")
    if origin.lower() == request.app[CONFIG].origin:
        return True
    log.warning("console %s of %s refused: Origin %r from %s", request.path.rpartition("/")[2], uuid,
                origin[:100], request[CLIENT])
    return False


def _state(request: web.Request, vm: VM) -> str:
    return i18n.gettext(i18n.of_request(request), i18n.STATE_LABELS.get(vm.state, str(vm.state)))


def open_console_session(response: web.StreamResponse, store: TokenStore, link: Link, *,
                         secure: bool) -> None:
    """A new console session on ``link``: its cookie, scoped to the VM's console, on ``response``."""
    response.set_cookie(COOKIE, store.open_session(link), path=f"/console/{link.vm_uuid}", httponly=True,
                        samesite="Strict", secure=secure, max_age=max(1, int(link.expires - time.time())))


def secure_cookies(request: web.BaseRequest) -> bool:
    """Whether cookies get Secure: PUBLIC_URL is https, or this request came over https (TLS here,
    or a trusted proxy's ``X-Forwarded-Proto: https``, which :func:`forwarded_for` believed)."""
    return request.app[CONFIG].secure_cookies or request.scheme == "https"


def find_vm(lab: Lab, uuid: str) -> VM | None:
    return next((vm for vm in lab.vms() if vm.uuid == uuid), None)


def console_access(request: web.BaseRequest, uuid: str) -> tuple[Link, VM] | None:
    """The link and the VM a console cookie opens: its session, its link and the VM all valid, and
    a student's portal link only while the VM is still theirs."""
    secret = request.cookies.get(COOKIE)
    vm = find_vm(request.app[LAB], uuid) if secret else None
    if secret is None or vm is None:
        return None
    link = request.app[STORE].session_link(secret, uuid, vm_owner=vm.meta.owner)
    return None if link is None else (link, vm)


def _files(root: Callable[[], Path], hidden: frozenset[str] | set[str] = frozenset()) -> Callable[
        [web.Request], Awaitable[web.StreamResponse]]:
    """Files under ``root()``: no dot files, nothing outside it, nothing under ``hidden`` folders."""
    async def handler(request: web.Request) -> web.StreamResponse:
        parts = PurePosixPath(request.match_info["path"]).parts
        if not parts or parts[0] in hidden or any(p.startswith(".") or "\\" in p for p in parts):
            return pages.not_found(request)
        base = root().resolve()
        path = base.joinpath(*parts).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return pages.not_found(request)
        return web.FileResponse(path)

    return handler


# -- middleware, signals, background work --
@web.middleware
async def forwarded_for(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """Believe X-Forwarded-For/Proto/Host only from VMM_TRUSTED_PROXIES."""
    trusted = request.app[CONFIG].trusted_proxies
    peer = request.remote or ""
    request[CLIENT] = peer or "-"
    if not trusted or not _in(peer, trusted):
        return await handler(request)
    chain = [a.strip() for h in request.headers.getall("X-Forwarded-For", []) for a in h.split(",")
             if a.strip()]
    client = next((a for a in reversed(chain) if not _in(a, trusted)), chain[0] if chain else peer)
    changes: dict[str, str] = {"remote": client}
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        changes["scheme"] = proto
    if forwarded_host := request.headers.get("X-Forwarded-Host", "").split(",")[-1].strip():
        changes["host"] = forwarded_host
    request[CLIENT] = client
    return await handler(request.clone(**changes))


@web.middleware
async def own_error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's 404 and 405 as our own pages (in the request's language), not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return pages.not_found(request)
    except web.HTTPMethodNotAllowed as exc:
        response = pages.page(request, 405, N_("Not allowed"), N_("This address does not take this method."))
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response


def _in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.app[CONFIG].origin
    ws = "wss" + origin[5:] if origin.startswith("https:") else "ws" + origin[4:]
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"font-src 'self'; connect-src 'self' {ws}; frame-ancestors 'none'; base-uri 'none'; "
        f"form-action {_form_action(response)}")


def _form_action(response: web.StreamResponse) -> str:
    """The portal's pages post forms to this site; no other page has a form."""
    from core.web.portal import FORMS

    return "'self'" if response.get(FORMS) else "'none'"


async def _close_consoles(app: web.Application) -> None:
    """Shutting down: close every console websocket, then stop every endpoint."""
    closed = await app[VIEWERS].close_all()
    await app[ENDPOINTS].stop_all()
    if closed:
        log.info("closed %d console(s) at shutdown", closed)


async def _expire_viewers(app: web.Application) -> None:
    """Close the viewers of links that expired or were revoked (also by a CLI without the server)."""
    purged_at = 0.0
    while True:
        await asyncio.sleep(app[CONFIG].expiry_interval)
        try:
            gone = app[STORE].inactive(app[VIEWERS].link_ids())
            if gone:
                count = await app[VIEWERS].close_links(gone, "share link expired or revoked")
                log.info("closed %d console(s) of expired or revoked links %s", count,
                         ", ".join(sorted(gone)))
            if time.monotonic() - purged_at > 3600:
                purged_at = time.monotonic()
                app[STORE].purge()
        except Exception:
            log.exception("checking console links failed")


def _on_inventory(app: web.Application, tasks: list[asyncio.Task[None]]) -> Callable[[Update], None]:
    """Close a VM's consoles (and stop its endpoint) when it stops or goes away; close (and revoke)
    the consoles a student opened on a VM given to someone else since."""
    def spawn(work: Coroutine[Any, Any, None]) -> None:
        tasks[:] = [t for t in tasks if not t.done()]
        tasks.append(asyncio.create_task(work))

    def on_update(update: Update) -> None:
        watched = app[VIEWERS].vm_uuids() | set(app[ENDPOINTS].running())
        for change in update.changes:
            uuid = change.vm.uuid
            if uuid not in watched or change.what == "stats":  # figures change neither state nor owner
                continue
            if change.kind == "removed" or not change.vm.state.is_active:
                why = "the VM was deleted" if change.kind == "removed" else f"the VM is {change.vm.state}"
                spawn(_vm_gone(app, uuid, why))
            elif foreign := app[VIEWERS].foreign_links(uuid, change.vm.meta.owner):
                spawn(_given_away(app, change.vm, foreign))

    return on_update


async def _vm_gone(app: web.Application, uuid: str, why: str) -> None:
    count = await app[VIEWERS].close_vm(uuid, why)
    await app[ENDPOINTS].stop_vm(uuid)
    log.info("console of %s closed (%d viewer(s)): %s", uuid, count, why)


async def _given_away(app: web.Application, vm: VM, link_ids: set[str]) -> None:
    """The VM has another owner: the former owner's portal links end, and their consoles close."""
    app[STORE].revoke(ids=sorted(link_ids))
    count = await app[VIEWERS].close(lambda v: v.link_id in link_ids, CLOSE_REVOKED,
                                     "the VM was given to another user")
    log.info("console of %s closed (%d viewer(s)): the VM is now %s's (links %s revoked)", vm.name, count,
             vm.meta.owner or "nobody", ", ".join(sorted(link_ids)))


class AccessLogger(AbstractAccessLogger):
    """One line per request, share-link tokens masked: ``/c/<redacted>``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        client = request.get(CLIENT) or request.remote or "-"
        self.logger.info('%s "%s %s" %d %d %.3fs', client, request.method, redact(request.path),
                         response.status, response.body_length, time)


_LINK_PATH = re.compile(r"/c/[^/]*")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{40,}")


def redact(path: str) -> str:
    return _TOKEN_LIKE.sub("<redacted>", _LINK_PATH.sub("/c/<redacted>", path))


def runner_options() -> dict[str, object]:
    """AppRunner / TestServer arguments: our access log."""
    return {"access_log_class": AccessLogger, "access_log": ACCESS_LOG}


async def serve(settings: Settings, lab: Lab, *, secret_key: str, host: str, port: int,
                stop: asyncio.Event, started: Callable[[str], None] | None = None) -> None:
    """Run the server (and the admin API on its Unix socket) until ``stop`` is set."""
    from core.links.client import server_answers
    from core.web import admin

    if await server_answers(settings):
        raise ConfigError(f"a server already runs (its admin API answers on {settings.admin_socket})")
    app = make_app(settings, lab, secret_key=secret_key, host=host, port=port)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, **runner_options())  # type: ignore[arg-type]
    await runner.setup()
    admin_runner: web.AppRunner | None = None
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        admin_runner = await admin.start(app, settings.admin_socket)
        if started is not None:
            started(app[CONFIG].base_url)
        await stop.wait()
    finally:
        if admin_runner is not None:
            await admin.stop(admin_runner, settings.admin_socket)
        with contextlib.suppress(Exception):
            await runner.cleanup()
