"""Where links point: the server's public address (PUBLIC_URL), the Origin it accepts, share URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

from core.errors import ConfigError
from core.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` as a browser writes it in an Origin header (no default port)."""
    bad = ConfigError(f"PUBLIC_URL must be an http(s) URL like https://vm.example.org, not {url!r}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError: not a number, or out of range
    except ValueError:  # also an unclosed "[" of an IPv6 address
        raise bad from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise bad
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")


def base_url(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    """Where links point: PUBLIC_URL (without a trailing slash), else ``http://<host>:<port>``."""
    if settings.web.public_url:
        origin_of(settings.web.public_url)  # refuse a bad one early
        if urlsplit(settings.web.public_url.strip()).path.strip("/"):
            raise ConfigError("PUBLIC_URL must have no path (the server answers at the root of its site)")
        return settings.web.public_url.strip().rstrip("/")
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def share_url(base: str, token: str) -> str:
    return f"{base}/c/{token}"
