"""The console's URLs: share links, the console page, the console websocket and its status.

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

One link (its console sessions together) opens at most ``VMM_VIEWERS_PER_LINK`` viewers, one VM
at most ``VMM_VIEWERS_PER_VM``: one more is refused (429) before anything reaches the VM, and its
page learns why from the status (not final: it connects once a place is free).

A console session the portal opened for a student opens only while the VM is theirs: it is
checked at every opening (:func:`console_access`), and a VM given to someone else closes (and
revokes) those consoles (:mod:`core.web.console.watch`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from core.links import Link, TokenStore
from core.model import VM
from core.text import N_
from core.web import i18n, pages
from core.web.console.bridge import EndpointError
from core.web.console.endpoints import MAX_MESSAGE
from core.web.console.proxy import Viewer, ViewersFull, relay
from core.web.keys import CLIENT, CONFIG, ENDPOINTS, LAB, STORE, VIEWERS, find_vm, secure_cookies

log = logging.getLogger(__name__)

COOKIE = "vmm_console"
HEARTBEAT = 30.0


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
                          N_("%(name)s is %(state)s: start it first."),
                          {"name": vm.name, "state": _state(request, vm)})
    asked = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if not web.WebSocketResponse(protocols=asked).can_prepare(request).ok:
        return pages.page(request, 400, N_("Not a websocket"),
                          N_("This address takes websocket connections only."))
    try:  # a place among the link's and the VM's viewers, before anything reaches the VM
        viewer = app[VIEWERS].admit(link.id, uuid, owner=link.owner)
    except ViewersFull as full:
        log.info("console of %s refused: %s (link %s, %s)", vm.name, full, link.id, request[CLIENT])
        return pages.page(request, 429, N_("Too many consoles open"), *_full_text(full, vm))
    try:
        return await _connect(request, link, vm, viewer, asked)
    finally:
        app[VIEWERS].discard(viewer)


async def _connect(request: web.Request, link: Link, vm: VM, viewer: Viewer,
                   asked: list[str]) -> web.StreamResponse:
    """Connect the admitted ``viewer`` to the VM's endpoint, answer the browser, relay until one
    side ends."""
    app = request.app
    uuid = vm.uuid
    endpoints = app[ENDPOINTS]
    try:
        endpoint = await endpoints.acquire(vm)
    except EndpointError as exc:
        log.warning("console of %s unavailable: %s", vm.name, exc.message)
        return pages.page(request, 503, exc.title, exc.template, exc.values)
    try:
        try:
            upstream = await endpoint.connect(asked)
        except EndpointError as exc:
            log.warning("console of %s: %s (%s)", vm.name, exc.message, endpoint.errors())
            endpoints.failed(uuid, exc)
            return pages.page(request, 502, exc.title, exc.template, exc.values)
        try:  # from here on the connection to the VM is ours to close, whatever happens
            browser = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                            heartbeat=HEARTBEAT, max_msg_size=MAX_MESSAGE, compress=False)
            try:
                await browser.prepare(request)
            except ConnectionResetError:  # the browser left while we connected: no error of ours
                log.info("console of %s: the browser left before it opened (%s)", vm.name, request[CLIENT])
                return browser
            endpoints.opened(uuid)
            app[VIEWERS].opened(viewer, browser)
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
    link, vm = access
    if not vm.state.is_active:
        return _status(200, False, False, i18n.gettext(
            lang, N_("%(name)s is %(state)s: the console opens again when it runs."), name=vm.name,
            state=_state(request, vm)))
    if full := request.app[VIEWERS].full(link.id, uuid):
        template, values = _full_text(full, vm)
        return _status(200, False, True, i18n.gettext(lang, template, **values))
    problem = await request.app[ENDPOINTS].problem(vm)
    if problem is None:
        return _status(200, False, True, "")
    return _status(200, problem.permanent, True, i18n.gettext(lang, problem.template, **problem.values))


def _status(status: int, final: bool, running: bool, reason: str) -> web.Response:
    return web.json_response({"final": final, "running": running, "reason": reason}, status=status,
                             headers=pages.NO_STORE)


def _full_text(full: ViewersFull, vm: VM) -> tuple[str, dict[str, object]]:
    """Why one more viewer is refused (a msgid and its values), for the page and the status."""
    if full.which == "link":
        return N_("This console link is already open in as many windows as allowed (%(limit)d): close one "
                  "of them, and this page connects by itself."), {"limit": full.limit}
    return N_("%(name)s already has as many consoles open as allowed (%(limit)d): this page connects by "
              "itself when one of them closes."), {"name": vm.name, "limit": full.limit}


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


def console_access(request: web.Request, uuid: str) -> tuple[Link, VM] | None:
    """The link and the VM a console cookie opens: its session, its link and the VM all valid, and
    a student's portal link only while the VM is still theirs."""
    secret = request.cookies.get(COOKIE)
    vm = find_vm(request.app[LAB], uuid) if secret else None
    if secret is None or vm is None:
        return None
    link = request.app[STORE].session_link(secret, uuid, vm_owner=vm.meta.owner)
    return None if link is None else (link, vm)
