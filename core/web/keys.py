"""What the parts of the server share on the aiohttp application: its keys, its configuration, the
route pattern of a VM's UUID, and the few request helpers more than one part needs.

The console routes (:mod:`core.web.console.routes`), the middlewares, the portal and the admin
API import this module, never :mod:`core.web.app`, which imports them all to assemble the server.
The console's types are named here for the type checker only: ``core.web.console`` imports this
module, and this module does not import it back.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from core.lab import Lab
from core.links import TokenStore
from core.model import VM

if TYPE_CHECKING:
    from core.web.console.endpoints import Endpoints
    from core.web.console.proxy import Viewers

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class WebConfig:
    base_url: str  # where links point: PUBLIC_URL, else http://<host>:<port> of serve
    origin: str  # the only Origin the websocket accepts
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    novnc_dir: Path
    expiry_interval: float

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies whatever the request (PUBLIC_URL is https); see :func:`secure_cookies`."""
        return self.origin.startswith("https:")


CONFIG = web.AppKey("config", WebConfig)
LAB = web.AppKey("lab", Lab)
STORE = web.AppKey("store", TokenStore)
ENDPOINTS: web.AppKey[Endpoints] = web.AppKey("endpoints")
VIEWERS: web.AppKey[Viewers] = web.AppKey("viewers")
CLIENT = web.RequestKey("client", str)  # the client's address, as trusted proxies report it
FORMS = web.ResponseKey("forms", bool)  # a portal page: its CSP lets forms post to this site


def secure_cookies(request: web.Request) -> bool:
    """Whether cookies get Secure: PUBLIC_URL is https, or this request came over https (TLS here,
    or a trusted proxy's ``X-Forwarded-Proto: https``, which
    :func:`core.web.middlewares.forwarded_for` believed)."""
    return request.app[CONFIG].secure_cookies or request.scheme == "https"


def find_vm(lab: Lab, uuid: str) -> VM | None:
    return next((vm for vm in lab.vms() if vm.uuid == uuid), None)
