"""The VM list's model: which rows, filtered and sorted, the marks, the cursor (kept by VM key),
the columns and their widths for a terminal width, and each line's text. No Textual here:
:class:`tui.widgets.vmtable.VMTable` draws it, and tests drive it without an app.

Filtering and sorting plain records costs 1-3 ms for 1,000 VMs. Cells are plain printable
strings (no markup), so hostile names read literally; their widths are measured once, and a
column's widest cell is kept by counting widths, with no pass over every row.

It stays whole: the rows, their order and the layout share one column table and one running
count of cell widths, which each change updates in a single pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from rich.cells import cell_len, set_cell_size

from core.model import VM, Change, Key, VMState
from core.query import Fields, Query, fields_of, parse
from tui import format as fmt


class Column(NamedTuple):
    """One column: its width bounds (never under its title, so a header is never cut) and its
    rank (0 is kept longest: a narrow terminal drops the highest ranks first, before the name is
    cut; a wide one shows them all)."""

    key: str
    title: str
    minimum: int
    maximum: int
    rank: int
    right: bool = False
    flexible: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("name", "NAME", 10, 40, 0, flexible=True),
    Column("host", "HOST", 6, 16, 1, flexible=True),  # only with more than one host
    Column("state", "STATE", 5, 13, 2),  # "halting… 999s" at most
    Column("owner", "OWNER", 5, 16, 3, flexible=True),
    Column("class", "CLASS", 5, 12, 4, flexible=True),
    Column("template", "TEMPLATE", 8, 16, 11, flexible=True),
    Column("ip", "IP", 4, 18, 8, flexible=True),
    Column("vcpus", "VCPU", 4, 4, 7, right=True),
    Column("memory", "MEM", 3, 11, 6, right=True),
    Column("cpu", "CPU%", 4, 5, 5, right=True),
    Column("uptime", "UPTIME", 6, 6, 9, right=True),
    Column("viewers", "VIEW", 4, 4, 10, right=True),  # browser consoles open: "—" without a server
    Column("created", "CREATED", 10, 10, 12),
    Column("disk", "DISK", 4, 11, 13, right=True),  # a running VM's: bulk stats have no shut-off VMs
)
SORTABLE = tuple(c.key for c in COLUMNS if c.key != "viewers")
_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}
_UPTIME = _INDEX["uptime"]
_VIEWERS = _INDEX["viewers"]
_NAME = _INDEX["name"]
_STATE = _INDEX["state"]
NO_COUNT = "—"  # no console server answers: nobody can be counted
_SHRINK_ORDER = ("ip", "template", "class", "owner", "host", "name")
NAME_KEPT = 24
"""How wide the name column stays while columns are dropped for room: longer names are cut
only when every droppable column has gone (and are shown whole when there is room)."""
KEPT_RANK = 2
"""Columns of this rank and under (name, host, state) are never dropped: they shrink instead."""
GAP_MAX = 3
"""Cells between two columns on a wide terminal, when every column shows with room to spare."""
SPARE_FOR_GAPS = 40
"""Cells left over (every column shown) from which the gaps widen: an 80-column table stays tight."""
GUTTER = 1  # the mark column: "●" or a space
MARK = "●"


class Layout(tuple[tuple[int, int], ...]):
    """The columns shown, as (index in COLUMNS, width), left to right, and the cells between two
    columns (``gap``)."""

    gap: int = 1

    def __new__(cls, columns: Iterable[tuple[int, int]], gap: int = 1) -> Layout:
        layout = super().__new__(cls, columns)
        layout.gap = gap
        return layout


def _cells(vm: VM) -> tuple[str, ...]:
    """Every cell but the uptime (the clock's) and the viewers (the console server's), as plain,
    printable strings; a halting VM's state (the clock's too) as wide as it gets."""
    meta = vm.meta
    return (fmt.printable(vm.name), fmt.printable(vm.host),
            fmt.HALTING_WIDEST if fmt.halting(vm) else vm.state.value,
            fmt.text_or_dash(meta.owner), fmt.text_or_dash(meta.lab_class),
            fmt.text_or_dash(meta.template), fmt.ips(vm), str(vm.vcpus), fmt.memory(vm),
            fmt.percent(vm.figures.cpu_percent), "", "", fmt.created(meta.created), fmt.disk(vm))


def _missing_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


SORT_KEYS: dict[str, Callable[[VM], Any]] = {
    "name": lambda vm: (vm.name.casefold(), vm.key),
    "host": lambda vm: (vm.host.casefold(), vm.name.casefold(), vm.key),
    "state": lambda vm: (vm.state.value, vm.name.casefold(), vm.key),
    "owner": lambda vm: (vm.meta.owner.casefold() or "\U0010ffff", vm.name.casefold(), vm.key),
    "class": lambda vm: (vm.meta.lab_class.casefold() or "\U0010ffff", vm.name.casefold(), vm.key),
    "template": lambda vm: (vm.meta.template.casefold() or "\U0010ffff", vm.name.casefold(), vm.key),
    "ip": lambda vm: (vm.ips[0] if vm.ips else "\U0010ffff", vm.name.casefold(), vm.key),
    "vcpus": lambda vm: (vm.vcpus, vm.name.casefold(), vm.key),
    "memory": lambda vm: (vm.memory_mib, vm.name.casefold(), vm.key),
    "cpu": lambda vm: (_missing_last(vm.figures.cpu_percent), vm.name.casefold(), vm.key),
    "uptime": lambda vm: (_missing_last(None if vm.started_at is None else -vm.started_at),
                          vm.name.casefold(), vm.key),
    "created": lambda vm: (vm.meta.created or "\U0010ffff", vm.name.casefold(), vm.key),
    "disk": lambda vm: (_missing_last(vm.figures.disk_used_mib), vm.name.casefold(), vm.key),
}
"""What each column sorts by; ties go by name, then key, so the order never depends on arrival."""


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
class Row:
    """One VM with what the table needs to lay out and draw it; replaced whenever the VM changes.

    The filter's lowercased fields are made on the first filter that reads them: the first
    table and a storm of changes under no filter never pay for them.
    """

    vm: VM
    cells: tuple[str, ...]
    widths: tuple[int, ...]
    _fields: tuple[Fields, str] | None = None

    @classmethod
    def of(cls, vm: VM) -> Row:
        cells = _cells(vm)
        return cls(vm, cells, tuple(map(_WIDTHS.__getitem__, cells)))

    def filter_fields(self) -> tuple[Fields, str]:
        found = self._fields
        if found is None:
            found = self._fields = fields_of(self.vm)
        return found

    def matches(self, query: Query) -> bool:
        return query.matches(*self.filter_fields())


def fit(text: str, width: int, right: bool) -> str:
    """Pad or truncate (with an ellipsis) to exactly ``width`` cells."""
    length = len(text) if text.isascii() else _WIDTHS[text]
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - length)
    return pad + text if right else text + pad


def line_pieces(gutter: str, cells: Iterable[str], width: int, gap: int = 1) -> list[str]:
    """A line as pieces exactly ``width`` cells long in all: the gutter, a space and the first
    cell, then ``gap`` spaces before each next one, cut at the edge, padded to it. The widget
    draws one segment per piece, so a wide glyph can never shift the next column (terminal or
    SVG)."""
    pieces = [gutter]
    used = GUTTER
    space = " "
    for cell in cells:
        text = space + cell
        space = " " * gap
        length = len(text) if text.isascii() else _WIDTHS[text]
        if used + length > width:
            text = set_cell_size(text, width - used)
            length = width - used
        pieces.append(text)
        used += length
        if used >= width:
            break
    if used < width:
        pieces.append(" " * (width - used))
    return pieces


def compute_layout(content: Sequence[int], multi_host: bool, width: int, sort: str = "") -> Layout:
    """The columns that fit ``width``, each as wide as its widest cell within its bounds.

    Columns are dropped by rank, highest first (VIEW, UPTIME, IP… before anything is cut), while
    the name is held at up to :data:`NAME_KEPT` cells; the name then takes the room left, up to
    its widest cell. Only when nothing is left to drop do the flexible columns give way, the one
    with the most room first (IP, template, class, owner, host, then name on a tie). The host
    column shows only with more than one host; the sorted column's title keeps room for its
    arrow. Every column shown with room to spare (a wide terminal): the gaps widen, up to
    :data:`GAP_MAX`.
    """
    shown = [i for i, c in enumerate(COLUMNS) if c.key != "host" or multi_host]
    floors = {i: len(COLUMNS[i].title) + (COLUMNS[i].key == sort) for i in shown}
    floors = {i: max(COLUMNS[i].minimum, floor) for i, floor in floors.items()}
    widths = {i: max(floors[i], min(max(COLUMNS[i].maximum, floors[i]), content[i])) for i in shown}
    wanted_name = widths[_NAME]
    widths[_NAME] = max(floors[_NAME], min(wanted_name, NAME_KEPT))

    def excess() -> int:
        return GUTTER + sum(widths.values()) + len(widths) - width

    for i in sorted(shown, key=lambda i: COLUMNS[i].rank, reverse=True):
        if excess() <= 0 or COLUMNS[i].rank <= KEPT_RANK:
            break
        del widths[i]
    widths[_NAME] = min(wanted_name, widths[_NAME] + max(0, -excess()))
    over = excess()
    flexible = [_INDEX[k] for k in _SHRINK_ORDER if _INDEX[k] in widths]
    while over > 0:
        room = [(widths[i] - floors[i], -n, i) for n, i in enumerate(flexible) if widths[i] > floors[i]]
        if not room:
            break
        _, _, widest = max(room)
        widths[widest] -= 1
        over -= 1
    gap = 1
    spare = -excess()
    if len(widths) == len(shown) and spare >= SPARE_FOR_GAPS:
        gap = min(GAP_MAX, 1 + spare // max(1, len(widths) - 1))
    return Layout(((i, widths[i]) for i in shown if i in widths), gap)


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


class Applied(NamedTuple):
    """What :meth:`TableModel.apply` changed, for the widget to repaint no more than that."""

    reordered: bool  # rows came, went, or moved: the order was made again
    widths: bool  # a column's widest cell (or the host column) changed: the layout may move
    dirty: list[Key]  # rows shown in place whose cells changed (when not reordered)
    removed: list[Key]


class TableModel:
    """The rows of the VM list, kept by VM key across updates, with a filter, a sort, marks and a
    cursor that stays on its VM."""

    def __init__(self) -> None:
        self.marked: set[Key] = set()
        self.query: Query = parse("")
        self.sort_column = "name"
        self.sort_reverse = False
        self.viewers: dict[str, int] | None = None  # open consoles by VM UUID; None: no server
        self._rows: dict[Key, Row] = {}
        self._counts: Counter[VMState] = Counter()
        self._order: list[Key] = []
        self._position: dict[Key, int] = {}
        self._cursor = 0
        self._cursor_key: Key | None = None
        self._content: list[int] = [len(c.title) for c in COLUMNS]
        self._width_counts: list[Counter[int]] = [Counter() for _ in COLUMNS]
        self._hosts: Counter[str] = Counter()
        self._multi_host = False
        self._layout = Layout(())
        self._layout_for: tuple[Any, ...] = ()

    # -- reading --
    @property
    def rows(self) -> dict[Key, Row]:
        """Every row by key, shown or not (do not change it: feed the model instead)."""
        return self._rows

    @property
    def order(self) -> list[Key]:
        """The keys of the rows shown, in order."""
        return self._order

    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def cursor_key(self) -> Key | None:
        return self._cursor_key

    @property
    def cursor_vm(self) -> VM | None:
        if not self._order:
            return None
        return self._rows[self._order[self._cursor]].vm

    @property
    def multi_host(self) -> bool:
        return self._multi_host

    def position(self, key: Key) -> int | None:
        """Where the VM is shown (0 first), or None when it is filtered out or gone."""
        return self._position.get(key)

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
                            key=lambda k: SORT_KEYS["name"](self._rows[k].vm))
            return [self._rows[key].vm for key in shown + hidden]
        vm = self.cursor_vm
        return [vm] if vm is not None else []

    def viewers_text(self, vm: VM) -> str:
        return NO_COUNT if self.viewers is None else str(self.viewers.get(vm.uuid, 0))

    def status(self) -> TableStatus:
        hidden = sum(1 for k in self.marked if k not in self._position)
        return TableStatus(len(self._rows), len(self._order), len(self.marked), hidden,
                           self.sort_column, self.sort_reverse, self.query.text, self.query.error)

    # -- feeding --
    def set_vms(self, vms: Iterable[VM]) -> None:
        """Replace every row (the first load, and after a reconnection); marks of VMs gone go."""
        self._rows = {vm.key: Row.of(vm) for vm in vms}
        rows = self._rows.values()
        self._counts = Counter(row.vm.state for row in rows)
        # one pass per column in C (Counter of an iterable), not a Python loop over every cell
        columns = list(zip(*(row.widths for row in rows), strict=True)) or [() for _ in COLUMNS]
        self._width_counts = [Counter(column) for column in columns]
        self._hosts = Counter(row.vm.host for row in rows)
        self.marked &= self._rows.keys()
        self._update_content()
        self.rebuild()

    def prepare_filter(self) -> None:
        """Make every row's filter fields now (once the table is drawn), not on the first keystroke."""
        for row in self._rows.values():
            row.filter_fields()

    def apply(self, changes: Sequence[Change]) -> Applied:
        """Apply inventory changes in place; the order is made again only when a row came, went,
        entered or left the filter, or moved in the sort."""
        reorder = False
        widths = False
        dirty: list[Key] = []
        removed: list[Key] = []
        sort_key = SORT_KEYS[self.sort_column]
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
                    removed.append(key)
                    reorder = widths = True
                continue
            row = Row.of(change.vm)
            self._rows[key] = row
            counts[row.vm.state] += 1
            if old is None or row.widths != old.widths or row.vm.host != old.vm.host:
                if old is not None:
                    self._tally(old, -1)
                self._tally(row, 1)
                widths = True
            if old is None:
                reorder = True
                continue
            shown = key in self._position
            if shown != (query.empty or row.matches(query)):
                reorder = True
            elif shown:
                if sort_key(old.vm) != sort_key(row.vm):
                    reorder = True
                elif row.cells != old.cells or row.vm.started_at != old.vm.started_at:
                    dirty.append(key)  # e.g. stats: only when a shown figure moved
        widths = widths and self._update_content()
        if reorder:
            self.rebuild()
        return Applied(reorder, widths, dirty, removed)

    def set_query(self, text: str) -> bool:
        """Filter; the cursor goes to the first match (as in k9s), so what is typed is what shows.
        False when the text is the one in force (nothing done)."""
        if text == self.query.text:
            return False
        self.query = parse(text)
        self._cursor, self._cursor_key = 0, None
        self.rebuild()
        return True

    def set_viewers(self, counts: dict[str, int] | None) -> bool:
        """Open consoles by VM UUID (None: no server answers); whether they changed."""
        if counts == self.viewers:
            return False
        self.viewers = counts
        return True

    # -- sort --
    def cycle_sort(self) -> str:
        """Sort by the next column shown at the last width laid out (all of them before the first
        layout; the host column only with more than one host)."""
        shown = {COLUMNS[i].key for i, _ in self._layout} if self._layout else set(SORTABLE)
        columns = [c for c in SORTABLE if c in shown and (c != "host" or self._multi_host)]
        index = columns.index(self.sort_column) if self.sort_column in columns else -1
        return self.sort_by(columns[(index + 1) % len(columns)])

    def sort_by(self, column: str, reverse: bool | None = None) -> str:
        self.sort_column = column
        if reverse is not None:
            self.sort_reverse = reverse
        self.rebuild()
        return column

    def reverse_sort(self) -> bool:
        self.sort_reverse = not self.sort_reverse
        self.rebuild()
        return self.sort_reverse

    # -- marks --
    def toggle_mark(self) -> Key | None:
        """Mark or unmark the cursor's VM; its key (None when no row is shown)."""
        vm = self.cursor_vm
        if vm is None:
            return None
        self.marked.symmetric_difference_update({vm.key})
        return vm.key

    def mark_visible(self) -> int:
        self.marked.update(self._order)
        return len(self._order)

    def clear_marks(self) -> int:
        count = len(self.marked)
        self.marked.clear()
        return count

    # -- cursor --
    def move_cursor(self, row: int) -> Key | None:
        """Put the cursor on shown row ``row`` (clamped); the key it left, when it was on one."""
        if not self._order:
            self._cursor, self._cursor_key = 0, None
            return None
        previous = self._cursor_key
        row = max(0, min(row, len(self._order) - 1))
        self._cursor, self._cursor_key = row, self._order[row]
        return previous

    def rebuild(self) -> None:
        """Filter and sort every VM into the shown order, keeping the cursor on its VM (else on
        the same line, within the rows left)."""
        query = self.query
        rows = self._rows
        keys: Iterable[Key] = rows if query.empty else (
            k for k, r in rows.items() if r.matches(query))
        sort_key = SORT_KEYS[self.sort_column]
        self._order = sorted(keys, key=lambda k: sort_key(rows[k].vm), reverse=self.sort_reverse)
        self._position = {key: i for i, key in enumerate(self._order)}
        cursor = self._position.get(self._cursor_key) if self._cursor_key is not None else None
        if cursor is None:
            cursor = min(self._cursor, len(self._order) - 1) if self._order else 0
        self._cursor = cursor
        self._cursor_key = self._order[cursor] if self._order else None

    # -- layout --
    def layout(self, width: int) -> Layout:
        """The columns shown at ``width`` and their widths; the same object until the width, a
        column's widest cell or the host count changes."""
        signature = (width, tuple(self._content), self._multi_host, self.sort_column)
        if signature != self._layout_for:
            self._layout_for = signature
            self._layout = compute_layout(self._content, self._multi_host, width, self.sort_column)
        return self._layout

    def columns(self, width: int) -> list[str]:
        """The keys of the columns shown at ``width``, in order."""
        return [COLUMNS[i].key for i, _ in self.layout(width)]

    def header_cells(self, layout: Layout) -> list[str]:
        """The column titles, the sorted one with its arrow (and then left-aligned)."""
        cells = []
        for i, w in layout:
            column = COLUMNS[i]
            title = column.title
            if column.key == self.sort_column:
                title += "▼" if self.sort_reverse else "▲"
            cells.append(fit(title, w, column.right and column.key != self.sort_column))
        return cells

    def row_cells(self, row: Row, layout: Layout, uptime: str, viewers: str, state: str) -> list[str]:
        """A row's cells fitted to ``layout``, with the uptime, viewer count and state given."""
        live = {_UPTIME: uptime, _VIEWERS: viewers, _STATE: state}
        cells = row.cells
        texts = [live.get(i, cells[i]) for i, _ in layout]
        return [fit(text, w, COLUMNS[i].right) for text, (i, w) in zip(texts, layout, strict=True)]

    def header_text(self, width: int) -> str:
        """The header line as drawn at ``width`` (plain text)."""
        layout = self.layout(width)
        return "".join(line_pieces(" " * GUTTER, self.header_cells(layout), width, layout.gap))

    def row_text(self, index: int, width: int, now: float) -> str:
        """Shown row ``index`` as drawn at ``width`` at time ``now`` (plain text, mark included)."""
        key = self._order[index]
        row = self._rows[key]
        layout = self.layout(width)
        cells = self.row_cells(row, layout, fmt.uptime(row.vm, now), self.viewers_text(row.vm),
                               fmt.state(row.vm, now))
        return "".join(line_pieces(MARK if key in self.marked else " ", cells, width, layout.gap))

    # -- internals --
    def _tally(self, row: Row, sign: int) -> None:
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
