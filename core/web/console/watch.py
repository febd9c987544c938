"""The server's background work on open consoles: closing the viewers of links that expired or
were revoked (:func:`expire_viewers`), the consoles of a VM that stopped, went away or was given to
someone else (:func:`on_inventory`), and every console at shutdown (:func:`close_consoles`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from core.model import VM, Update
from core.text import count
from core.web.console.proxy import CLOSE_REVOKED
from core.web.keys import CONFIG, ENDPOINTS, STORE, VIEWERS

log = logging.getLogger(__name__)


async def close_consoles(app: web.Application) -> None:
    """Shutting down (an ``on_shutdown`` signal): close every console websocket, then stop every
    endpoint."""
    closed = await app[VIEWERS].close_all()
    await app[ENDPOINTS].stop_all()
    if closed:
        log.info("closed %s at shutdown", count(closed, "console"))


async def expire_viewers(app: web.Application) -> None:
    """Close the viewers of links that expired or were revoked (also by a CLI without the server)."""
    purged_at = 0.0
    while True:
        await asyncio.sleep(app[CONFIG].expiry_interval)
        try:
            gone = app[STORE].inactive(app[VIEWERS].link_ids())
            if gone:
                closed = await app[VIEWERS].close_links(gone, "share link expired or revoked")
                log.info("closed %s of expired or revoked links %s", count(closed, "console"),
                         ", ".join(sorted(gone)))
            if time.monotonic() - purged_at > 3600:
                purged_at = time.monotonic()
                app[STORE].purge()
        except Exception:
            log.exception("checking console links failed")


def on_inventory(app: web.Application, tasks: list[asyncio.Task[None]]) -> Callable[[Update], None]:
    """The inventory's subscriber: close a VM's consoles (and stop its endpoint) when it stops or
    goes away; close (and revoke) the consoles a student opened on a VM given to someone else
    since. The work runs in tasks kept in ``tasks``."""
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
    closed = await app[VIEWERS].close_vm(uuid, why)
    await app[ENDPOINTS].stop_vm(uuid)
    log.info("console of %s closed (%s): %s", uuid, count(closed, "viewer"), why)


async def _given_away(app: web.Application, vm: VM, link_ids: set[str]) -> None:
    """The VM has another owner: the former owner's portal links end, and their consoles close."""
    app[STORE].revoke(ids=sorted(link_ids))
    closed = await app[VIEWERS].close(lambda v: v.link_id in link_ids, CLOSE_REVOKED,
                                      "the VM was given to another user")
    log.info("console of %s closed (%s): the VM is now %s's (links %s revoked)", vm.name,
             count(closed, "viewer"), vm.meta.owner or "nobody", ", ".join(sorted(link_ids)))
