"""The VM list: a line-API widget that renders only the rows on screen.

Picked by measurement (1,000 VMs, 160x50, this project's 2-core machine): Textual's DataTable
took ~320 ms to clear and re-add 1,000 rows (its column-measuring pass on idle), far over the
50 ms a filter keystroke may take. This widget filters and sorts plain records (1-3 ms for 1,000)
and renders the ~50 visible lines; a keystroke is painted ~10 ms after the key (tmux, median
~26 ms including tmux's own ~9 ms). A state change re-renders its own line, only when it is on
screen (~0.2 ms to apply); the first full table is painted ~25 ms after the lab is open.

Every cell is written as a plain Segment (no markup), so hostile names read literally.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.model import VM, Change, Key, VMState
from core.query import Fields, Query, fields_of, parse
from tui import format as fmt


class Column(NamedTuple):
    key: str
    title: str
    minimum: int
    maximum: int
    right: bool = False
    flexible: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("name", "NAME", 10, 40, flexible=True),
    Column("host", "HOST", 6, 16, flexible=True),
    Column("state", "STATE", 5, 11),
    Column("owner", "OWNER", 5, 16, flexible=True),
    Column("class", "CLASS", 5, 12, flexible=True),
    Column("ip", "IP", 4, 18, flexible=True),
    Column("vcpus", "VCPU", 4, 4, right=True),
    Column("memory", "MEM", 3, 11, right=True),
    Column("cpu", "CPU%", 4, 5, right=True),
    Column("uptime", "UPTIME", 6, 6, right=True),
    Column("viewers", "VIEW", 4, 4, right=True),  # browser consoles open: "—" without a server
)
SORTABLE = tuple(c.key for c in COLUMNS if c.key != "viewers")
_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}
_UPTIME = _INDEX["uptime"]
_VIEWERS = _INDEX["viewers"]
NO_COUNT = "—"  # no console server answers: nobody can be counted
_SHRINK_ORDER = ("ip", "class", "owner", "host", "name")
GUTTER = 1  # the mark column: "●" or a space
MARK = "●"


def _cells(vm: VM) -> tuple[str, ...]:
    """Every cell but the uptime (the clock's) and the viewers (the console server's), as plain,
    printable strings."""
    return (fmt.printable(vm.name), fmt.printable(vm.host), vm.state.value,
            fmt.text_or_dash(vm.meta.owner), fmt.text_or_dash(vm.meta.lab_class), fmt.ips(vm),
            str(vm.vcpus), fmt.memory(vm), fmt.percent(vm.figures.cpu_percent), "", "")


def _missing_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


_SORT_KEYS: dict[str, Callable[[VM], Any]] = {
    "name": lambda vm: (vm.name.casefold(), vm.key),
    "host": lambda vm: (vm.host.casefold(), vm.name.casefold(), vm.key),
    "state": lambda vm: (vm.state.value, vm.name.casefold(), vm.key),
    "owner": lambda vm: (vm.meta.owner.casefold() or "\U0010ffff", vm.name.casefold(), vm.key),
    "class": lambda vm: (vm.meta.lab_class.casefold() or "\U0010ffff", vm.name.casefold(), vm.key),
    "ip": lambda vm: (vm.ips[0] if vm.ips else "\U0010ffff", vm.name.casefold(), vm.key),
    "vcpus": lambda vm: (vm.vcpus, vm.name.casefold(), vm.key),
    "memory": lambda vm: (vm.memory_mib, vm.name.casefold(), vm.key),
    "cpu": lambda vm: (_missing_last(vm.figures.cpu_percent), vm.name.casefold(), vm.key),
    "uptime": lambda vm: (_missing_last(None if vm.started_at is None else -vm.started_at),
                          vm.name.casefold(), vm.key),
}


class _Widths(dict[str, int]):
    """Cell widths of cell texts, looked up in C: most cells ("running", "512M", "—") repeat, and
    a non-ASCII text is measured once (``cell_len`` walks it character by character)."""

    def __missing__(self, text: str) -> int:
        if len(self) > 20_000:
            self.clear()
        width = self[text] = len(text) if text.isascii() else cell_len(text)
        return width


_WIDTHS = _Widths()


@dataclass(slots=True, eq=False)
class _Row:
    """One VM with what the table needs to lay out and draw it; replaced whenever the VM changes.

    The filter's lowercased fields are made on the first filter that reads them: the first
    table and a storm of changes under no filter never pay for them.
    """

    vm: VM
    cells: tuple[str, ...]
    widths: tuple[int, ...]
    _fields: tuple[Fields, str] | None = None

    @classmethod
    def of(cls, vm: VM) -> _Row:
        cells = _cells(vm)
        return cls(vm, cells, tuple(map(_WIDTHS.__getitem__, cells)))

    def filter_fields(self) -> tuple[Fields, str]:
        found = self._fields
        if found is None:
            found = self._fields = fields_of(self.vm)
        return found

    def matches(self, query: Query) -> bool:
        return query.matches(*self.filter_fields())


def _fit(text: str, width: int, right: bool) -> str:
    """Pad or truncate (with an ellipsis) to exactly ``width`` cells."""
    length = len(text) if text.isascii() else _WIDTHS[text]
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - length)
    return pad + text if right else text + pad


def _strip(gutter: str, cells: list[str], width: int, style: Style) -> Strip:
    """One segment per cell: a wide glyph can never shift the next column (terminal or SVG)."""
    segments = [Segment(gutter, style)]
    used = GUTTER
    for cell in cells:
        text = " " + cell
        length = len(text) if text.isascii() else _WIDTHS[text]
        if used + length > width:
            text = set_cell_size(text, width - used)
            length = width - used
        segments.append(Segment(text, style))
        used += length
        if used >= width:
            break
    if used < width:
        segments.append(Segment(" " * (width - used), style))
    return Strip(segments, width)


@dataclass(frozen=True, slots=True)
class TableStatus:
    total: int
    shown: int
    marked: int
    marked_hidden: int
    sort: str
    reverse: bool
    query: str
    query_error: str


class VMTable(ScrollView, can_focus=True):
    """The live list of VMs: filter, sort, marks and a cursor, kept by VM key across updates."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Cursor up", show=False, id="cursor_up"),
        Binding("down,j", "cursor_down", "Cursor down", show=False, id="cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="page_down"),
        Binding("home,g", "first", "First VM", show=False, id="first"),
        Binding("end,G", "last", "Last VM", show=False, id="last"),
    ]

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
        self.marked: set[Key] = set()
        self.query: Query = parse("")
        self.sort_column = "name"
        self.sort_reverse = False
        self._rows: dict[Key, _Row] = {}
        self._counts: Counter[VMState] = Counter()
        self._order: list[Key] = []
        self._position: dict[Key, int] = {}
        self._cursor = 0
        self._cursor_key: Key | None = None
        self._content: list[int] = [len(c.title) for c in COLUMNS]
        self._width_counts: list[Counter[int]] = [Counter() for _ in COLUMNS]
        self._hosts: Counter[str] = Counter()
        self._multi_host = False
        self._layout: list[tuple[int, int]] = []  # (column index, width)
        self._layout_for: tuple[Any, ...] = ()
        self._strips: dict[Key, tuple[tuple[Any, ...], Strip]] = {}
        self._status: TableStatus | None = None
        self._styles: dict[tuple[VMState, bool, bool], Style] = {}
        self._viewers: dict[str, int] | None = None  # open consoles by VM UUID; None: no server

    # -- reading --
    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def cursor_vm(self) -> VM | None:
        if not self._order:
            return None
        return self._rows[self._order[self._cursor]].vm

    def visible_vms(self) -> list[VM]:
        return [self._rows[key].vm for key in self._order]

    def all_vms(self) -> list[VM]:
        return [row.vm for row in self._rows.values()]

    def get(self, key: Key) -> VM | None:
        row = self._rows.get(key)
        return row.vm if row is not None else None

    def state_counts(self) -> Counter[VMState]:
        return +self._counts  # without the zero counts

    def targets(self) -> list[VM]:
        """What an action applies to: the marked VMs (shown first, in table order), else the cursor's."""
        if self.marked:
            shown = [key for key in self._order if key in self.marked]
            hidden = sorted((k for k in self.marked if k not in self._position and k in self._rows),
                            key=lambda k: _SORT_KEYS["name"](self._rows[k].vm))
            return [self._rows[key].vm for key in shown + hidden]
        vm = self.cursor_vm
        return [vm] if vm is not None else []

    @property
    def columns(self) -> list[str]:
        """The keys of the columns shown, in order."""
        return [COLUMNS[i].key for i, _ in self._ensure_layout()]

    @property
    def viewers(self) -> dict[str, int] | None:
        return self._viewers

    def viewers_text(self, vm: VM) -> str:
        return NO_COUNT if self._viewers is None else str(self._viewers.get(vm.uuid, 0))

    def row_text(self, index: int) -> str:
        """The plain text of one visible row as rendered (for tests and screen readers)."""
        return self._render_row(self._order[index], index, self._width()).text

    # -- feeding --
    def set_vms(self, vms: Iterable[VM]) -> None:
        """Replace every row (the first load, and after a reconnection)."""
        self._rows = {vm.key: _Row.of(vm) for vm in vms}
        rows = self._rows.values()
        self._counts = Counter(row.vm.state for row in rows)
        # one pass per column in C (Counter of an iterable), not a Python loop over every cell
        columns = list(zip(*(row.widths for row in rows), strict=True)) or [() for _ in COLUMNS]
        self._width_counts = [Counter(column) for column in columns]
        self._hosts = Counter(row.vm.host for row in rows)
        self.marked &= self._rows.keys()
        self._update_content()
        self._rebuild()
        if self.is_mounted:  # once the table is on screen: the first filter keystroke stays quick
            self.call_after_refresh(self._prepare_filter)

    def _prepare_filter(self) -> None:
        for row in self._rows.values():
            row.filter_fields()

    def apply(self, changes: Sequence[Change]) -> None:
        """Apply inventory changes in place: only rows that changed on screen are re-rendered."""
        rebuild = False
        widths = False
        dirty: list[Key] = []
        sort_key = _SORT_KEYS[self.sort_column]
        query = self.query
        counts = self._counts
        for change in changes:
            key = change.vm.key
            old = self._rows.get(key)
            if old is not None:
                counts[old.vm.state] -= 1
            if change.kind == "removed":
                if old is not None:
                    del self._rows[key]
                    self._tally(old, -1)
                    self.marked.discard(key)
                    self._strips.pop(key, None)
                    rebuild = widths = True
                continue
            row = _Row.of(change.vm)
            self._rows[key] = row
            counts[row.vm.state] += 1
            if old is None or row.widths != old.widths or row.vm.host != old.vm.host:
                if old is not None:
                    self._tally(old, -1)
                self._tally(row, 1)
                widths = True
            if old is None:
                rebuild = True
                continue
            shown = key in self._position
            if shown != (query.empty or row.matches(query)):
                rebuild = True
            elif shown:
                if sort_key(old.vm) != sort_key(row.vm):
                    rebuild = True
                elif row.cells != old.cells or row.vm.started_at != old.vm.started_at:
                    dirty.append(key)  # e.g. stats: only when a shown figure moved
        if widths and self._update_content():
            self.refresh()
        if rebuild:
            self._rebuild()
        else:
            for key in dirty:
                self._refresh_key(key)
            self._post_status()

    def set_query(self, text: str) -> Query:
        """Filter; the cursor goes to the first match (as in k9s), so what is typed is what shows."""
        if text != self.query.text:
            self.query = parse(text)
            self._cursor, self._cursor_key = 0, None
            self._rebuild()
        return self.query

    def cycle_sort(self) -> str:
        columns = [c for c in SORTABLE if c != "host" or self._multi_host]
        index = columns.index(self.sort_column) if self.sort_column in columns else -1
        return self.sort_by(columns[(index + 1) % len(columns)])

    def sort_by(self, column: str, reverse: bool | None = None) -> str:
        self.sort_column = column
        if reverse is not None:
            self.sort_reverse = reverse
        self._rebuild()
        return column

    def reverse_sort(self) -> bool:
        self.sort_reverse = not self.sort_reverse
        self._rebuild()
        return self.sort_reverse

    def set_viewers(self, counts: dict[str, int] | None) -> None:
        """Open consoles by VM UUID (None: no server answers); repaints only when they changed,
        and then only the rows whose count moved render anew (the others come from the cache)."""
        if counts != self._viewers:
            self._viewers = counts
            self.refresh()

    # -- marks --
    def toggle_mark(self) -> None:
        vm = self.cursor_vm
        if vm is None:
            return
        self.marked.symmetric_difference_update({vm.key})
        self._refresh_key(vm.key)
        self.action_cursor_down()
        self._post_status()

    def mark_visible(self) -> int:
        self.marked.update(self._order)
        self.refresh()
        self._post_status()
        return len(self._order)

    def clear_marks(self) -> int:
        count = len(self.marked)
        self.marked.clear()
        self.refresh()
        self._post_status()
        return count

    # -- cursor --
    def move_cursor(self, row: int) -> None:
        if not self._order:
            self._cursor, self._cursor_key = 0, None
            return
        row = max(0, min(row, len(self._order) - 1))
        previous = self._cursor_key
        self._cursor, self._cursor_key = row, self._order[row]
        if previous is not None and previous != self._cursor_key:
            self._refresh_key(previous)
        self._refresh_key(self._cursor_key)
        self._scroll_to_cursor()

    def move_to(self, key: Key) -> bool:
        index = self._position.get(key)
        if index is not None:
            self.move_cursor(index)
        return index is not None

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self._cursor - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(self._cursor + self._page())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def _scroll_to_cursor(self) -> None:
        if not self.is_mounted:
            return
        rows = self._page()
        top = round(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + rows:
            self.scroll_to(y=self._cursor - rows + 1, animate=False, immediate=True)

    async def _on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(round(self.scroll_y) + event.y - 1)

    # -- internals --
    def _tally(self, row: _Row, sign: int) -> None:
        """Count a row's cell widths (and host) in or out: the widest cell of a column is the
        largest width with a count, found without a pass over 1,000 rows."""
        for counter, width in zip(self._width_counts, row.widths, strict=True):
            counter[width] += sign
            if not counter[width]:
                del counter[width]
        self._hosts[row.vm.host] += sign
        if not self._hosts[row.vm.host]:
            del self._hosts[row.vm.host]

    def _update_content(self) -> bool:
        """Widest cell of every column over all VMs (not only the shown ones: no jumping columns)."""
        content = [max(len(c.title), max(counter, default=0))
                   for c, counter in zip(COLUMNS, self._width_counts, strict=True)]
        content[_UPTIME] = COLUMNS[_UPTIME].maximum
        content[_VIEWERS] = COLUMNS[_VIEWERS].maximum
        multi_host = len(self._hosts) > 1
        changed = content != self._content or multi_host != self._multi_host
        self._content, self._multi_host = content, multi_host
        return changed

    def _width(self) -> int:
        return self.scrollable_content_region.width or self.size.width

    def _ensure_layout(self) -> list[tuple[int, int]]:
        width = self._width()
        signature = (width, tuple(self._content), self._multi_host)
        if signature != self._layout_for:
            self._layout_for = signature
            self._layout = self._compute_layout(width)
            self._strips.clear()
        return self._layout

    def _compute_layout(self, width: int) -> list[tuple[int, int]]:
        shown = [i for i, c in enumerate(COLUMNS) if c.key != "host" or self._multi_host]
        widths = {i: max(COLUMNS[i].minimum, min(COLUMNS[i].maximum, self._content[i])) for i in shown}
        excess = GUTTER + sum(widths.values()) + len(shown) - width
        flexible = [_INDEX[k] for k in _SHRINK_ORDER if _INDEX[k] in widths]
        while excess > 0:
            room = [(widths[i] - COLUMNS[i].minimum, -n, i) for n, i in enumerate(flexible)
                    if widths[i] > COLUMNS[i].minimum]
            if not room:
                break
            _, _, widest = max(room)
            widths[widest] -= 1
            excess -= 1
        return [(i, widths[i]) for i in shown]

    def _rebuild(self) -> None:
        """Filter and sort every VM into the shown order, keeping the cursor on its VM."""
        query = self.query
        rows = self._rows
        keys: Iterable[Key] = rows if query.empty else (
            k for k, r in rows.items() if r.matches(query))
        sort_key = _SORT_KEYS[self.sort_column]
        self._order = sorted(keys, key=lambda k: sort_key(rows[k].vm), reverse=self.sort_reverse)
        self._position = {key: i for i, key in enumerate(self._order)}
        cursor = self._position.get(self._cursor_key) if self._cursor_key is not None else None
        if cursor is None:
            cursor = min(self._cursor, len(self._order) - 1) if self._order else 0
        self._cursor = cursor
        self._cursor_key = self._order[cursor] if self._order else None
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
        size = Size(self._width(), len(self._order) + 1)
        if size != self.virtual_size:
            self.set_reactive(ScrollView.virtual_size, size)
            if self.is_mounted:
                self._scroll_update(size)

    def _refresh_key(self, key: Key) -> None:
        index = self._position.get(key)
        if index is None:
            return
        y = index - round(self.scroll_y) + 1
        if 1 <= y < self.scrollable_content_region.height:
            self.refresh(Region(0, y, self._width(), 1))

    def _post_status(self) -> None:
        hidden = sum(1 for k in self.marked if k not in self._position)
        status = TableStatus(len(self._rows), len(self._order), len(self.marked), hidden,
                             self.sort_column, self.sort_reverse, self.query.text, self.query.error)
        if status != self._status:
            self._status = status
            self.post_message(self.StatusChanged(status))

    @property
    def status(self) -> TableStatus | None:
        return self._status

    def on_resize(self, _event: events.Resize) -> None:
        self._set_virtual_size()
        self._scroll_to_cursor()

    def tick(self) -> None:
        """Once a second: re-render the rows on screen whose uptime text moved on."""
        if not self._order:
            return
        top = round(self.scroll_y)
        now = self.now()
        for key in self._order[top:top + self._page()]:
            row = self._rows[key]
            if row.vm.started_at is not None and row.vm.state.is_active:
                cached = self._strips.get(key)
                if cached is None or cached[0][-1] != fmt.uptime(row.vm, now):  # the uptime
                    self._refresh_key(key)

    # -- rendering --
    def render_line(self, y: int) -> Strip:
        width = self._width()
        if y == 0:
            return self._render_header(width)
        index = round(self.scroll_y) + y - 1
        if index >= len(self._order):
            if index == 0:
                message = self.placeholder if not self._rows else \
                    f"no VM matches the filter {self.query.text!r}"
                style = self.get_component_rich_style("vmtable--placeholder")
                return Strip([Segment(_fit(" " * GUTTER + fmt.printable(message), width, False),
                                      style)], width)
            return Strip.blank(width, self.rich_style)
        return self._render_row(self._order[index], index, width)

    def _render_header(self, width: int) -> Strip:
        style = self.get_component_rich_style("vmtable--header")
        cells = []
        for i, w in self._ensure_layout():
            column = COLUMNS[i]
            title = column.title
            if column.key == self.sort_column:
                title += "▼" if self.sort_reverse else "▲"
            cells.append(_fit(title, w, column.right and column.key != self.sort_column))
        return _strip(" " * GUTTER, cells, width, style)

    def _render_row(self, key: Key, index: int, width: int) -> Strip:
        row = self._rows[key]
        layout = self._ensure_layout()
        marked = key in self.marked
        cursor = index == self._cursor
        uptime = fmt.uptime(row.vm, self.now())
        viewers = self.viewers_text(row.vm)
        signature = (row, marked, cursor, self.has_focus, width, viewers, uptime)  # uptime last: tick
        cached = self._strips.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        style = self._row_style(row.vm.state, marked, cursor)
        cells = row.cells
        texts = [uptime if i == _UPTIME else viewers if i == _VIEWERS else cells[i] for i, _ in layout]
        strip = _strip(MARK if marked else " ",
                       [_fit(text, w, COLUMNS[i].right) for text, (i, w) in zip(texts, layout, strict=True)],
                       width, style)
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
        if self._cursor_key is not None:
            self._refresh_key(self._cursor_key)

    def on_blur(self) -> None:
        self._styles.clear()
        if self._cursor_key is not None:
            self._refresh_key(self._cursor_key)
