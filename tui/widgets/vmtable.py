"""The VM list: a line-API widget that renders only the rows on screen.

Picked by measurement (1,000 VMs, 160x50, this project's 2-core machine): Textual's DataTable
took ~320 ms to clear and re-add 1,000 rows (its column-measuring pass on idle), far over the
50 ms a filter keystroke may take. The model (:mod:`tui.tablemodel`) filters and sorts plain
records (1-3 ms for 1,000); this widget renders the ~50 visible lines; a keystroke is painted
~10 ms after the key (tmux, median ~26 ms including tmux's own ~9 ms). A state change re-renders
its own line, only when it is on screen (~0.2 ms to apply); the first full table is painted
~25 ms after the lab is open.

Every cell is written as a plain Segment (no markup), so hostile names read literally.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.model import VM, Change, Key, VMState
from core.query import Query
from tui import format as fmt
from tui.tablemodel import GUTTER, MARK, Layout, Row, TableModel, TableStatus, fit, line_pieces
from tui.textual_private import update_scrollbars
from tui.widgets.listing import NAVIGATION


class VMTable(ScrollView, can_focus=True):
    """The live list of VMs: draws a :class:`TableModel` (filter, sort, marks and a cursor, kept
    by VM key across updates) and repaints only what changed on screen."""

    BINDINGS: ClassVar[list[BindingType]] = NAVIGATION  # the moves of every list

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "vmtable--header", "vmtable--cursor", "vmtable--marked", "vmtable--placeholder",
    }

    DEFAULT_CSS = """
    VMTable {
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
        overflow-y: scroll;
    }
    VMTable > .vmtable--header { text-style: bold; background: $panel; color: $text; }
    VMTable > .vmtable--cursor { text-style: reverse; }
    VMTable:focus > .vmtable--cursor { text-style: reverse bold; }
    VMTable > .vmtable--marked { background: $secondary 35%; text-style: bold; }
    VMTable > .vmtable--placeholder { color: $text-muted; text-style: italic; }
    """

    class StatusChanged(Message):
        """Counts, sort and filter changed (for the status line)."""

        def __init__(self, status: TableStatus) -> None:
            super().__init__()
            self.status = status

    def __init__(self, *, now: Callable[[], float] = time.time, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(name=name, id=id, classes=classes)
        self.now = now
        self.placeholder = "no VMs"
        self.model = TableModel()
        self._strips: dict[Key, tuple[tuple[Any, ...], Strip]] = {}
        self._strips_layout: Layout | None = None  # the layout the cached strips were drawn for
        self._status: TableStatus | None = None
        self._styles: dict[tuple[VMState, bool, bool], Style] = {}

    # -- reading (the model's, for the screen and the tests) --
    @property
    def _rows(self) -> dict[Key, Row]:
        return self.model.rows

    @property
    def marked(self) -> set[Key]:
        return self.model.marked

    @property
    def sort_column(self) -> str:
        return self.model.sort_column

    @property
    def sort_reverse(self) -> bool:
        return self.model.sort_reverse

    @property
    def cursor_row(self) -> int:
        return self.model.cursor

    @property
    def cursor_vm(self) -> VM | None:
        return self.model.cursor_vm

    def visible_vms(self) -> list[VM]:
        return self.model.visible_vms()

    def all_vms(self) -> list[VM]:
        return self.model.all_vms()

    def get(self, key: Key) -> VM | None:
        return self.model.get(key)

    def state_counts(self) -> Counter[VMState]:
        return self.model.state_counts()

    def targets(self) -> list[VM]:
        """What an action applies to: the marked VMs (shown first, in table order), else the cursor's."""
        return self.model.targets()

    @property
    def columns(self) -> list[str]:
        """The keys of the columns shown, in order."""
        return self.model.columns(self._width())

    @property
    def viewers(self) -> dict[str, int] | None:
        return self.model.viewers

    def viewers_text(self, vm: VM) -> str:
        return self.model.viewers_text(vm)

    def row_text(self, index: int) -> str:
        """The plain text of one visible row as rendered (for tests and screen readers)."""
        return self._render_row(self.model.order[index], index, self._width()).text

    @property
    def status(self) -> TableStatus | None:
        return self._status

    # -- feeding --
    def set_vms(self, vms: Iterable[VM]) -> None:
        """Replace every row (the first load, and after a reconnection)."""
        self.model.set_vms(vms)
        self._show_order()
        if self.is_mounted:  # once the table is on screen: the first filter keystroke stays quick
            self.call_after_refresh(self.model.prepare_filter)

    def apply(self, changes: Sequence[Change]) -> None:
        """Apply inventory changes in place: only rows that changed on screen are re-rendered."""
        applied = self.model.apply(changes)
        for key in applied.removed:
            self._strips.pop(key, None)
        if applied.widths:
            self.refresh()
        if applied.reordered:
            self._rebuild()
        else:
            for key in applied.dirty:
                self._refresh_key(key)
            self._post_status()

    def set_query(self, text: str) -> Query:
        """Filter; the cursor goes to the first match (as in k9s), so what is typed is what shows."""
        if self.model.set_query(text):
            self._show_order()
        return self.model.query

    def cycle_sort(self) -> str:
        column = self.model.cycle_sort()
        self._show_order()
        return column

    def sort_by(self, column: str, reverse: bool | None = None) -> str:
        self.model.sort_by(column, reverse)
        self._show_order()
        return column

    def reverse_sort(self) -> bool:
        reverse = self.model.reverse_sort()
        self._show_order()
        return reverse

    def set_viewers(self, counts: dict[str, int] | None) -> None:
        """Open consoles by VM UUID (None: no server answers); repaints only when they changed,
        and then only the rows whose count moved render anew (the others come from the cache)."""
        if self.model.set_viewers(counts):
            self.refresh()

    # -- marks --
    def toggle_mark(self) -> None:
        key = self.model.toggle_mark()
        if key is None:
            return
        self._refresh_key(key)
        self.action_cursor_down()
        self._post_status()

    def mark_visible(self) -> int:
        count = self.model.mark_visible()
        self.refresh()
        self._post_status()
        return count

    def clear_marks(self) -> int:
        count = self.model.clear_marks()
        self.refresh()
        self._post_status()
        return count

    # -- cursor --
    def move_cursor(self, row: int) -> None:
        if not self.model.order:
            self.model.move_cursor(row)
            return
        previous = self.model.move_cursor(row)
        current = self.model.cursor_key
        if previous is not None and previous != current:
            self._refresh_key(previous)
        assert current is not None
        self._refresh_key(current)
        self._scroll_to_cursor()

    def move_to(self, key: Key) -> bool:
        index = self.model.position(key)
        if index is not None:
            self.move_cursor(index)
        return index is not None

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.model.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.model.cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.model.cursor - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(self.model.cursor + self._page())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self.model.order) - 1)

    def _scroll_to_cursor(self) -> None:
        if not self.is_mounted:
            return
        rows = self._page()
        top = round(self.scroll_y)
        cursor = self.model.cursor
        if cursor < top:
            self.scroll_to(y=cursor, animate=False, immediate=True)
        elif cursor >= top + rows:
            self.scroll_to(y=cursor - rows + 1, animate=False, immediate=True)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(round(self.scroll_y) + event.y - 1)

    # -- internals --
    def _width(self) -> int:
        return self.scrollable_content_region.width or self.size.width

    def _layout(self, width: int) -> Layout:
        """The model's layout at ``width``; a new one drops the strips drawn for the old."""
        layout = self.model.layout(width)
        if layout is not self._strips_layout:
            self._strips_layout = layout
            self._strips.clear()
        return layout

    def _rebuild(self) -> None:
        """Filter and sort every VM into the shown order, keeping the cursor on its VM; repaint."""
        self.model.rebuild()
        self._show_order()

    def _show_order(self) -> None:
        """The model has a new order: scroll size, cursor in view, repaint, status line."""
        self._set_virtual_size()
        self._scroll_to_cursor()
        self.refresh()
        self._post_status()

    def _set_virtual_size(self) -> None:
        """Set the scrollable size without the layout pass a ``virtual_size`` assignment starts.

        The widget's own size does not change with its row count, and the scrollbar is always
        shown (``overflow-y: scroll``), so a screen-wide reflow and repaint per filter keystroke
        would buy nothing.
        """
        size = Size(self._width(), len(self.model.order) + 1)
        if size != self.virtual_size:
            self.set_reactive(ScrollView.virtual_size, size)
            if self.is_mounted:
                update_scrollbars(self, size)

    def _refresh_key(self, key: Key) -> None:
        index = self.model.position(key)
        if index is None:
            return
        y = index - round(self.scroll_y) + 1
        if 1 <= y < self.scrollable_content_region.height:
            self.refresh(Region(0, y, self._width(), 1))

    def _post_status(self) -> None:
        status = self.model.status()
        if status != self._status:
            self._status = status
            self.post_message(self.StatusChanged(status))

    def on_resize(self, _event: events.Resize) -> None:
        self._set_virtual_size()
        self._scroll_to_cursor()

    def tick(self) -> None:
        """Once a second: re-render the rows on screen whose uptime text moved on."""
        order = self.model.order
        if not order:
            return
        top = round(self.scroll_y)
        now = self.now()
        rows = self.model.rows
        for key in order[top:top + self._page()]:
            vm = rows[key].vm
            if vm.state.is_active and (vm.started_at is not None or vm.halting_until is not None):
                cached = self._strips.get(key)
                if cached is None or cached[0][-1] != (fmt.state(vm, now), fmt.uptime(vm, now)):
                    self._refresh_key(key)

    # -- rendering --
    def render_line(self, y: int) -> Strip:
        width = self._width()
        if y == 0:
            return self._render_header(width)
        order = self.model.order
        index = round(self.scroll_y) + y - 1
        if index >= len(order):
            if index == 0:
                message = self.placeholder if not self.model.rows else \
                    f"no VM matches the filter {self.model.query.text!r}"
                style = self.get_component_rich_style("vmtable--placeholder")
                return Strip([Segment(fit(" " * GUTTER + fmt.printable(message), width, False),
                                      style)], width)
            return Strip.blank(width, self.rich_style)
        return self._render_row(order[index], index, width)

    def _render_header(self, width: int) -> Strip:
        style = self.get_component_rich_style("vmtable--header")
        layout = self._layout(width)
        pieces = line_pieces(" " * GUTTER, self.model.header_cells(layout), width, layout.gap)
        return Strip([Segment(piece, style) for piece in pieces], width)

    def _render_row(self, key: Key, index: int, width: int) -> Strip:
        model = self.model
        row = model.rows[key]
        layout = self._layout(width)
        marked = key in model.marked
        cursor = index == model.cursor
        now = self.now()
        clock = (fmt.state(row.vm, now), fmt.uptime(row.vm, now))  # what the tick compares
        viewers = model.viewers_text(row.vm)
        signature = (row, marked, cursor, self.has_focus, width, viewers, clock)  # the clock's last
        cached = self._strips.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        style = self._row_style(fmt.style_state(row.vm), marked, cursor)
        cells = model.row_cells(row, layout, clock[1], viewers, clock[0])
        pieces = line_pieces(MARK if marked else " ", cells, width, layout.gap)
        strip = Strip([Segment(piece, style) for piece in pieces], width)
        if len(self._strips) > 2000:
            self._strips.clear()
        self._strips[key] = (signature, strip)
        return strip

    def _row_style(self, state: VMState, marked: bool, cursor: bool) -> Style:
        """Cached: ``rich_style`` walks the DOM, far too slow to ask for every row."""
        key = (state, marked, cursor)
        style = self._styles.get(key)
        if style is None:
            style = self.rich_style + fmt.STATE_STYLES.get(state, Style())
            if marked:
                style += self.get_component_rich_style("vmtable--marked", partial=True)
            if cursor:
                style += self.get_component_rich_style("vmtable--cursor", partial=True)
            self._styles[key] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def on_focus(self) -> None:
        self._styles.clear()
        if self.model.cursor_key is not None:
            self._refresh_key(self.model.cursor_key)

    def on_blur(self) -> None:
        self._styles.clear()
        if self.model.cursor_key is not None:
            self._refresh_key(self.model.cursor_key)
