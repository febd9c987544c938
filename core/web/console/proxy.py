"""The websocket relay between a browser and a console endpoint, and the viewers it serves.

Each direction is pumped by its own task; the first to end (either side closed, or failed)
cancels the other and both sockets are closed. Every open relay is a :class:`Viewer`, known by
its share link and VM, so that revoking a link, its expiry or the VM stopping closes exactly
the viewers concerned.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

# Close codes the browser sees (noVNC shows the reason): the 4000-4999 range is ours.
CLOSE_REVOKED = 4001  # the share link was revoked or expired
CLOSE_VM_STOPPED = 4002
_SENDABLE = frozenset({1000, 1001, 1003, 1007, 1008, 1009, 1011})

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


@dataclass(eq=False, slots=True)
class Viewer:
    link_id: str
    vm_uuid: str
    ws: web.WebSocketResponse
    owner: str | None = None  # the student whose portal link this is (None: a share link, an operator)
    since: float = field(default_factory=time.time)


class Viewers:
    """Every open console websocket."""

    def __init__(self) -> None:
        self._all: set[Viewer] = set()

    def __len__(self) -> int:
        return len(self._all)

    def add(self, link_id: str, vm_uuid: str, ws: web.WebSocketResponse, *,
            owner: str | None = None) -> Viewer:
        viewer = Viewer(link_id, vm_uuid, ws, owner)
        self._all.add(viewer)
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
        return {"total": len(self._all),
                "by_vm": dict(collections.Counter(v.vm_uuid for v in self._all)),
                "by_link": dict(collections.Counter(v.link_id for v in self._all))}

    async def close(self, which: Callable[[Viewer], bool], code: int, message: str) -> int:
        """Close the viewers ``which`` picks; returns how many."""
        chosen = [v for v in self._all if which(v)]
        await asyncio.gather(*(_close(v.ws, code, message) for v in chosen))
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
        await _close(browser, code, "the console closed" if code == WSCloseCode.OK else "")
