"""What every request of the server passes through: the trusted proxies' word on who asks
(:func:`forwarded_for`), our own 404 and 405 pages, the security headers of every response, and
the access log, share-link tokens masked (``/c/<redacted>``; logger ``core.web.access``), and the
options of the server's connections (:func:`runner_options`).
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from core.errors import ConfigError
from core.log import redact
from core.settings import Settings
from core.text import N_
from core.web import pages
from core.web.keys import CLIENT, CONFIG, FORMS, Handler

ACCESS_LOG = logging.getLogger("core.web.access")


def parse_proxies(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """VMM_TRUSTED_PROXIES: addresses or networks, comma-separated."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",")
                     if part.strip())
    except ValueError as exc:
        raise ConfigError(f"VMM_TRUSTED_PROXIES: {exc}") from None


@web.middleware
async def forwarded_for(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Believe X-Forwarded-For/Proto/Host only from VMM_TRUSTED_PROXIES."""
    trusted = request.app[CONFIG].trusted_proxies
    peer = request.remote or ""
    request[CLIENT] = peer or "-"
    if not trusted or not _in(peer, trusted):
        return await handler(request)
    chain = [a.strip() for h in request.headers.getall("X-Forwarded-For", []) for a in h.split(",")
             if a.strip()]
    client = next((a for a in reversed(chain) if not _in(a, trusted)), chain[0] if chain else peer)
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    forwarded_host = request.headers.get("X-Forwarded-Host", "").split(",")[-1].strip()
    request[CLIENT] = client
    scheme = proto if proto in ("http", "https") else request.scheme
    return await handler(request.clone(remote=client, scheme=scheme, host=forwarded_host or request.host))


@web.middleware
async def own_error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's 404 and 405 as our own pages (in the request's language), not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return pages.not_found(request)
    except web.HTTPMethodNotAllowed as exc:
        response = pages.page(request, 405, N_("Not allowed"), N_("This address does not take this method."))
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response


def _in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The headers of every response (an ``on_response_prepare`` signal): no referrer, no framing,
    and a CSP that lets the portal's pages, and them only, post forms to this site."""
    origin = request.app[CONFIG].origin
    ws = "wss" + origin[5:] if origin.startswith("https:") else "ws" + origin[4:]
    form_action = "'self'" if response.get(FORMS) else "'none'"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"font-src 'self'; connect-src 'self' {ws}; frame-ancestors 'none'; base-uri 'none'; "
        f"form-action {form_action}")


class AccessLogger(AbstractAccessLogger):
    """One line per request, share-link tokens masked: ``/c/<redacted>``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        client = request.get(CLIENT) or request.remote or "-"
        self.logger.info('%s "%s %s" %d %d %.3fs', client, request.method, redact(request.path),
                         response.status, response.body_length, time)


def runner_options(settings: Settings) -> dict[str, object]:
    """AppRunner / TestServer arguments: our access log, and how long a connection may go without
    a whole request (aiohttp's keep-alive timer, which also runs from the moment a connection
    opens until its first request's headers are in: half-open connections are closed)."""
    return {"access_log_class": AccessLogger, "access_log": ACCESS_LOG,
            "keepalive_timeout": settings.web.idle_timeout}
