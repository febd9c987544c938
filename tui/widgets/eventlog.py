"""The event log panel: what changed, when, and which action caused it.

A tail of the most recent lines, rendered with the line API: adding a line repaints the panel
only (a RichLog re-lays the whole screen out for every line, which a storm cannot afford).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime

from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from core.lifecycle import ActionResult
from core.model import Change, ConnState, HostStatus
from tui import format as fmt
from tui.widgets.textlines import fit, text_strip


def change_line(change: Change) -> Text | None:
    """One line for a change, or None for the figures that arrive every few seconds."""
    if change.what == "stats":
        return None
    vm = change.vm
    line = Text()
    line.append(fmt.printable(vm.name), "bold")
    if change.kind == "removed":
        line.append(f"  removed ({fmt.printable(change.what)})" if change.what else "  removed", "red")
    elif change.kind == "added":
        line.append(f"  {fmt.printable(change.what) or 'appeared'}: {vm.state.value}",
                    fmt.STATE_STYLES[vm.state])
    else:
        line.append("  ")
        line.append(fmt.printable(change.what or "changed"), fmt.STATE_STYLES[vm.state])
    if change.cause:
        line.append(f"  ({fmt.printable(change.cause)})", "italic cyan")
    return line


def host_line(status: HostStatus) -> Text:
    style = {ConnState.ACTIVE: "green", ConnState.CONNECTING: "yellow"}.get(status.state, "bold red")
    line = Text()
    line.append(fmt.printable(status.name), "bold")
    line.append(f"  {status.state.value}", style)
    if status.message:
        line.append(f": {fmt.printable(status.message)}", style)
    return line


def result_line(result: ActionResult) -> Text:
    line = Text()
    line.append("✓ " if result.ok else "✗ ", "green" if result.ok else "bold red")
    line.append(f"{result.action} ")
    line.append(fmt.printable(result.vm.name), "bold")
    line.append(f": {fmt.printable(result.message)}", "" if result.ok else "red")
    return line


class EventLog(Widget, can_focus=False):
    """The last lines, newest at the bottom; every line is a Text built from plain strings."""

    DEFAULT_CSS = """
    EventLog { height: 8; border-top: solid $panel-lighten-2; }
    """

    def __init__(self, clock: Callable[[], datetime], *, max_lines: int = 500,
                 id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.clock = clock
        self.lines: deque[Text] = deque(maxlen=max_lines)
        self._strips: deque[Strip] = deque(maxlen=max_lines)
        self._base: Style | None = None
        self._dirty = False

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None

    def add(self, line: Text | str, style: str = "", *, repaint: bool = True) -> None:
        """Stamp and keep a line; ``repaint=False`` leaves the repaint to a later :meth:`repaint`.
        A plain string goes through :func:`core.text.printable` here; a :class:`Text`'s parts did
        where it was assembled."""
        stamped = Text(self.clock().strftime("%H:%M:%S "), "dim")
        stamped.append_text(line if isinstance(line, Text) else Text(fmt.printable(line), style))
        self.lines.append(stamped)
        self._strips.append(text_strip(stamped, self.app.console))
        self._dirty = True
        if repaint:
            self.repaint()

    def repaint(self) -> None:
        if self._dirty and self.display:
            self._dirty = False
            self.refresh()

    @property
    def text(self) -> str:
        return "\n".join(line.plain for line in self.lines)

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        first = max(0, len(self._strips) - height)
        index = first + y
        if self._base is None:
            self._base = self.rich_style  # a DOM walk: once, not for every line
        base = self._base
        if index >= len(self._strips):
            return Strip.blank(width, base)
        return fit(self._strips[index], width, base)
