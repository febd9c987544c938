"""The web server: browser consoles behind share links, the student portal, the admin API.

``app`` builds the aiohttp application and runs it (:func:`serve`, the one entry the TUI and CLI
use); ``keys`` holds what the parts share on the application; ``middlewares`` what every request
passes through; ``console/`` the console path (the endpoint process, websockify's proxy in
``console.wsbridge``, and the server's bridge to it; the pool of endpoints; the relay; the console
routes and the watchers of open consoles); ``portal/`` the students' pages; ``admin`` the
operator's API on a Unix socket; ``pages`` and ``i18n`` the server's own pages and languages.

This module stays light (no aiohttp): the endpoint process imports ``core.web.console``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.lab import Lab
    from core.settings import Settings


async def serve(settings: Settings, lab: Lab, *, secret_key: str, host: str, port: int,
                stop: asyncio.Event, started: Callable[[str], None] | None = None) -> None:
    """Run the server until ``stop`` (an asyncio.Event) is set: :func:`core.web.app.serve`,
    imported only now and in a thread (aiohttp and the portal take a third of a second to import,
    which neither another command nor the TUI's screen should wait for)."""
    app = await asyncio.to_thread(importlib.import_module, "core.web.app")
    await app.serve(settings, lab, secret_key=secret_key, host=host, port=port, stop=stop, started=started)
