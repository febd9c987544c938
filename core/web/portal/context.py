"""What every page of the portal uses: the :class:`Portal` its handlers share (``app[PORTAL]``),
the request as the portal sees it (:class:`Ctx`: language, session, rendering), the signed-in
decorator with its CSRF check, and which VMs a user may touch.

A session is resolved at every request (:meth:`Ctx.load`) and must still stand
(:mod:`core.auth.standing`): one whose account changed ends there, with the consoles it opened.

:class:`Portal` and its key live here rather than in the package's ``__init__``: every page
reads it, and ``__init__`` imports the pages to add their routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web
from babel.support import NullTranslations

from core.auth import Accounts, DirectoryError, Role, Session, SessionStore, ldap_due, ldap_ended, local_ended
from core.errors import ConfigError
from core.lab import Lab
from core.links import TokenStore
from core.model import VM
from core.records import Actor, Item, RequestStore
from core.settings import Settings
from core.text import count
from core.web import i18n, pages
from core.web.keys import CLIENT, FORMS, VIEWERS, Handler, secure_cookies

log = logging.getLogger(__name__)

SESSION_COOKIE = "vmm_session"
LOGIN_COOKIE = "vmm_login"  # the sign-in form's double-submit CSRF cookie


@dataclass
class Portal:
    """What the portal's handlers share (``app[PORTAL]``)."""

    settings: Settings
    lab: Lab
    tokens: TokenStore
    sessions: SessionStore
    requests: RequestStore
    accounts: Accounts
    session_ttl: float
    clock: Callable[[], float]
    translations: dict[str, NullTranslations]
    templates: dict[str, jinja2.Environment]
    signins: asyncio.Semaphore  # VMM_SIGNIN_CONCURRENCY: the password checks that run at once
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, work: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Background work the server keeps a reference to (and waits for at shutdown)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def record(self, actor: Actor, action: str, *, vm_name: str = "", vm_uuid: str = "", outcome: str = "ok",
               detail: str = "", collapse: bool = False) -> None:
        """An entry in the audit log (the Lab's: a failure to write is logged, never fails the page);
        ``collapse``: a repeat joins the same entry (for what is caused without signing in)."""
        self.lab.record(actor, [Item(action, vm_name, vm_uuid, outcome, detail, collapse)])

    async def why_ended(self, session: Session, handle: bytes) -> str | None:
        """Why ``session`` no longer stands (its account changed), or None. An LDAP user is looked
        up again once VMM_LDAP_RECHECK_INTERVAL has passed; a directory that does not answer then
        ends nothing (it is asked again after another interval)."""
        if session.source == "local":
            return local_ended(self.accounts, session)
        if session.source != "ldap" or not ldap_due(self.settings, session, self.clock()):
            return None
        self.sessions.mark_checked(handle)  # first: parallel requests of the session ask once
        try:
            return await asyncio.to_thread(ldap_ended, self.settings, session)
        except (DirectoryError, ConfigError) as exc:
            log.warning("%s's role could not be read again (%s): the session goes on", session.username,
                        exc.message)
            return None

    async def end_session(self, app: web.Application, handle: bytes, session: Session, why: str,
                          client: str) -> None:
        """End a session that no longer stands: it is deleted, and the console links it opened
        are revoked and their viewers closed at once."""
        links = self.sessions.end(handle)
        closed = 0
        if links:
            self.tokens.revoke(ids=links)
            closed = await app[VIEWERS].close_links(set(links), "the sign-in ended")
        self.record(Actor(session.username, "web", client), "session-end", detail=why)
        log.info("%s's sign-in session ended (%s); %s closed", session.username, why,
                 count(closed, "console"))


PORTAL = web.AppKey("portal", Portal)


