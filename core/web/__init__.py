"""The web server: browser consoles behind share links, and the admin API on a Unix socket.

``app`` builds the aiohttp application and runs it; ``portal`` adds the students' pages;
``endpoints`` keeps the endpoint process (websockify's proxy, ``wsbridge``) serving every VM
whose console is open; ``proxy`` relays a browser's websocket to it; ``admin`` is the
operator's API; ``pages`` the few pages the server writes itself. This module stays free of
aiohttp: websockify imports ``core.web.console.endpoints`` for its auth plugin, the CLI these helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # websockify imports this module for its auth plugin: keep it light (no libvirt)
    from core.settings import Settings


def N_(text: str) -> str:  # noqa: N802 - the gettext marker babel's extractor knows
    """Mark a string for translation where it is written; it is translated where it is shown
    (``core.web.i18n``; the catalogue is ``core/web/locale/<lang>/LC_MESSAGES/messages.po``)."""
    return text


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` as a browser writes it in an Origin header (no default port)."""
    from core.errors import ConfigError

    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"PUBLIC_URL must be an http(s) URL like https://vm.example.org, not {url!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")


def base_url(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    """Where links point: PUBLIC_URL (without a trailing slash), else ``http://<host>:<port>``."""
    from core.errors import ConfigError

    if settings.public_url:
        origin_of(settings.public_url)  # refuse a bad one early
        if urlsplit(settings.public_url.strip()).path.strip("/"):
            raise ConfigError("PUBLIC_URL must have no path (the server answers at the root of its site)")
        return settings.public_url.strip().rstrip("/")
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def share_url(base: str, token: str) -> str:
    return f"{base}/c/{token}"


ENDPOINT_SECRET_ENV = "VMM_ENDPOINT_SECRET"
ENDPOINT_SECRET_HEADER = "X-VMM-Endpoint"


class EndpointSecret:
    """websockify auth plugin (it runs inside websockify): only our server may connect.

    Each endpoint gets a random secret in its environment (which only its user can read) and
    refuses a websocket upgrade without it, before any connection to VNC: a loopback port of the
    fallback, or a Unix socket reached by root, gives nobody else a screen.
    """

    def __init__(self, src: str | None = None) -> None:
        import os

        self._secret = os.environ.get(ENDPOINT_SECRET_ENV, "").encode()

    def authenticate(self, headers: object, target_host: object, target_port: object) -> None:
        import hmac

        from websockify.auth_plugins import AuthenticationError

        given = str(headers.get(ENDPOINT_SECRET_HEADER) or "").encode()  # type: ignore[attr-defined]
        if not self._secret or not hmac.compare_digest(given, self._secret):
            raise AuthenticationError(response_code=403, response_msg="Forbidden")
