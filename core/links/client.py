"""The operators' client of the console server: make share links, revoke them, count viewers.

When a server runs (``vm-manager serve``, or the TUI's own ``--serve``), everything goes through
its admin API (:mod:`core.web.admin`, on a Unix socket only the service's user can reach), so a
revocation closes the consoles at once and the viewers can be counted. Without one, links are
made and revoked in the database directly (a server started later reads them, and closes the
consoles of revoked links), and nobody is counted. The TUI and the CLI both use :class:`Consoles`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import VMManagerError
from core.links.secret import load_secret_key
from core.links.shares import Link, Revocation, TokenStore, parse_ttl
from core.links.urls import base_url, share_url
from core.model import VM
from core.records import audit
from core.records.audit import Actor, Item
from core.settings import Settings
from core.text import format_time

log = logging.getLogger(__name__)
VIEWER_POLL = 3.0  # seconds between two viewer counts


async def call(settings: Settings, method: str, path: str, payload: dict[str, Any] | None = None
               ) -> dict[str, Any] | None:
    """Ask the running server; None when none answers (the caller then uses the database).

    aiohttp (a quarter of a second to import) is imported on the first call that finds a socket,
    in a thread: neither a command without a server nor the TUI's screen waits for it.
    """
    socket_path = settings.admin_socket
    if not socket_path.exists():
        return None
    aiohttp = await asyncio.to_thread(importlib.import_module, "aiohttp")
    try:
        async with (aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=os.fspath(socket_path)),
                                          timeout=aiohttp.ClientTimeout(total=30)) as session,
                    session.request(method, f"http://admin{path}", json=payload) as response):
            data = await response.json()
    except (aiohttp.ClientConnectionError, OSError):
        return None
    if response.status >= 400:
        raise VMManagerError(f"the server refused: {data.get('error', response.reason)}")
    return dict(data)


async def server_answers(settings: Settings) -> bool:
    """Whether a server answers on the admin socket (one that refuses a call answers too)."""
    with contextlib.suppress(VMManagerError):
        return await call(settings, "GET", "/viewers") is not None
    return True


@dataclass(frozen=True, slots=True)
class SharedLink:
    vm_uuid: str
    vm_name: str
    id: str  # the link's public id (to list and revoke it)
    url: str  # holds the token: shown once, never logged
    expires: str  # local time to the minute, as ``format_time`` writes it


@dataclass(frozen=True, slots=True)
class ShareResult:
    links: tuple[SharedLink, ...]
    errors: tuple[tuple[str, str], ...]  # (VM name, why no link)
    via_server: bool
    ttl: str


@dataclass(frozen=True, slots=True)
class RevokeResult:
    results: tuple[Revocation, ...]  # one per id, token and VM asked for, in that order
    closed: int  # consoles closed at once (0 without a server: it closes them when it next checks)
    via_server: bool

    @property
    def revoked(self) -> tuple[tuple[str, str], ...]:
        """Every link revoked, ``(id, VM name)``."""
        return tuple(link for result in self.results for link in result.revoked)


@dataclass(frozen=True)
class ListedLink:
    link: Link
    viewers: int | None  # consoles open through it now; None: no server answers, nobody is counted


class Consoles:
    """Talks to the admin API of ``settings`` (its Unix socket), else to the database; what it
    makes and revokes is audited as the operator at this terminal (``source``: tui or cli)."""

    def __init__(self, settings: Settings, source: str = "tui") -> None:
        self.settings = settings
        self.actor = Actor.local(source)

    async def share(self, vms: Sequence[VM], ttl: str) -> ShareResult:
        """One new link per VM, lasting ``ttl`` (``30m``, ``4h``, ``2d``)."""
        seconds = parse_ttl(ttl)  # InvalidInput before anything is made
        names = {vm.uuid: vm.name for vm in vms}
        reply = await call(self.settings, "POST", "/links", {"vms": list(names), "ttl": ttl})
        if reply is not None:
            links = tuple(SharedLink(row["vm"], row["name"], row["id"], row["url"], row["expires"])
                          for row in reply["links"])
            errors = tuple((names.get(e["vm"], e["vm"]), e["error"]) for e in reply["errors"])
            result = ShareResult(links, errors, True, ttl)
        else:
            result = ShareResult(await asyncio.to_thread(self._share_in_store, vms, seconds), (), False, ttl)
        self._record([Item("share", link.vm_name, link.vm_uuid, "ok", f"link {link.id} until {link.expires}")
                      for link in result.links])
        return result

    def _record(self, items: list[Item]) -> None:
        audit.record(self.settings.database_path, self.actor, items)

    def _share_in_store(self, vms: Sequence[VM], ttl: float) -> tuple[SharedLink, ...]:
        key = load_secret_key(self.settings)  # never a throwaway key: a server could not read its links
        base = base_url(self.settings)
        store = TokenStore(self.settings.database_path, key)
        try:
            made = []
            for vm in vms:
                link, token = store.create_link(vm.uuid, vm.name, ttl)
                made.append(SharedLink(vm.uuid, vm.name, link.id, share_url(base, token),
                                       format_time(link.expires)))
            return tuple(made)
        finally:
            store.close()

    async def revoke(self, *, ids: Sequence[str] = (), tokens: Sequence[str] = (),
                     vms: Sequence[VM] = ()) -> RevokeResult:
        """Revoke links by id, by token and every link of ``vms``; the server closes their consoles."""
        uuids = [vm.uuid for vm in vms]
        reply = await call(self.settings, "POST", "/revoke", {"ids": list(ids), "tokens": list(tokens),
                                                              "vms": uuids})
        if reply is not None:
            asked = [*ids, *tokens, *uuids]  # the server does not echo tokens
            results = tuple(Revocation(r["kind"], value, r["found"],
                                       tuple((link["id"], link["name"]) for link in r["revoked"]))
                            for r, value in zip(reply["results"], asked, strict=True))
            result = RevokeResult(results, int(reply["closed"]), True)
        else:
            result = RevokeResult(tuple(await asyncio.to_thread(self._revoke_in_store, ids, tokens, uuids)),
                                  0, False)
        self._record([Item("revoke", name, "", "ok", f"link {link_id}") for link_id, name in result.revoked])
        return result

    def _revoke_in_store(self, ids: Sequence[str], tokens: Sequence[str],
                         uuids: Sequence[str]) -> list[Revocation]:
        key = load_secret_key(self.settings) if tokens else ""  # only a token's hash needs the key
        store = TokenStore(self.settings.database_path, key)
        try:
            return store.revoke_many(ids=ids, tokens=tokens, vm_uuids=uuids)
        finally:
            store.close()

    async def viewers(self, by: str = "by_vm") -> dict[str, int] | None:
        """Open consoles per VM UUID (``by="by_link"``: per link id), or None when no server answers."""
        try:
            reply = await call(self.settings, "GET", "/viewers")
            if reply is None:
                return None
            return {str(key): int(count) for key, count in reply.get(by, {}).items()}
        except Exception:  # a count is best effort: a server answering nonsense counts as none
            log.debug("counting the viewers failed", exc_info=True)
            return None

    async def listed(self) -> tuple[ListedLink, ...]:
        """The share links still open, oldest first, each with its viewers when a server answers.
        They come from the database, where a token is kept only as its HMAC: a listed link has its
        id, never its URL (that is shown once, when it is made)."""
        links = await asyncio.to_thread(self._links_in_store)
        counts = await self.viewers("by_link")
        return tuple(ListedLink(link, None if counts is None else counts.get(link.id, 0))
                     for link in sorted(links, key=lambda link: (link.created, link.id)))

    def _links_in_store(self) -> list[Link]:
        store = TokenStore(self.settings.database_path, "")  # listing hashes nothing: no key
        try:
            return [link for link in store.links() if link.owner is None]  # not students' portal sessions
        finally:
            store.close()

    def no_server_note(self) -> str:
        """What an operator should know about links made without a server."""
        where = base_url(self.settings)
        note = "No console server answers: the links are saved and work once `vm-manager serve` runs"
        if not self.settings.web.public_url:
            note += f"; PUBLIC_URL is unset, so they point at {where}"
        return note + "."
