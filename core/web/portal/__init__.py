"""The student portal: sign-in, "My VMs", resource requests; server-rendered, in French and English.

URL map (``<uuid>``: a VM's UUID; every page also takes ``?lang=en|fr``, the language switch):

- ``GET /login`` the sign-in form; ``POST /login`` signs in (303 to ``/``), or 401/429/503 with
  the form again; ``POST /logout`` signs out (the session is deleted server-side).
- ``GET /`` "My VMs": the signed-in student's VMs (an operator's: every VM, with its owner).
- ``POST /vms/<uuid>/start``, ``POST /vms/<uuid>/halt``: the action, then 303 to ``/`` with a
  message; ``GET /vms/<uuid>/reset`` asks for confirmation, ``POST /vms/<uuid>/reset`` resets.
- ``POST /vms/<uuid>/console``: opens a console session on the VM (the console cookie, as a share
  link sets it; no token in any URL) and answers 303 to ``/console/<uuid>``.
- ``GET /requests`` the request form and the requests (an operator's: every request);
  ``POST /requests`` files one.

Without a session every page answers 303 to ``/login``. Every POST carries the session's CSRF
token (the sign-in form: a signed double-submit cookie), else 403. A VM that is not the student's
answers 404, exactly as a missing one.

:func:`setup` adds the routes and resources; :mod:`.context` holds what every page uses (the
:class:`Portal` the handlers share, the request's :class:`Ctx`), and the pages are by subject:
:mod:`.signin`, :mod:`.vms`, :mod:`.requests`. The Jinja templates are in ``core/web/templates``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import jinja2
from aiohttp import web
from babel.support import NullTranslations
from markupsafe import Markup

from core.auth import Accounts, SessionStore
from core.lab import Lab
from core.lifecycle import Action
from core.links import TokenStore, parse_ttl
from core.records import RequestStore
from core.settings import Settings
from core.text import printable
from core.web import i18n
from core.web.keys import UUID, VIEWERS
from core.web.portal import requests, signin, vms
from core.web.portal.context import LOGIN_COOKIE, PORTAL, SESSION_COOKIE, Ctx, Portal, signed_in

__all__ = ["CONSOLE_CHECK", "LOGIN_COOKIE", "PORTAL", "SESSION_COOKIE", "TEMPLATE_DIR", "Ctx", "Portal",
           "setup"]

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
CONSOLE_CHECK = 5.0  # seconds between two checks of the sessions behind open consoles


def setup(app: web.Application, settings: Settings, lab: Lab, tokens: TokenStore, *, secret_key: str,
          clock: Callable[[], float] = time.time) -> None:
    """Add the portal's routes and resources to the console server ``app``."""
    session_ttl = parse_ttl(settings.web.session_ttl)
    translations = i18n.translations()
    templates = {lang: _environment(t) for lang, t in translations.items()}
    sessions = SessionStore(settings.database_path, secret_key, clock)
    request_store = RequestStore(settings.database_path, clock)
    accounts = Accounts(settings.database_path)
    app[PORTAL] = Portal(settings, lab, tokens, sessions, request_store, accounts, session_ttl, clock,
                         translations, templates, asyncio.Semaphore(max(1, settings.web.signin_concurrency)))

    async def resources(app: web.Application) -> AsyncIterator[None]:
        purger = asyncio.create_task(_purge(app[PORTAL]), name="portal-purge")
        watcher = asyncio.create_task(_watch_consoles(app), name="portal-consoles")
        yield
        purger.cancel()
        watcher.cancel()
        portal = app[PORTAL]
        if portal.tasks:
            await asyncio.wait(set(portal.tasks), timeout=5.0)
        for task in set(portal.tasks):
            task.cancel()
        sessions.close()
        request_store.close()
        accounts.close()

    app.cleanup_ctx.append(resources)
    vm = f"/vms/{{uuid:{UUID}}}"
    app.router.add_get("/login", signin.login_page)
    app.router.add_post("/login", signin.login)
    app.router.add_post("/logout", signed_in(signin.logout))
    app.router.add_get("/", signed_in(vms.my_vms))
    app.router.add_post(f"{vm}/start", signed_in(vms.lifecycle(Action.START)))
    app.router.add_post(f"{vm}/halt", signed_in(vms.lifecycle(Action.HALT)))
    app.router.add_get(f"{vm}/reset", signed_in(vms.confirm_reset))
    app.router.add_post(f"{vm}/reset", signed_in(vms.lifecycle(Action.RESET)))
    app.router.add_post(f"{vm}/console", signed_in(vms.open_console))
    app.router.add_get("/requests", signed_in(requests.requests_page))
    app.router.add_post("/requests", signed_in(requests.file_request))


def _environment(translations: NullTranslations) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.i18n"],
                             trim_blocks=True, lstrip_blocks=True, finalize=_shown)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


async def _watch_consoles(app: web.Application) -> None:
    """A console open from the portal uses its session even when no page is loaded: every
    CONSOLE_CHECK seconds the sessions behind open consoles must still stand (as at every page),
    else they end and their consoles close."""
    portal = app[PORTAL]
    while True:
        await asyncio.sleep(CONSOLE_CHECK)
        try:
            for handle, session in portal.sessions.opened(app[VIEWERS].link_ids()):
                why = await portal.why_ended(session, handle)
                if why is not None:
                    await portal.end_session(app, handle, session, why, "-")
        except Exception:
            log.exception("checking the sessions behind open consoles failed")


def _shown(value: object) -> object:
    """Every ``{{ ... }}`` through the one rule of :func:`core.text.printable`: autoescape makes a
    name's markup text, this shows its bidi overrides and controls escaped (``rtl`` U+202E
    ``gpj.exe`` would read ``rtlexe.jpg``). Escaped markup stays markup: the escapes add no ``<&"'``."""
    if isinstance(value, Markup):
        return Markup(printable(str(value), multiline=True))
    if isinstance(value, str):
        return printable(value, multiline=True)
    return value


async def _purge(portal: Portal) -> None:
    while True:
        await asyncio.sleep(3600)
        try:
            portal.sessions.purge()
        except Exception:
            log.exception("purging sign-in sessions failed")
