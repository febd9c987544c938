"""The line under the table: the `/` filter prompt and what is shown, marked and sorted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Input, Static

from tui import format as fmt
from tui.tablemodel import COLUMNS, TableStatus
from tui.textual_private import virtual_size_without_layout

_TITLES = {c.key: c.title.lower() for c in COLUMNS}


def status_text(status: TableStatus) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis", justify="right")
    if status.query_error:
        text.append(fmt.printable(status.query_error) + "  ", "red")
    text.append(f"{status.shown}/{status.total} shown")
    if status.marked:
        text.append(f" · {status.marked} marked", "bold")
        if status.marked_hidden:
            text.append(f" ({status.marked_hidden} hidden)", "bold yellow")
    text.append(f" · sort {_TITLES.get(status.sort, status.sort)} {'▼' if status.reverse else '▲'}")
    return text


class FilterInput(Input):
    """The filter prompt; no blinking cursor (no repaint traffic over SSH, stable snapshots)."""

    # Input sets its scrollable width on every keystroke, and that reactive asks for a layout
    # pass: a reflow and a repaint of the whole screen per keystroke, while the prompt's own size
    # (1fr x 1) never changes. Same reactive, without the layout.
    virtual_size: Reactive[Size] = virtual_size_without_layout()

    def __init__(self, on_change: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_change = on_change

    def watch_value(self, value: str) -> None:
        # Filter right here, in the keystroke's own handling, so the new rows are painted in the
        # same frame as the typed character; through the Changed message they came a frame later.
        self.on_change(value)

    DEFAULT_CSS = """
    FilterInput { width: 1fr; height: 1; border: none; padding: 0; background: $surface; }
    FilterInput:focus { border: none; background: $boost; }
    """


class StatusBar(Horizontal):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $surface; }
    StatusBar > #filter-label { width: auto; color: $accent; text-style: bold; padding: 0 0 0 1; }
    StatusBar > #status { width: 50%; padding: 0 1; color: $text-muted; }
    StatusBar.-idle > #filter-label, StatusBar.-idle > FilterInput { display: none; }
    StatusBar.-idle > #status { width: 1fr; }
    """

    def __init__(self, on_filter: Callable[[str], None], *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes="-idle")  # idle from the start: no restyle once mounted
        self.on_filter = on_filter

    def compose(self) -> ComposeResult:
        yield Static("/", id="filter-label")
        filter_input = FilterInput(self.on_filter, placeholder="filter: name, owner:…, state:…, re:…",
                                   id="filter", select_on_focus=False, compact=True)
        filter_input.cursor_blink = False
        yield filter_input
        yield Static(id="status")

    def show_status(self, status: TableStatus) -> None:
        # fixed width either way: no layout pass for a new count
        self.query_one("#status", Static).update(status_text(status), layout=False)

    def open_filter(self) -> None:
        """Show the prompt and focus it at once (``Widget.focus`` would wait for the next turn:
        keys already read would still go to the table)."""
        self.remove_class("-idle")
        self.screen.set_focus(self.query_one(FilterInput))

    def close_filter(self, clear: bool = False) -> None:
        filter_input = self.query_one(FilterInput)
        if clear:
            filter_input.value = ""
        self.set_class(not filter_input.value, "-idle")
