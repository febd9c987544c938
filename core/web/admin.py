"""The operator's API, on a Unix socket only the service's user can reach (dir 0700, socket 0600).

- ``GET /viewers``: ``{"total": n, "by_vm": {uuid: n}, "by_link": {id: n},
  "endpoints": {uuid: {"transport": "unix"|"tcp", "users": n}}}``
- ``GET /links``: ``{"links": [link, ...]}``, the active ones (``Link.as_json``)
- ``POST /links`` ``{"vms": [uuid, ...], "ttl": "2h"}`` (ttl optional: VMM_SHARE_TTL):
  ``{"links": [{"vm", "name", "id", "url", "expires"}], "errors": [{"vm", "error"}]}``
- ``POST /revoke`` ``{"ids": [...], "tokens": [...], "vms": [uuid, ...]}``: ``{"results":
  [{"kind", "value", "found", "revoked": [{"id", "name"}, ...]}], "closed": n}`` (tokens are not
  echoed);
  the viewers of every revoked link are closed at once.

Errors answer ``{"error": message}`` with a 4xx status. Its client is :mod:`core.links.client`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from core.errors import VMManagerError
from core.links import parse_ttl, share_url
from core.text import format_time
from core.web.keys import CONFIG, ENDPOINTS, LAB, STORE, VIEWERS, Handler, find_vm

log = logging.getLogger(__name__)
MAIN = web.AppKey("main", web.Application)


def make_admin_app(main: web.Application) -> web.Application:
    admin = web.Application(middlewares=[_json_errors])
    admin[MAIN] = main
    admin.router.add_get("/viewers", viewers)
    admin.router.add_get("/links", list_links)
    admin.router.add_post("/links", create_links)
    admin.router.add_post("/revoke", revoke)
    return admin


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except VMManagerError as exc:
        return web.json_response({"error": exc.message}, status=400)
    except web.HTTPException as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise VMManagerError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise VMManagerError("the request body must be a JSON object")
    return body


def _strings(body: dict[str, Any], key: str) -> list[str]:
    values = body.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and _unicode(v) for v in values):
        raise VMManagerError(f"{key!r} must be a list of strings")
    return values


def _unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text: JSON's escapes can make lone surrogates, which no name,
    id or token holds (and SQLite cannot store)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def viewers(request: web.Request) -> web.Response:
    main = request.app[MAIN]
    counts = main[VIEWERS].counts()
    counts["endpoints"] = {uuid: {"transport": e.transport, "users": e.users}
                           for uuid, e in main[ENDPOINTS].running().items()}
    return web.json_response(counts)


async def list_links(request: web.Request) -> web.Response:
    return web.json_response({"links": [link.as_json() for link in request.app[MAIN][STORE].links()]})


async def create_links(request: web.Request) -> web.Response:
    main = request.app[MAIN]
    body = await _body(request)
    ttl = parse_ttl(str(body.get("ttl") or main[LAB].settings.consoles.share_ttl))
    made, errors = [], []
    for uuid in _strings(body, "vms"):
        vm = find_vm(main[LAB], uuid.lower())
        if vm is None:
            errors.append({"vm": uuid, "error": "no such VM"})
            continue
        link, token = main[STORE].create_link(vm.uuid, vm.name, ttl)
        made.append({"vm": vm.uuid, "name": vm.name, "id": link.id, "expires": format_time(link.expires),
                     "url": share_url(main[CONFIG].base_url, token)})
        log.info("share link %s made for %s (admin API)", link.id, vm.name)
    return web.json_response({"links": made, "errors": errors})


async def revoke(request: web.Request) -> web.Response:
    main = request.app[MAIN]
    body = await _body(request)
    done = main[STORE].revoke_many(ids=_strings(body, "ids"), tokens=_strings(body, "tokens"),
                                   vm_uuids=_strings(body, "vms"))
    results = []
    for result in done:
        results.append({"kind": result.kind, "value": "***" if result.kind == "token" else result.value,
                        "found": result.found, "revoked": [{"id": link_id, "name": name}
                                                           for link_id, name in result.revoked]})
        for link_id, name in result.revoked:
            log.info("share link %s of %s revoked (admin API)", link_id, name)
    gone = main[STORE].inactive(main[VIEWERS].link_ids())
    closed = await main[VIEWERS].close_links(gone) if gone else 0
    return web.json_response({"results": results, "closed": closed})


async def start(main: web.Application, path: Path) -> web.AppRunner:
    """Serve the admin API of ``main`` on ``path`` (the caller made sure no server answers there)."""
    _private_dir(path)
    runner = web.AppRunner(make_admin_app(main), access_log=None, handle_signals=False)
    await runner.setup()
    await web.UnixSite(runner, os.fspath(path)).start()
    os.chmod(path, 0o600)
    return runner


async def stop(runner: web.AppRunner, path: Path) -> None:
    await runner.cleanup()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _private_dir(path: Path) -> None:
    """The socket's folder, ours alone (0700), without a stale socket in it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)
