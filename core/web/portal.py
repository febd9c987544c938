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
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from babel.support import NullTranslations

from core.auth import signin
from core.auth.ldap import DirectoryError
from core.auth.sessions import Session, SessionStore
from core.errors import ConfigError
from core.lab import Lab
from core.lifecycle.actions import Action, ActionResult
from core.links.shares import TokenStore, parse_ttl
from core.model import VM, VMState
from core.names import recorded_username
from core.records import mail
from core.records.audit import Actor, Item
from core.records.requests import LIMITS, Kind, RequestRefused, RequestStore
from core.settings import Settings
from core.text import N_
from core.web import i18n, pages
from core.web.app import CLIENT, UUID, open_console_session, secure_cookies  # app imports us inside make_app
from core.web.i18n import STATE_LABELS

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SESSION_COOKIE = "vmm_session"
LOGIN_COOKIE = "vmm_login"  # the sign-in form's double-submit CSRF cookie
FORMS = web.ResponseKey("forms", bool)  # a portal page: its CSP lets forms post to this site
ACTION_WAIT = 3.0  # how long a POST waits for its action before answering "under way"
MAX_USERNAME = 100


KIND_LABELS = {Kind.VCPUS: N_("more vCPUs"), Kind.MEMORY: N_("more memory"), Kind.NEW_VM: N_("another VM")}
STATUS_LABELS = {"pending": N_("pending"), "approved": N_("approved"), "rejected": N_("rejected")}


@dataclass
class Portal:
    """What the portal's handlers share (``app[PORTAL]``)."""

    settings: Settings
    lab: Lab
    tokens: TokenStore
    sessions: SessionStore
    requests: RequestStore
    session_ttl: float
    clock: Callable[[], float]
    translations: dict[str, NullTranslations]
    templates: dict[str, jinja2.Environment]
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, work: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Background work the server keeps a reference to (and waits for at shutdown)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def record(self, actor: Actor, action: str, *, vm_name: str = "", vm_uuid: str = "", outcome: str = "ok",
               detail: str = "") -> None:
        """An entry in the audit log (the Lab's: a failure to write is logged, never fails the page)."""
        self.lab.record(actor, [Item(action, vm_name, vm_uuid, outcome, detail)])


PORTAL = web.AppKey("portal", Portal)


def setup(app: web.Application, settings: Settings, lab: Lab, tokens: TokenStore, *, secret_key: str,
          clock: Callable[[], float] = time.time) -> None:
    """Add the portal's routes and resources to the console server ``app``."""
    session_ttl = parse_ttl(settings.web.session_ttl)
    translations = i18n.translations()
    templates = {lang: _environment(t) for lang, t in translations.items()}
    sessions = SessionStore(settings.database_path, secret_key, clock)
    requests = RequestStore(settings.database_path, clock)
    app[PORTAL] = Portal(settings, lab, tokens, sessions, requests, session_ttl, clock, translations,
                         templates)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        purger = asyncio.create_task(_purge(app[PORTAL]), name="portal-purge")
        yield
        purger.cancel()
        portal = app[PORTAL]
        if portal.tasks:
            await asyncio.wait(set(portal.tasks), timeout=5.0)
        for task in set(portal.tasks):
            task.cancel()
        sessions.close()
        requests.close()

    app.cleanup_ctx.append(resources)
    vm = f"/vms/{{uuid:{UUID}}}"
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", _signed_in(logout))
    app.router.add_get("/", _signed_in(my_vms))
    app.router.add_post(f"{vm}/start", _signed_in(_lifecycle(Action.START)))
    app.router.add_post(f"{vm}/halt", _signed_in(_lifecycle(Action.HALT)))
    app.router.add_get(f"{vm}/reset", _signed_in(confirm_reset))
    app.router.add_post(f"{vm}/reset", _signed_in(_lifecycle(Action.RESET)))
    app.router.add_post(f"{vm}/console", _signed_in(open_console))
    app.router.add_get("/requests", _signed_in(requests_page))
    app.router.add_post("/requests", _signed_in(file_request))


def _environment(translations: NullTranslations) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.i18n"],
                             trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


async def _purge(portal: Portal) -> None:
    while True:
        await asyncio.sleep(3600)
        try:
            portal.sessions.purge()
        except Exception:
            log.exception("purging sign-in sessions failed")


# -- the request's context: language, session, rendering --
@dataclass
class Ctx:
    """One request as the portal sees it."""

    request: web.Request
    portal: Portal
    lang: str
    session: Session | None = None
    secret: str | None = None

    @classmethod
    def of(cls, request: web.Request) -> Ctx:
        portal = request.app[PORTAL]
        lang = i18n.of_request(request)
        secret = request.cookies.get(SESSION_COOKIE)
        session = portal.sessions.get(secret)
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
        return self.session is not None and self.session.role == signin.Role.OPERATOR

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


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


