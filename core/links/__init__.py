"""Console share links and console sessions, the secret key they are hashed with, where links point,
and the client the TUI and CLI use to make and revoke them (through a running server, if any)."""

from core.links.client import (
           VIEWER_POLL,
           Consoles,
    ListedLink,
           RevokeResult,
           SharedLink,
           ShareResult,
           call,
           server_answers,
)
from core.links.secret import generate_secret_key, key_file, load_secret_key
from core.links.shares import Link, Revocation, TokenStore, describe_ttl, parse_ttl, revoke_target
from core.links.urls import DEFAULT_HOST, DEFAULT_PORT, base_url, origin_of, share_url

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "VIEWER_POLL", "Consoles", "Link", "ListedLink", "Revocation",
           "RevokeResult", "ShareResult", "SharedLink", "TokenStore", "base_url", "call", "describe_ttl",
           "generate_secret_key", "key_file", "load_secret_key", "origin_of", "parse_ttl", "revoke_target",
           "server_answers", "share_url"]
