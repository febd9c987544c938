"""What the secondary lists (audit log, requests, share links) share with the VM list: the same
moves (`j`/`k`, `g`/`G` besides the arrows, one set of bindings: a remap applies to every list),
and `/` to filter their rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

NAVIGATION: list[BindingType] = [
    Binding("up,k", "cursor_up", "Cursor up", show=False, id="cursor_up"),
    Binding("down,j", "cursor_down", "Cursor down", show=False, id="cursor_down"),
    Binding("pageup", "page_up", "Page up", show=False, id="page_up"),
    Binding("pagedown", "page_down", "Page down", show=False, id="page_down"),
    Binding("home,g", "first", "First row", show=False, id="first"),
    Binding("end,G", "last", "Last row", show=False, id="last"),
]
"""The moves of every list, the VM list's included (binding ids as the keymap names them)."""


def row_matches(query: str, cells: Iterable[Text | str]) -> bool:
    """Whether every word of ``query`` is in the row's text (any cell, any case)."""
    text = " ".join(c.plain if isinstance(c, Text) else c for c in cells).casefold()
    return all(word in text for word in query.casefold().split())


class ListTable(DataTable[Any]):
    """A DataTable moved by the VM list's keys."""

    BINDINGS: ClassVar[list[BindingType]] = NAVIGATION

    def action_first(self) -> None:
        self.action_scroll_top()

    def action_last(self) -> None:
        self.action_scroll_bottom()


class ListFilter(Horizontal):
    """The `/` prompt under a list; hidden while empty and left. Escape clears and leaves it."""

    DEFAULT_CSS = """
    ListFilter { height: 1; background: $surface; }
    ListFilter.-idle { display: none; }
    ListFilter > Static { width: auto; color: $accent; text-style: bold; padding: 0 0 0 1; }
    ListFilter > Input { width: 1fr; height: 1; border: none; padding: 0; background: $surface; }
    ListFilter > Input:focus { border: none; background: $boost; }
    """

    class Changed(Message):
        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    def __init__(self) -> None:
        super().__init__(classes="-idle")

    def compose(self) -> ComposeResult:
        yield Static("/")
        prompt = Input(placeholder="filter: words in any column", compact=True, select_on_focus=False)
        prompt.cursor_blink = False
        yield prompt

    @property
    def prompt(self) -> Input:
        return self.query_one(Input)

    @property
    def value(self) -> str:
        return self.prompt.value

    def open(self) -> None:
        """Show and focus it at once: the keys after `/` are filter text however fast they come."""
        self.remove_class("-idle")
        self.screen.set_focus(self.prompt)

    def close(self, clear: bool = False) -> None:
        if clear:
            self.prompt.value = ""
        self.set_class(not self.prompt.value, "-idle")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(event.value))


class ListScreen(Screen[None]):
    """A screen of one :class:`ListTable` and its `/` filter: :meth:`refilter` shows its rows again;
    its Back binding runs :meth:`action_leave`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="filter", priority=True),
    ]

    @property
    def filter_query(self) -> str:
        return self.query_one(ListFilter).value

    def refilter(self) -> None:
        """Show the rows matching :attr:`filter_query` (each screen knows its rows)."""
        raise NotImplementedError

    def action_filter(self) -> None:
        bar = self.query_one(ListFilter)
        if self.focused is bar.prompt:  # the open prompt takes `/` as text
            raise SkipAction()
        bar.open()

    def action_leave(self) -> None:
        """Escape: from the prompt, clear it and go back to the list; else leave the screen."""
        bar = self.query_one(ListFilter)
        if self.focused is bar.prompt:
            bar.close(clear=True)
            self.set_focus(self.query_one(ListTable))
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(ListFilter).close()
        self.set_focus(self.query_one(ListTable))

    def on_list_filter_changed(self, event: ListFilter.Changed) -> None:
        self.refilter()
