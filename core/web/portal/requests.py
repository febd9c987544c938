"""Requests: ``GET /requests`` (the form, and my requests with their answers; an operator's:
every request) and ``POST /requests`` (more vCPUs or memory for one of my VMs, or another VM,
with a reason; the rules are :mod:`core.records`', said in the page's language).
"""

from __future__ import annotations

import time

from aiohttp import web

from core.model import VM
from core.records import LIMITS, Kind, RequestRefused, notify_new_request
from core.text import N_
from core.web.portal.context import Ctx, csrf, form_field, posted, vms_of

KIND_LABELS = {Kind.VCPUS: N_("more vCPUs"), Kind.MEMORY: N_("more memory"), Kind.NEW_VM: N_("another VM")}
STATUS_LABELS = {"pending": N_("pending"), "approved": N_("approved"), "rejected": N_("rejected")}


async def requests_page(ctx: Ctx) -> web.StreamResponse:
    assert ctx.session is not None
    portal = ctx.portal
    mine = None if ctx.operator else ctx.session.username
    own = [vm for vm in vms_of(ctx) if vm.meta.owner == ctx.session.username]
    return ctx.render("requests.html", vms=own,
                      requests=portal.requests.list(username=mine), csrf=csrf(ctx),
                      vcpu_limits=LIMITS[Kind.VCPUS], memory_limits=LIMITS[Kind.MEMORY],
                      kinds=list(Kind), kind_label=lambda k: ctx._(KIND_LABELS[Kind(k)]),
                      status_label=lambda s: ctx._(STATUS_LABELS.get(str(s), str(s))),
                      when=_when, form={})


def _when(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


async def file_request(ctx: Ctx) -> web.StreamResponse:
    assert ctx.session is not None
    portal = ctx.portal
    form = await posted(ctx.request)
    kind_text = form_field(form, "kind", 20)
    try:
        kind = Kind(kind_text)
    except ValueError:
        ctx.flash("error", ctx._("Choose what you ask for."))
        return ctx.redirect("/requests")
    vm: VM | None = None
    amount: int | None = None
    if kind is not Kind.NEW_VM:
        uuid = form_field(form, "vm", 40).lower()
        vm = next((v for v in vms_of(ctx) if v.uuid == uuid and v.meta.owner == ctx.session.username), None)
        if vm is None:  # not one of this user's VMs (an operator asks for their own ones too)
            ctx.flash("error", ctx._("Choose one of your VMs."))
            return ctx.redirect("/requests")
        try:
            amount = int(form_field(form, "amount", 10))
        except ValueError:
            amount = None  # refused below, with the range it must be in
    try:
        made = portal.requests.create(ctx.session.username, kind, reason=form_field(form, "reason", 2000),
                                      vm_uuid=vm.uuid if vm else None, vm_name=vm.name if vm else None,
                                      amount=amount, email=ctx.session.email)
    except RequestRefused as exc:  # core.records' rules, said in the page's language
        ctx.flash("error", ctx._("The request was not filed: %(reason)s",
                                 reason=ctx._(exc.template, **exc.values)))
        return ctx.redirect("/requests")
    portal.record(ctx.actor(), "request", vm_name=vm.name if vm else "", vm_uuid=vm.uuid if vm else "",
                  detail=f"#{made.id} {made.summary()}")
    portal.spawn(notify_new_request(portal.settings, made), "portal-mail")
    ctx.flash("ok", ctx._("Request #%(id)d is filed: your teacher will answer it here.", id=made.id))
    return ctx.redirect("/requests")