@dataclass
class Ctx:
    """One request as the portal sees it."""

    request: web.Request
    portal: Portal
    lang: str
    session: Session | None = None
    secret: str | None = None

    @classmethod
    async def load(cls, request: web.Request) -> Ctx:
        """The request's context: its language, and its session when it has one that still stands
        (one that does not is ended here)."""
        portal = request.app[PORTAL]
        lang = i18n.of_request(request)
        secret = request.cookies.get(SESSION_COOKIE)
        session = portal.sessions.get(secret)
        if session is not None and secret is not None:
            handle = portal.sessions.handle(secret)
            why = await portal.why_ended(session, handle)
            if why is not None:
                await portal.end_session(request.app, handle, session, why, request[CLIENT])
                session = None
        return cls(request, portal, lang, session, secret if session is not None else None)

    def _(self, text: str, **values: object) -> str:
        translated = self.portal.translations[self.lang].gettext(text)
        return translated % values if values else translated

    @property
    def client(self) -> str:
        return self.request[CLIENT]

    @property
    def secure(self) -> bool:
        """Whether cookies set now get Secure (https, directly or as a trusted proxy says)."""
        return secure_cookies(self.request)

    @property
    def operator(self) -> bool:
        return self.session is not None and self.session.role == Role.OPERATOR

    def actor(self, user: str | None = None) -> Actor:
        return Actor(user if user is not None else self.session.username if self.session else "-", "web",
                     self.client)

    def flash(self, kind: str, text: str) -> None:
        if self.secret is not None:
            self.portal.sessions.push_flash(self.secret, kind, text)

    def render(self, template: str, status: int = 200, headers: Mapping[str, str] | None = None,
               **values: Any) -> web.Response:
        flashes = self.portal.sessions.pop_flash(self.secret) if self.secret else []
        page = self.portal.templates[self.lang].get_template(template)
        text = page.render(lang=self.lang, languages=i18n.LANGUAGE_NAMES, session=self.session,
                           operator=self.operator, flashes=flashes, path=self.request.path, **values)
        response = web.Response(status=status, text=text, content_type="text/html",
                                headers={**pages.NO_STORE, **(headers or {})})
        self.finish(response)
        return response

    def redirect(self, where: str) -> web.Response:
        response = web.Response(status=303, headers={"Location": where, **pages.NO_STORE})
        self.finish(response)
        return response

    def error(self, status: int, title: str, message: str) -> web.Response:
        return self.render("error.html", status, title=title, message=message)

    def not_found(self) -> web.Response:
        return self.error(404, self._("Not found"), self._("There is nothing at this address."))

    def finish(self, response: web.StreamResponse) -> None:
        """Mark a portal page, and keep the language the switch chose."""
        response[FORMS] = True
        chosen = self.request.query.get("lang")
        if chosen in i18n.LANGUAGES and chosen != self.request.cookies.get(i18n.COOKIE):
            response.set_cookie(i18n.COOKIE, chosen, path="/", max_age=365 * 86400, httponly=True,
                                samesite="Lax", secure=self.secure)


PageHandler = Callable[[Ctx], Awaitable[web.StreamResponse]]


def signed_in(handler: PageHandler) -> Handler:
    """Only with a live session (else 303 to /login); a POST only with the session's CSRF token."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        ctx = await Ctx.load(request)
        if ctx.session is None:
            response = ctx.redirect("/login")
            if request.cookies.get(SESSION_COOKIE):
                response.del_cookie(SESSION_COOKIE, path="/")
            return response
        if request.method == "POST":
            form = await posted(request)
            if not ctx.portal.sessions.check_csrf(ctx.session, form_field(form, "csrf", 200)):
                log.warning("portal POST %s without a valid CSRF token from %s", request.path, ctx.client)
                ctx.portal.record(ctx.actor(), "csrf", outcome="refused", detail=request.path[:100],
                                  collapse=True)
                return ctx.error(403, ctx._("Form expired"),
                                 ctx._("This form is out of date or did not come from this site: "
                                       "reload the page and try again."))
        return await handler(ctx)

    return wrapped


async def posted(request: web.Request) -> Mapping[str, Any]:
    """The posted form; a body that cannot be read as one (bytes that are not in its charset, an
    unknown charset, a broken multipart) is an empty form: without its CSRF token, it is refused as
    any form without one, and nothing is done."""
    try:
        return await request.post()
    except (UnicodeDecodeError, LookupError, ValueError) as exc:
        log.info("unreadable form posted to %s from %s: %s", request.path, request[CLIENT],
                 type(exc).__name__)
        return {}


def form_field(form: Mapping[str, Any], name: str, limit: int) -> str:
    """A text field of a posted form, cut at ``limit`` characters ("" when missing or a file)."""
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


def csrf(ctx: Ctx) -> str:
    """The session's CSRF token, for the page's forms."""
    assert ctx.session is not None
    return ctx.session.csrf


def vms_of(ctx: Ctx) -> list[VM]:
    """The VMs the signed-in user sees: theirs (an operator's: every VM, by owner)."""
    assert ctx.session is not None
    vms = ctx.portal.lab.vms()
    if ctx.operator:
        return sorted(vms, key=lambda vm: (vm.meta.owner or "\uffff", vm.name))
    return sorted((vm for vm in vms if vm.meta.owner == ctx.session.username), key=lambda vm: vm.name)


def my_vm(ctx: Ctx) -> VM | None:
    """The VM of the URL when this user may touch it: theirs, or any for an operator."""
    uuid = ctx.request.match_info["uuid"].lower()
    return next((vm for vm in vms_of(ctx) if vm.uuid == uuid), None)


def refuse_vm(ctx: Ctx, action: str) -> web.Response:
    """Someone else's VM, or none: the same 404 either way (and a note in the audit log)."""
    uuid = ctx.request.match_info["uuid"].lower()
    ctx.portal.record(ctx.actor(), action, vm_uuid=uuid, outcome="refused", detail="not this user's VM",
                      collapse=True)
    log.info("portal: %s of VM %s refused to %s", action, uuid, ctx.session.username if ctx.session else "-")
    return ctx.not_found()