def _signed_in(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Only with a live session (else 303 to /login); a POST only with the session's CSRF token."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        ctx = Ctx.of(request)
        if ctx.session is None:
            response = ctx.redirect("/login")
            if request.cookies.get(SESSION_COOKIE):
                response.del_cookie(SESSION_COOKIE, path="/")
            return response
        if request.method == "POST":
            form = await request.post()
            if not ctx.portal.sessions.check_csrf(ctx.session, _field(form, "csrf", 200)):
                log.warning("portal POST %s without a valid CSRF token from %s", request.path, ctx.client)
                ctx.portal.record(ctx.actor(), "csrf", outcome="refused", detail=request.path[:100])
                return ctx.error(403, ctx._("Form expired"),
                                 ctx._("This form is out of date or did not come from this site: "
                                       "reload the page and try again."))
        return await handler(ctx)

    return wrapped


def _field(form: Mapping[str, Any], name: str, limit: int) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


def _vms_of(ctx: Ctx) -> list[VM]:
    assert ctx.session is not None
    vms = ctx.portal.lab.vms()
    if ctx.operator:
        return sorted(vms, key=lambda vm: (vm.meta.owner or "\uffff", vm.name))
    return sorted((vm for vm in vms if vm.meta.owner == ctx.session.username), key=lambda vm: vm.name)


def _my_vm(ctx: Ctx) -> VM | None:
    """The VM of the URL when this user may touch it: theirs, or any for an operator."""
    uuid = ctx.request.match_info["uuid"].lower()
    return next((vm for vm in _vms_of(ctx) if vm.uuid == uuid), None)


def _refuse_vm(ctx: Ctx, action: str) -> web.Response:
    """Someone else's VM, or none: the same 404 either way (and a note in the audit log)."""
    uuid = ctx.request.match_info["uuid"].lower()
    ctx.portal.record(ctx.actor(), action, vm_uuid=uuid, outcome="refused", detail="not this user's VM")
    log.info("portal: %s of VM %s refused to %s", action, uuid, ctx.session.username if ctx.session else "-")
    return ctx.not_found()


# -- sign-in --
async def login_page(request: web.Request) -> web.StreamResponse:
    ctx = Ctx.of(request)
    if ctx.session is not None:
        return ctx.redirect("/")
    return _login_form(ctx)


def _login_form(ctx: Ctx, status: int = 200, error: str = "", username: str = "",
                headers: Mapping[str, str] | None = None) -> web.Response:
    cookie = ctx.request.cookies.get(LOGIN_COOKIE, "")
    fresh = not (0 < len(cookie) <= 100)
    if fresh:
        cookie = secrets.token_urlsafe(32)
    response = ctx.render("login.html", status, headers, csrf=ctx.portal.sessions.login_token(cookie),
                          error=error, username=username)
    if fresh:
        response.set_cookie(LOGIN_COOKIE, cookie, path="/login", httponly=True, samesite="Lax",
                            secure=ctx.secure)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    ctx = Ctx.of(request)
    portal = ctx.portal
    form = await request.post()
    if not portal.sessions.check_login_token(request.cookies.get(LOGIN_COOKIE), _field(form, "csrf", 200)):
        log.warning("sign-in form without a valid CSRF token from %s", ctx.client)
        return ctx.error(403, ctx._("Form expired"),
                         ctx._("This form is out of date or did not come from this site: reload the page "
                               "and try again."))
    username = _field(form, "username", MAX_USERNAME + 1).strip()
    password = _field(form, "password", signin.MAX_PASSWORD + 1)
    account = username.lower()
    if not username or not password or len(username) > MAX_USERNAME or len(password) > signin.MAX_PASSWORD:
        return _login_form(ctx, 401, ctx._("Enter your user name and your password."), username)
    # The attempt counts as a failure from now until its password is found good: parallel attempts
    # cannot all be heard before the first failure is known (one that ends any other way than by
    # an answer, the directory's silence aside, stays counted).
    attempt = portal.sessions.begin_attempt([("account", account), ("address", ctx.client)])
    recorded_as = recorded_username(account)  # who a failed sign-in is recorded for (never a password)
    if attempt.wait > 0:
        seconds = int(attempt.wait) + 1
        portal.record(ctx.actor(recorded_as), "signin", outcome="refused",
                      detail="too many failed sign-ins")
        return _login_form(ctx, 429, ctx._("Too many failed sign-ins. Wait %(seconds)d seconds, then try "
                                           "again.", seconds=seconds), username,
                           headers={"Retry-After": str(seconds)})
    try:
        identity = await asyncio.to_thread(signin.authenticate, portal.settings, username, password)
    except signin.SigninRefused:
        portal.sessions.failed(attempt)
        portal.record(ctx.actor(recorded_as), "signin", outcome="refused",
                      detail="wrong user name or password")
        log.info("sign-in refused from %s", ctx.client)
        return _login_form(ctx, 401, ctx._("Wrong user name or password."), username)
    except (DirectoryError, ConfigError) as exc:
        portal.sessions.dropped(attempt)
        log.error("sign-in unavailable: %s", exc.message)
        portal.record(ctx.actor(recorded_as), "signin", outcome="failed",
                      detail="directory unavailable")
        return _login_form(ctx, 503, ctx._("Sign-in is unavailable just now (the directory does not "
                                           "answer). Try again later, or tell your teacher."), username)
    portal.sessions.succeeded(attempt, account, identity.username.lower())
    if ctx.secret:  # a new session on every sign-in: never keep one a browser had before
        portal.tokens.revoke(ids=portal.sessions.delete(ctx.secret))
    session, secret = portal.sessions.create(
        username=identity.username, role=str(identity.role), display_name=identity.display_name,
        email=identity.email, source=identity.source, ttl=portal.session_ttl)
    portal.record(Actor(identity.username, "web", ctx.client), "signin", detail=identity.source)
    log.info("%s signed in (%s, %s) from %s", identity.username, identity.role, identity.source, ctx.client)
    response = ctx.redirect("/")
    response.set_cookie(SESSION_COOKIE, secret, path="/", httponly=True, samesite="Lax",
                        secure=ctx.secure, max_age=int(portal.session_ttl))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(ctx: Ctx) -> web.StreamResponse:
    assert ctx.session is not None
    links = ctx.portal.sessions.delete(ctx.secret)
    if links:
        ctx.portal.tokens.revoke(ids=links)  # its consoles close with it
    ctx.portal.record(ctx.actor(), "signout")
    log.info("%s signed out from %s", ctx.session.username, ctx.client)
    ctx.secret = None
    response = ctx.redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- My VMs --
async def my_vms(ctx: Ctx) -> web.StreamResponse:
    return ctx.render("vms.html", vms=_vms_of(ctx), csrf=_csrf(ctx), state_label=_state_label(ctx),
                      consoles=True)


def _csrf(ctx: Ctx) -> str:
    assert ctx.session is not None
    return ctx.session.csrf


def _state_label(ctx: Ctx) -> Callable[[VMState], str]:
    return lambda state: ctx._(STATE_LABELS.get(state, str(state)))


def _lifecycle(action: Action) -> Handler:
    async def handler(ctx: Ctx) -> web.StreamResponse:
        vm = _my_vm(ctx)
        if vm is None:
            return _refuse_vm(ctx, str(action))
        if action is Action.RESET and _field(await ctx.request.post(), "confirm", 10) != "yes":
            return ctx.redirect(f"/vms/{vm.uuid}/reset")
        work = ctx.portal.spawn(ctx.portal.lab.act(action, [vm], actor=ctx.actor()), f"portal-{action}")
        done, _ = await asyncio.wait({work}, timeout=ACTION_WAIT)
        if not done:  # a halt waits for the guest: tell the student and let it run on
            ctx.flash("info", ctx._(_UNDER_WAY[action], name=vm.name))
            work.add_done_callback(_log_late(vm, action))
            return ctx.redirect("/")
        try:
            results: list[ActionResult] = work.result()
        except Exception as exc:
            log.exception("portal %s of %s failed", action, vm.name)
            return _failed(ctx, action, vm, str(exc))
        result = results[0]
        if result.ok:
            ctx.flash("ok", ctx._(_DONE[action], name=vm.name))
            return ctx.redirect("/")
        return _failed(ctx, action, vm, result.message)

    return handler


def _failed(ctx: Ctx, action: Action, vm: VM, reason: str) -> web.Response:
    ctx.flash("error", ctx._("%(action)s of %(name)s failed: %(reason)s", action=ctx._(_NAMES[action]),
                             name=vm.name, reason=reason))
    return ctx.redirect("/")


_NAMES = {Action.START: N_("Start"), Action.HALT: N_("Halt"), Action.RESET: N_("Reset")}
_DONE = {Action.START: N_("%(name)s is started."), Action.HALT: N_("%(name)s is halted."),
         Action.RESET: N_("%(name)s is reset: its disk is as new.")}
_UNDER_WAY = {Action.START: N_("%(name)s is starting."),
              Action.HALT: N_("%(name)s is shutting down; it is powered off if it does not stop in time."),
              Action.RESET: N_("%(name)s is being reset.")}


def _log_late(vm: VM, action: Action) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("portal %s of %s failed: %s", action, vm.name, exc)
        else:
            for result in task.result():
                log.info("portal %s of %s: %s", action, vm.name, "done" if result.ok else result.message)

    return done


async def confirm_reset(ctx: Ctx) -> web.StreamResponse:
    vm = _my_vm(ctx)
    if vm is None:
        return _refuse_vm(ctx, "reset")
    return ctx.render("reset.html", vm=vm, csrf=_csrf(ctx))


async def open_console(ctx: Ctx) -> web.StreamResponse:
    """A console session on the VM through the share-link mechanism, as if a link had been opened."""
    assert ctx.session is not None
    assert ctx.secret is not None
    vm = _my_vm(ctx)
    if vm is None:
        return _refuse_vm(ctx, "console")
    if not vm.state.is_active:
        ctx.flash("error", ctx._("%(name)s is not running: start it first.", name=vm.name))
        return ctx.redirect("/")
    portal = ctx.portal
    ttl = ctx.session.expires - portal.clock()  # the console lasts as long as the sign-in
    # A student's link names them: it opens only while the VM is theirs (an operator's: any VM).
    owner = None if ctx.operator else ctx.session.username
    link, _token = portal.tokens.create_link(vm.uuid, vm.name, max(ttl, 1.0), owner=owner)
    portal.sessions.add_link(ctx.secret, link.id)
    portal.record(ctx.actor(), "console", vm_name=vm.name, vm_uuid=vm.uuid, detail=f"link {link.id}")
    log.info("console of %s opened from the portal by %s (link %s)", vm.name, ctx.session.username, link.id)
    response = ctx.redirect(f"/console/{vm.uuid}")
    open_console_session(response, portal.tokens, link, secure=ctx.secure)
    return response


# -- requests --
async def requests_page(ctx: Ctx) -> web.StreamResponse:
    assert ctx.session is not None
    portal = ctx.portal
    mine = None if ctx.operator else ctx.session.username
    own = [vm for vm in _vms_of(ctx) if vm.meta.owner == ctx.session.username]
    return ctx.render("requests.html", vms=own,
                      requests=portal.requests.list(username=mine), csrf=_csrf(ctx),
                      vcpu_limits=LIMITS[Kind.VCPUS], memory_limits=LIMITS[Kind.MEMORY],
                      kinds=list(Kind), kind_label=lambda k: ctx._(KIND_LABELS[Kind(k)]),
                      status_label=lambda s: ctx._(STATUS_LABELS.get(str(s), str(s))),
                      when=_when, form={})


def _when(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


async def file_request(ctx: Ctx) -> web.StreamResponse:
    assert ctx.session is not None
    portal = ctx.portal
    form = await ctx.request.post()
    kind_text = _field(form, "kind", 20)
    try:
        kind = Kind(kind_text)
    except ValueError:
        ctx.flash("error", ctx._("Choose what you ask for."))
        return ctx.redirect("/requests")
    vm: VM | None = None
    amount: int | None = None
    if kind is not Kind.NEW_VM:
        uuid = _field(form, "vm", 40).lower()
        vm = next((v for v in _vms_of(ctx) if v.uuid == uuid and v.meta.owner == ctx.session.username), None)
        if vm is None:  # not one of this user's VMs (an operator asks for their own ones too)
            ctx.flash("error", ctx._("Choose one of your VMs."))
            return ctx.redirect("/requests")
        try:
            amount = int(_field(form, "amount", 10))
        except ValueError:
            amount = None  # refused below, with the range it must be in
    try:
        made = portal.requests.create(ctx.session.username, kind, reason=_field(form, "reason", 2000),
                                      vm_uuid=vm.uuid if vm else None, vm_name=vm.name if vm else None,
                                      amount=amount, email=ctx.session.email)
    except RequestRefused as exc:  # core.records.requests' rules, said in the page's language
        ctx.flash("error", ctx._("The request was not filed: %(reason)s",
                                 reason=ctx._(exc.template, **exc.values)))
        return ctx.redirect("/requests")
    portal.record(ctx.actor(), "request", vm_name=vm.name if vm else "", vm_uuid=vm.uuid if vm else "",
                        detail=f"#{made.id} {made.summary()}")
    portal.spawn(mail.notify_new_request(portal.settings, made), "portal-mail")
    ctx.flash("ok", ctx._("Request #%(id)d is filed: your teacher will answer it here.", id=made.id))
    return ctx.redirect("/requests")
