"""The command palette (ctrl+p): every binding of the main screen, as a searchable command.

Built from the same catalogue as the help screen, so a new binding appears in both.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import VMManagerApp

PALETTE_GROUPS = ("VM list", "Navigation", "Global")


class VMCommands(Provider):
    """Lifecycle actions, marks, filter, sort and panels, each with its key as help."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app: VMManagerApp = self.app  # type: ignore[assignment]
        commands = []
        for info in app.key_catalogue():
            if info.group not in PALETTE_GROUPS or info.binding_id == "command_palette":
                continue
            namespace = app.namespace_for(info.group)
            if namespace is None:
                continue
            keys = " ".join(info.keys) or "unbound"
            commands.append((info.description, f"key: {keys}  ·  id: {info.binding_id}",
                             partial(app.run_action, info.action, namespace)))
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
