"""The websocket relay between a browser and a console endpoint, and the viewers it serves.

Each direction is pumped by its own task; the first to end (either side closed, or failed)
cancels the other and both sockets are closed. Every open relay is a :class:`Viewer`, known by
its share link and VM, so that revoking a link, its expiry or the VM stopping closes exactly
the viewers concerned. A viewer is counted from the moment it is admitted, before anything is
connected for it: one link, or one VM, holds at most :class:`ViewerLimits` viewers (QEMU's VNC
serves 32 clients a display, and refuses the 33rd whoever it is).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

# Close codes the browser sees (noVNC shows the reason): the 4000-4999 range is ours.
CLOSE_REVOKED = 4001  # the share link was revoked or expired
CLOSE_VM_STOPPED = 4002
_SENDABLE = frozenset({1000, 1001, 1003, 1007, 1008, 1009, 1011})
DISPLAY_CLOSED = "the VM's display ended the connection (did the VM stop or restart?)"
"""Why a console closed when the VM's side ended it: the page shows it when the server knows no more."""

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


@dataclass(eq=False, slots=True)
class Viewer:
    link_id: str
    vm_uuid: str
    ws: web.WebSocketResponse | None = None  # None while its console is being connected
    owner: str | None = None  # the student whose portal link this is (None: a share link, an operator)
    since: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class ViewerLimits:
    """The most viewers one link (its console sessions together) and one VM (all its links) may
    have: VMM_VIEWERS_PER_LINK and VMM_VIEWERS_PER_VM."""

    per_link: int
    per_vm: int


class ViewersFull(Exception):
    """One more viewer would pass a limit: ``which`` ("link" or "vm") and that limit."""

    def __init__(self, which: Literal["link", "vm"], limit: int) -> None:
        super().__init__(f"the {which} has its {limit} viewers already")
        self.which = which
        self.limit = limit


class Viewers:
    """Every console websocket, open or being connected."""

    def __init__(self, limits: ViewerLimits) -> None:
        self.limits = limits
        self._all: set[Viewer] = set()

    def __len__(self) -> int:
        """Open viewers (not those still being connected)."""
        return sum(1 for v in self._all if v.ws is not None)

    def full(self, link_id: str, vm_uuid: str) -> ViewersFull | None:
        """The limit one more viewer of ``link_id`` on ``vm_uuid`` would pass, or None."""
        if sum(1 for v in self._all if v.link_id == link_id) >= self.limits.per_link:
            return ViewersFull("link", self.limits.per_link)
        if sum(1 for v in self._all if v.vm_uuid == vm_uuid) >= self.limits.per_vm:
            return ViewersFull("vm", self.limits.per_vm)
        return None

    def admit(self, link_id: str, vm_uuid: str, *, owner: str | None = None) -> Viewer:
        """A place for a viewer about to be connected, counted from now on: websockets opening at
        once cannot all pass the limits. Raises ViewersFull; :meth:`discard` gives the place back."""
        if over := self.full(link_id, vm_uuid):
            raise over
        viewer = Viewer(link_id, vm_uuid, owner=owner)
        self._all.add(viewer)
        return viewer

    def opened(self, viewer: Viewer, ws: web.WebSocketResponse) -> None:
        """The admitted ``viewer`` is connected: closing its link or VM closes ``ws`` from now on."""
        viewer.ws = ws

    def add(self, link_id: str, vm_uuid: str, ws: web.WebSocketResponse, *,
            owner: str | None = None) -> Viewer:
        """:meth:`admit` and :meth:`opened` at once."""
        viewer = self.admit(link_id, vm_uuid, owner=owner)
        self.opened(viewer, ws)
        return viewer

    def discard(self, viewer: Viewer) -> None:
        self._all.discard(viewer)

    def link_ids(self) -> set[str]:
        return {v.link_id for v in self._all}

    def vm_uuids(self) -> set[str]:
        return {v.vm_uuid for v in self._all}

    def foreign_links(self, vm_uuid: str, vm_owner: str) -> set[str]:
        """The students' links viewing the VM that is no longer theirs (its owner is ``vm_owner``)."""
        return {v.link_id for v in self._all
                if v.vm_uuid == vm_uuid and v.owner is not None and v.owner != vm_owner}

    def counts(self) -> dict[str, object]:
        """The open viewers: in all, by VM, by link."""
        open_ = [v for v in self._all if v.ws is not None]
        return {"total": len(open_),
                "by_vm": dict(collections.Counter(v.vm_uuid for v in open_)),
                "by_link": dict(collections.Counter(v.link_id for v in open_))}

    async def close(self, which: Callable[[Viewer], bool], code: int, message: str) -> int:
        """Close the open viewers ``which`` picks; returns how many. (One still being connected
        checks its link and VM once open: :func:`core.web.console.routes.console_socket`.)"""
        chosen = [v.ws for v in self._all if v.ws is not None and which(v)]
        await asyncio.gather(*(_close(ws, code, message) for ws in chosen))
        return len(chosen)

    async def close_links(self, link_ids: set[str], message: str = "share link revoked") -> int:
        return await self.close(lambda v: v.link_id in link_ids, CLOSE_REVOKED, message)

    async def close_vm(self, uuid: str, message: str = "the VM stopped") -> int:
        return await self.close(lambda v: v.vm_uuid == uuid, CLOSE_VM_STOPPED, message)

    async def close_all(self) -> int:
        return await self.close(lambda v: True, WSCloseCode.GOING_AWAY, "server shutting down")


async def _close(ws: Socket, code: int, message: str) -> None:
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, asyncio.TimeoutError):
        await asyncio.wait_for(ws.close(code=code, message=message.encode()), 5.0)


async def _pump(source: Socket, sink: Socket) -> None:
    """Copy messages until ``source`` closes (iteration ends at a close frame) or fails."""
    async for message in source:
        if message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.ERROR:
            return


async def relay(browser: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Relay frames both ways until one side ends; then close both."""
    tasks = [asyncio.create_task(_pump(browser, upstream), name="console-to-vm"),
             asyncio.create_task(_pump(upstream, browser), name="console-to-browser")]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
                await task
        await _close(upstream, WSCloseCode.OK, "")
        code = upstream.close_code if upstream.close_code in _SENDABLE else WSCloseCode.OK
        await _close(browser, code, DISPLAY_CLOSED if code == WSCloseCode.OK else "")
