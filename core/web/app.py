"""The aiohttp application, assembled: the console's URLs (:mod:`core.web.console.routes`, which
documents them), the student portal (:mod:`core.web.portal`, likewise), the middlewares, the
background watchers of open consoles, the audit log's purge (VMM_AUDIT_DAYS, at start and
hourly), and the static files:

- ``GET /static/<name>``: the console page's script and style and the portal's style, from
  ``noVNC/`` (:data:`OUR_FILES`); ``GET /novnc/...``: the JavaScript modules of noVNC as installed
  in ``noVNC/vendor/`` (:data:`NOVNC_MODULES`). Nothing else there is served: not noVNC's own
  pages, app or licence file, nor our README.

:func:`serve` runs it, and the admin API (:mod:`core.web.admin`) on its Unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath

from aiohttp import web

from core.errors import ConfigError
from core.lab import Lab
from core.links import DEFAULT_HOST, DEFAULT_PORT, TokenStore, base_url, origin_of, server_answers
from core.settings import PROJECT_DIR, Settings
from core.text import CONTROL
from core.web import admin, pages, portal
from core.web.console import routes, watch
from core.web.console.endpoints import Endpoints
from core.web.console.proxy import ViewerLimits, Viewers
from core.web.keys import CONFIG, ENDPOINTS, LAB, STORE, UUID, VIEWERS, Handler, WebConfig
from core.web.middlewares import (
    forwarded_for,
    own_error_pages,
    parse_proxies,
    runner_options,
    security_headers,
)

NOVNC_DIR = PROJECT_DIR / "noVNC"
OUR_FILES = frozenset({"console.js", "console.css", "portal.css"})
"""What ``/static/`` serves from ``noVNC/``: what the console page and the portal's pages load."""
NOVNC_MODULES = ("core", "vendor")
"""The folders of ``noVNC/vendor/`` whose ``.js`` files ``/novnc/`` serves: noVNC's modules and the
zlib (pako) they import, what the console page loads, whichever of them a noVNC version has."""
PURGE_INTERVAL = 3600.0

log = logging.getLogger(__name__)


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
    consoles = settings.consoles
    app[VIEWERS] = Viewers(ViewerLimits(consoles.viewers_per_link, consoles.viewers_per_vm))
    app[ENDPOINTS] = Endpoints(settings, lab, transport=transport)
    app[STORE] = TokenStore(settings.database_path, secret_key, clock)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        watchers = [asyncio.create_task(watch.expire_viewers(app), name="console-expiry"),
                    asyncio.create_task(_purge_audit(lab), name="audit-purge")]
        unsubscribe = lab.subscribe(watch.on_inventory(app, watchers))
        yield
        unsubscribe()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await app[ENDPOINTS].stop_all()
        app[STORE].close()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(watch.close_consoles)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/c/{token}", routes.open_link, allow_head=False)
    app.router.add_get(f"/console/{{uuid:{UUID}}}", routes.console_page)
    app.router.add_get(f"/console/{{uuid:{UUID}}}/ws", routes.console_socket, allow_head=False)
    app.router.add_post(f"/console/{{uuid:{UUID}}}/status", routes.console_status)
    app.router.add_get("/novnc/{path:.+}", _files(lambda: config.novnc_dir / "vendor", _novnc_module))
    app.router.add_get("/static/{path:.+}", _files(lambda: config.novnc_dir, _our_file))
    portal.setup(app, settings, lab, app[STORE], secret_key=secret_key, clock=clock)
    return app


async def _purge_audit(lab: Lab) -> None:
    """Keep the audit log to VMM_AUDIT_DAYS: purge at start, then every PURGE_INTERVAL."""
    while True:
        try:
            gone = lab.purge_audit()
            if gone:
                log.info("audit log: %d entries older than %d days purged", gone,
                         lab.settings.records.audit_days)
        except (sqlite3.Error, OSError):
            log.exception("purging the audit log failed")
        await asyncio.sleep(PURGE_INTERVAL)


def _novnc_module(parts: tuple[str, ...]) -> bool:
    return len(parts) > 1 and parts[0] in NOVNC_MODULES and parts[-1].endswith(".js")


def _our_file(parts: tuple[str, ...]) -> bool:
    return len(parts) == 1 and parts[0] in OUR_FILES


def _files(root: Callable[[], Path], served: Callable[[tuple[str, ...]], bool]) -> Handler:
    """Files under ``root()`` whose path parts ``served`` allows: no dot files, no control
    characters (a NUL would reach the file system), nothing outside it."""
    async def handler(request: web.Request) -> web.StreamResponse:
        parts = PurePosixPath(request.match_info["path"]).parts
        if not parts or not served(parts) or any(p.startswith(".") or "\\" in p or CONTROL.search(p)
                                                 for p in parts):
            return pages.not_found(request)
        base = root().resolve()
        path = base.joinpath(*parts).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return pages.not_found(request)
        return web.FileResponse(path)

    return handler


async def serve(settings: Settings, lab: Lab, *, secret_key: str, host: str, port: int,
                stop: asyncio.Event, started: Callable[[str], None] | None = None) -> None:
    """Run the server (and the admin API on its Unix socket) until ``stop`` is set."""
    if await server_answers(settings):
        raise ConfigError(f"a server already runs (its admin API answers on {settings.admin_socket})")
    app = make_app(settings, lab, secret_key=secret_key, host=host, port=port)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, **runner_options(settings))  # type: ignore[arg-type]
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
