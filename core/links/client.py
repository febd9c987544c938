"""The TUI's client of the console server: make share links, revoke them, count the viewers.

When a server runs (``vm-manager serve``, or the TUI's own ``--serve``), everything goes through
its admin API, so a revocation closes the consoles at once and the viewers can be counted.
Without one, links are made and revoked in the database directly, as the CLI does (a server
started later reads them, and closes the consoles of revoked links), and nobody is counted.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from core.links.shares import TokenStore, format_time, load_secret_key, parse_ttl
from core.model import VM
from core.records import audit
from core.records.audit import Actor, Item
from core.settings import Settings
from core.web import base_url, share_url

log = logging.getLogger(__name__)
VIEWER_POLL = 3.0  # seconds between two viewer counts


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
    revoked: tuple[tuple[str, str], ...]  # (link id, VM name): links active until now
    closed: int  # consoles closed at once (0 without a server: it closes them when it next checks)
    via_server: bool


class Consoles:
    """Talks to the admin API of ``settings`` (its Unix socket), else to the database; what it
    makes and revokes is audited as the operator at this terminal (``source``: tui or cli)."""

    def __init__(self, settings: Settings, source: str = "tui") -> None:
        self.settings = settings
        self.actor = Actor.local(source)
        self._admin: ModuleType | None = None

    async def _call(self, method: str, path: str, payload: dict[str, Any] | None = None
                    ) -> dict[str, Any] | None:
        """``core.web.admin.call``; None when no server answers.

        The admin client needs aiohttp (a quarter of a second to import): imported in a thread
        the first time, so neither the TUI's start nor its first poll freezes the screen.
        """
        if not self.settings.admin_socket.exists():  # no server (admin.call says the same, later)
            return None
        if self._admin is None:
            self._admin = await asyncio.to_thread(importlib.import_module, "core.web.admin")
        return await self._admin.call(self.settings, method, path, payload)

    async def share(self, vms: Sequence[VM], ttl: str) -> ShareResult:
        """One new link per VM, lasting ``ttl`` (``30m``, ``4h``, ``2d``)."""
        seconds = parse_ttl(ttl)  # InvalidInput before anything is made
        names = {vm.uuid: vm.name for vm in vms}
        reply = await self._call("POST", "/links", {"vms": list(names), "ttl": ttl})
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

    async def revoke(self, vms: Sequence[VM]) -> RevokeResult:
        """Revoke every link of ``vms``."""
        uuids = [vm.uuid for vm in vms]
        reply = await self._call("POST", "/revoke", {"vms": uuids})
        if reply is not None:
            revoked = tuple((link["id"], link["name"]) for r in reply["results"] for link in r["revoked"])
            result = RevokeResult(revoked, int(reply["closed"]), True)
        else:
            result = RevokeResult(await asyncio.to_thread(self._revoke_in_store, uuids), 0, False)
        self._record([Item("revoke", name, "", "ok", f"link {link_id}") for link_id, name in result.revoked])
        return result

    def _revoke_in_store(self, uuids: list[str]) -> tuple[tuple[str, str], ...]:
        store = TokenStore(self.settings.database_path, "")  # revoking by VM needs no key
        try:
            return tuple((link.id, link.vm_name) for link in store.revoke(vm_uuids=uuids))
        finally:
            store.close()

    async def viewers(self) -> dict[str, int] | None:
        """Open consoles per VM UUID, or None when no server answers."""
        try:
            reply = await self._call("GET", "/viewers")
        except Exception:  # a count is best effort: a server answering nonsense counts as none
            log.debug("counting the viewers failed", exc_info=True)
            return None
        if reply is None:
            return None
        return {str(uuid): int(count) for uuid, count in reply.get("by_vm", {}).items()}

    def no_server_note(self) -> str:
        """What an operator should know about links made without a server."""
        where = base_url(self.settings)
        note = "No console server answers: the links are saved and work once `vm-manager serve` runs"
        if not self.settings.public_url:
            note += f"; PUBLIC_URL is unset, so they point at {where}"
        return note + "."
