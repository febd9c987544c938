"""Signing in and out: ``GET /login`` (the form), ``POST /login``, ``POST /logout``.

A sign-in is slowed after failures (:meth:`core.auth.SessionStore.begin_attempt`, buckets as
:mod:`core.auth.sessions` explains), every refusal says the same thing, and a new session is made
at every sign-in; signing out deletes the session server-side and revokes the console links it
opened. A good sign-in gives the browser a device cookie (``vmm_device``, path ``/login``) for
that account and makes its address known to it: later attempts on that account from that browser
are held only by that browser's own failures, and from that address only by the account's
failures from there (:func:`core.auth.attempt_keys`).

The audit log keeps a refused sign-in under the account's own name when the typed name found one,
else ``?``; an attempt refused by the wait names nobody (it was not checked). Repeats of a refusal
are collapsed into one entry with a count (:mod:`core.records.audit`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping

from aiohttp import web

from core.auth import DEVICE_TTL, MAX_PASSWORD, DirectoryError, SigninRefused, attempt_keys, authenticate
from core.errors import ConfigError
from core.records import Actor
from core.web.portal.context import LOGIN_COOKIE, SESSION_COOKIE, Ctx, form_field, posted

log = logging.getLogger(__name__)

MAX_USERNAME = 100
DEVICE_COOKIE = "vmm_device"


async def login_page(request: web.Request) -> web.StreamResponse:
    ctx = await Ctx.load(request)
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
    ctx = await Ctx.load(request)
    portal = ctx.portal
    form = await posted(request)
    token = form_field(form, "csrf", 200)
    if not portal.sessions.check_login_token(request.cookies.get(LOGIN_COOKIE), token):
        log.warning("sign-in form without a valid CSRF token from %s", ctx.client)
        return ctx.error(403, ctx._("Form expired"),
                         ctx._("This form is out of date or did not come from this site: reload the page "
                               "and try again."))
    username = form_field(form, "username", MAX_USERNAME + 1).strip()
    password = form_field(form, "password", MAX_PASSWORD + 1)
    account = username.lower()
    if not username or not password or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        return _login_form(ctx, 401, ctx._("Enter your user name and your password."), username)
    # The attempt counts as a failure from now until its password is found good: parallel attempts
    # cannot all be heard before the first failure is known (one that ends any other way than by
    # an answer, the directory's silence aside, stays counted). Only VMM_SIGNIN_CONCURRENCY are
    # checked at once (each argon2 check holds its memory); those waiting their turn are not yet
    # attempts, so a class signing in together behind one address never fills its limit.
    async with portal.signins:
        devices = request.cookies.get(DEVICE_COOKIE)
        device = portal.sessions.device_of(devices, account)
        known = device is None and portal.sessions.known_address(account, ctx.client)
        attempt = portal.sessions.begin_attempt(attempt_keys(account, ctx.client, device, known))
        if attempt.wait > 0:
            seconds = int(attempt.wait) + 1
            portal.record(ctx.actor("?"), "signin", outcome="refused", detail="too many failed sign-ins",
                          collapse=True)
            return _login_form(ctx, 429, ctx._("Too many failed sign-ins. Wait %(seconds)d seconds, then try "
                                               "again.", seconds=seconds), username,
                               headers={"Retry-After": str(seconds)})
        try:
            identity = await asyncio.to_thread(authenticate, portal.settings, username, password)
        except SigninRefused as refused:
            portal.sessions.failed(attempt)
            portal.record(ctx.actor(refused.account or "?"), "signin", outcome="refused",
                          detail="wrong user name or password", collapse=True)
            log.info("sign-in refused from %s", ctx.client)
            return _login_form(ctx, 401, ctx._("Wrong user name or password."), username)
        except (DirectoryError, ConfigError) as exc:
            portal.sessions.dropped(attempt)
            log.error("sign-in unavailable: %s", exc.message)
            portal.record(ctx.actor("?"), "signin", outcome="failed", detail="directory unavailable",
                          collapse=True)
            return _login_form(ctx, 503, ctx._("Sign-in is unavailable just now (the directory does not "
                                               "answer). Try again later, or tell your teacher."), username)
        portal.sessions.succeeded(attempt, ctx.client, account, identity.username.lower())
    if ctx.secret:  # a new session on every sign-in: never keep one a browser had before
        portal.tokens.revoke(ids=portal.sessions.delete(ctx.secret))
    session, secret = portal.sessions.create(
        username=identity.username, role=str(identity.role), display_name=identity.display_name,
        email=identity.email, source=identity.source, ttl=portal.session_ttl, found_by=identity.found_by)
    portal.record(Actor(identity.username, "web", ctx.client), "signin", detail=identity.source)
    log.info("%s signed in (%s, %s) from %s", identity.username, identity.role, identity.source, ctx.client)
    response = ctx.redirect("/")
    response.set_cookie(SESSION_COOKIE, secret, path="/", httponly=True, samesite="Lax",
                        secure=ctx.secure, max_age=int(portal.session_ttl))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    if device is None:  # this browser now vouches for the account
        response.set_cookie(DEVICE_COOKIE, portal.sessions.device_cookie(account, devices), path="/login",
                            httponly=True, samesite="Strict", secure=ctx.secure, max_age=int(DEVICE_TTL))
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
