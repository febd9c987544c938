"""The event log panel: what changed, when, and which action caused it.

A tail of the most recent lines, rendered with the line API: adding a line repaints the panel
only (a RichLog re-lays the whole screen out for every line, which a storm cannot afford).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from core.lifecycle import ActionResult
from core.model import VM, Change, ConnState, HostStatus
from core.query import Fields, Query, fields_of, parse
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


@dataclass(eq=False, slots=True)
class Entry:
    """A line of the log: what happened (``times`` in a row), when last, and about which VM."""

    stamp: str
    line: Text
    fields: tuple[Fields, str] | None  # the VM's, for the filter; None: always shown (a host, the app)
    mine: bool  # the operator's own doing, from this TUI
    times: int = 1
    strip: Strip | None = None

    def same(self, line: Text, fields: tuple[Fields, str] | None, mine: bool) -> bool:
        return self.mine == mine and self.fields == fields and self.line.plain == line.plain

    def text(self) -> Text:
        if self.mine:
            text = Text()
            text.append(self.stamp, MINE_STAMP)
            text.append(" ")
        else:
            text = Text(f"{self.stamp} ", "dim")
        text.append_text(self.line)
        if self.times > 1:
            text.append(f" ×{self.times}", "bold")
        return text


REPEAT_WINDOW = 8
"""A line that repeats one of the last this many becomes that line with a count."""
MINE_STAMP = "bold reverse"
"""How the operator's own lines stand out: their time in reverse video."""


class EventLog(Widget, can_focus=False):
    """The last lines, newest at the bottom; every line is a Text built from plain strings.

    It follows the table's filter (:meth:`follow`): a line about a VM shows while that VM
    matches; lines about no VM always show. The same line again, about the same VM, becomes
    one line with ``×N``; the operator's own actions (``mine``) have their time in reverse video.
    """

    DEFAULT_CSS = """
    EventLog { height: 8; border-top: solid $panel-lighten-2; }
    """

    def __init__(self, clock: Callable[[], datetime], *, max_lines: int = 500,
                 id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.clock = clock
        self.entries: deque[Entry] = deque(maxlen=max_lines)
        self._shown: deque[Entry] = deque(maxlen=max_lines)  # those the filter lets through, in order
        self.query_filter = parse("")
        self._base: Style | None = None
        self._dirty = False

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None

    def add(self, line: Text | str, style: str = "", *, repaint: bool = True, vm: VM | None = None,
            mine: bool = False) -> None:
        """Stamp and keep a line about ``vm`` (if any); ``mine``: the operator's own action.
        ``repaint=False`` leaves the repaint to a later :meth:`repaint`. A plain string goes
        through :func:`core.text.printable` here; a :class:`Text`'s parts did where it was assembled."""
        text = line if isinstance(line, Text) else Text(fmt.printable(line), style)
        fields = fields_of(vm) if vm is not None else None
        stamp = self.clock().strftime("%H:%M:%S")
        entry = self._take_repeat(text, fields, mine)
        if entry is not None:  # the same again: one line, counted, moved to the bottom
            entry.times += 1
            entry.stamp = stamp
            entry.strip = None
        else:
            entry = Entry(stamp, text, fields, mine)
            if len(self.entries) == self.entries.maxlen and self._shown and self._shown[0] is self.entries[0]:
                self._shown.popleft()  # the oldest goes from both
        self.entries.append(entry)
        if self._passes(entry):
            self._shown.append(entry)
        self._dirty = True
        if repaint:
            self.repaint()

    def _take_repeat(self, line: Text, fields: tuple[Fields, str] | None, mine: bool) -> Entry | None:
        """The same line among the last :data:`REPEAT_WINDOW`, taken out of its place (or None).
        A window, not only the last line: an action's "requested" and result lines alternate."""
        entries = self.entries
        for back in range(1, min(REPEAT_WINDOW, len(entries)) + 1):
            entry = entries[-back]
            if entry.same(line, fields, mine):
                del entries[-back]
                if entry in self._shown:  # by identity (eq=False)
                    self._shown.remove(entry)
                return entry
        return None

    def _passes(self, entry: Entry) -> bool:
        return entry.fields is None or self.query_filter.empty or self.query_filter.matches(*entry.fields)

    def follow(self, query: Query) -> None:
        """Show only the lines about VMs ``query`` matches (the table's filter), and the others."""
        if query.text == self.query_filter.text:
            return
        self.query_filter = query
        self._shown = deque((e for e in self.entries if self._passes(e)), maxlen=self.entries.maxlen)
        self._dirty = True
        self.repaint()

    def repaint(self) -> None:
        if self._dirty and self.display:
            self._dirty = False
            self.refresh()

    @property
    def text(self) -> str:
        """Every line kept, as plain text (the filter aside)."""
        return "\n".join(entry.text().plain for entry in self.entries)

    @property
    def shown_text(self) -> str:
        """The lines the filter lets through, as plain text."""
        return "\n".join(entry.text().plain for entry in self._shown)

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        shown = self._shown
        first = max(0, len(shown) - height)
        index = first + y
        if self._base is None:
            self._base = self.rich_style  # a DOM walk: once, not for every line
        base = self._base
        if index >= len(shown):
            return Strip.blank(width, base)
        entry = shown[index]
        if entry.strip is None:  # rendered once, when first drawn (and again when its count grows)
            entry.strip = text_strip(entry.text(), self.app.console)
        return fit(entry.strip, width, base)
