"""My VMs: ``GET /`` (the signed-in student's VMs; an operator's: every VM), and the actions on a
VM: ``POST /vms/<uuid>/start``, ``/halt``, ``GET``/``POST /vms/<uuid>/reset`` (after a confirmation
page), and ``POST /vms/<uuid>/console``, which opens a console session as a share link does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from core.lifecycle import Action, ActionResult
from core.model import VM, VMState
from core.text import N_
from core.web.console.routes import open_console_session
from core.web.i18n import STATE_LABELS
from core.web.portal.context import Ctx, PageHandler, csrf, form_field, my_vm, posted, refuse_vm, vms_of

log = logging.getLogger(__name__)

ACTION_WAIT = 3.0  # how long a POST waits for its action before answering "under way"

_NAMES = {Action.START: N_("Start"), Action.HALT: N_("Halt"), Action.RESET: N_("Reset")}
_DONE = {Action.START: N_("%(name)s is started."), Action.HALT: N_("%(name)s is halted."),
         Action.RESET: N_("%(name)s is reset: its disk is as new.")}
_UNDER_WAY = {Action.START: N_("%(name)s is starting."),
              Action.HALT: N_("%(name)s is shutting down; it is powered off if it does not stop in time."),
              Action.RESET: N_("%(name)s is being reset.")}


async def my_vms(ctx: Ctx) -> web.StreamResponse:
    return ctx.render("vms.html", vms=vms_of(ctx), csrf=csrf(ctx), state_label=_state_label(ctx),
                      consoles=True, halting_left=_halting_left(ctx))


def _halting_left(ctx: Ctx) -> Callable[[VM], int | None]:
    """Seconds until a VM this server halts is powered off (None: no halt of this server's is
    under way; one from the CLI or the TUI shows only as libvirt's state)."""
    def left(vm: VM) -> int | None:
        if vm.halting_until is None or not vm.state.is_active:
            return None
        return max(0, round(vm.halting_until - ctx.portal.clock()))

    return left


def _state_label(ctx: Ctx) -> Callable[[VMState], str]:
    return lambda state: ctx._(STATE_LABELS.get(state, str(state)))


def lifecycle(action: Action) -> PageHandler:
    """The handler of ``action`` on the URL's VM: done within ACTION_WAIT, else told as under way."""
    async def handler(ctx: Ctx) -> web.StreamResponse:
        vm = my_vm(ctx)
        if vm is None:
            return refuse_vm(ctx, str(action))
        if action is Action.RESET and form_field(await posted(ctx.request), "confirm", 10) != "yes":
            return ctx.redirect(f"/vms/{vm.uuid}/reset")
        if action is Action.HALT and (left := _halting_left(ctx)(vm)) is not None:
            ctx.flash("info", ctx._("%(name)s is already halting: it is powered off in %(seconds)d s if it "
                                    "does not stop.", name=vm.name, seconds=left))
            return ctx.redirect("/")
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
    vm = my_vm(ctx)
    if vm is None:
        return refuse_vm(ctx, "reset")
    return ctx.render("reset.html", vm=vm, csrf=csrf(ctx))


async def open_console(ctx: Ctx) -> web.StreamResponse:
    """A console session on the VM through the share-link mechanism, as if a link had been opened."""
    assert ctx.session is not None
    assert ctx.secret is not None
    vm = my_vm(ctx)
    if vm is None:
        return refuse_vm(ctx, "console")
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
