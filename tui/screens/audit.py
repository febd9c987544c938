"""The audit log, newest at the bottom, following new entries (from this TUI, the CLI and the web);
`/` filters it, and the selected entry is shown whole under the table (its detail wraps)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from core.records import AuditLog, Entry
from core.settings import Settings
from tui import format as fmt
from tui.widgets.listing import ListFilter, ListScreen, ListTable, row_matches

POLL_INTERVAL = 2.0
SHOWN = 500
_OUTCOME_STYLE = {"ok": "green", "failed": "bold red", "refused": "yellow", "abandoned": "bold yellow"}


class AuditScreen(ListScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "leave", "Back", id="audit_back"),
    ]

    COLUMNS = ("When", "Who", "From", "Action", "VM", "Outcome", "Detail")

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.log_db = AuditLog(settings.database_path)
        self.last_id = 0
        self.seen: tuple[int, float] = (0, 0.0)
        self.repeats: dict[int, int] = {}  # entry id -> repeats shown
        self.entries: dict[int, Entry] = {}  # the last SHOWN entries, by id, oldest first

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Audit log", "bold"), (f"  the last {SHOWN} entries, following new ones",
                                                           "dim")), id="audit-title")
        yield ListTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="audit-detail")
        yield ListFilter()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table: DataTable[Text | str] = self.query_one(DataTable)
        self.detail_column = table.add_columns(*self.COLUMNS)[-1]
        table.focus()
        self.follow()
        self.set_interval(POLL_INTERVAL, self.follow)

    def on_unmount(self) -> None:
        self.log_db.close()

    def follow(self) -> None:
        """Add what was recorded since the last look, and count the repeats of entries shown (one
        cheap query when nothing was)."""
        change = self.log_db.last_change()
        if change == self.seen:
            return
        self.seen = change
        entries = self.log_db.entries(limit=SHOWN)
        table: DataTable[Text | str] = self.query_one(DataTable)
        query = self.filter_query
        for entry in entries:
            if entry.id <= self.last_id and self.repeats.get(entry.id, entry.repeats) != entry.repeats:
                self.entries[entry.id] = entry
                if str(entry.id) in table.rows:
                    table.update_cell(str(entry.id), self.detail_column, row(entry)[-1])
                self.repeats[entry.id] = entry.repeats
        new = [e for e in entries if e.id > self.last_id]
        if not new:
            return
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        for entry in new:
            self.entries[entry.id] = entry
            self.repeats[entry.id] = entry.repeats
            if row_matches(query, cells := row(entry)):
                table.add_row(*cells, key=str(entry.id))
        while len(self.entries) > SHOWN:
            gone = next(iter(self.entries))
            del self.entries[gone]
            self.repeats.pop(gone, None)
            if str(gone) in table.rows:
                table.remove_row(str(gone))
        self.last_id = new[-1].id
        if at_end and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self.show_selected()

    def refilter(self) -> None:
        table: DataTable[Text | str] = self.query_one(DataTable)
        table.clear()
        query = self.filter_query
        for entry in self.entries.values():
            if row_matches(query, cells := row(entry)):
                table.add_row(*cells, key=str(entry.id))
        if table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self.show_selected()

    def selected(self) -> Entry | None:
        table = self.query_one(DataTable)
        if not 0 <= table.cursor_row < table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.entries.get(int(key or 0))

    def show_selected(self) -> None:
        """The selected entry in full under the table: at 80 columns its detail column is cut."""
        entry = self.selected()
        self.query_one("#audit-detail", Static).update(detail_text(entry) if entry else
                                                       Text("no entry matches the filter" if self.entries
                                                            else "", "dim"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()


def detail_text(entry: Entry) -> Text:
    """One entry whole: who, from where, what, which VM, how it went, and its detail (wrapped)."""
    text = Text()
    text.append(f"{fmt.printable(entry.action)} ", "bold")
    if entry.vm_name:
        text.append(f"{fmt.printable(entry.vm_name)} ", "bold")
    text.append(entry.outcome, _OUTCOME_STYLE.get(entry.outcome, ""))
    text.append(f"  by {fmt.printable(entry.user)} ({entry.source} {fmt.printable(entry.address)})", "dim")
    if entry.times:
        text.append(f"  {entry.times}", "dim")
    if entry.detail:
        text.append("\n" + fmt.printable(entry.detail))
    return text


def row(entry: Entry) -> tuple[Text | str, ...]:
    when = Text(fmt.printable(str(entry.as_json()["at"])[:19].replace("T", " ")), "dim")
    # Text, never str: a str cell is read as markup, and names and details are anyone's words.
    return (when, Text(fmt.printable(entry.user)), Text(f"{entry.source} {fmt.printable(entry.address)}"),
            Text(fmt.printable(entry.action)), Text(fmt.printable(entry.vm_name)),
            Text(entry.outcome, _OUTCOME_STYLE.get(entry.outcome, "")),
            Text(fmt.printable(" ".join(filter(None, (entry.detail[:80], entry.times))))))
