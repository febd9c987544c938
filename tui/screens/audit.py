"""The audit log, newest at the bottom, following new entries (from this TUI, the CLI and the web)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from core.records import AuditLog, Entry
from core.settings import Settings
from tui import format as fmt

POLL_INTERVAL = 2.0
SHOWN = 500
_OUTCOME_STYLE = {"ok": "green", "failed": "bold red", "refused": "yellow", "abandoned": "bold yellow"}


class AuditScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="audit_back"),
    ]

    COLUMNS = ("When", "Who", "From", "Action", "VM", "Outcome", "Detail")

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.log_db = AuditLog(settings.database_path)
        self.last_id = 0
        self.seen: tuple[int, float] = (0, 0.0)
        self.repeats: dict[int, int] = {}  # entry id -> repeats shown

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Audit log", "bold"), (f"  the last {SHOWN} entries, following new ones",
                                                           "dim")), id="audit-title")
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
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
        for entry in entries:
            if entry.id <= self.last_id and self.repeats.get(entry.id, entry.repeats) != entry.repeats:
                table.update_cell(str(entry.id), self.detail_column, row(entry)[-1])
                self.repeats[entry.id] = entry.repeats
        new = [e for e in entries if e.id > self.last_id]
        if not new:
            return
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        for entry in new:
            table.add_row(*row(entry), key=str(entry.id))
            self.repeats[entry.id] = entry.repeats
        while table.row_count > SHOWN:
            gone = table.coordinate_to_cell_key((0, 0)).row_key
            table.remove_row(gone)
            self.repeats.pop(int(gone.value or 0), None)
        self.last_id = new[-1].id
        if at_end:
            table.move_cursor(row=table.row_count - 1)


def row(entry: Entry) -> tuple[Text | str, ...]:
    when = Text(fmt.printable(str(entry.as_json()["at"])[:19].replace("T", " ")), "dim")
    # Text, never str: a str cell is read as markup, and names and details are anyone's words.
    return (when, Text(fmt.printable(entry.user)), Text(f"{entry.source} {fmt.printable(entry.address)}"),
            Text(fmt.printable(entry.action)), Text(fmt.printable(entry.vm_name)),
            Text(entry.outcome, _OUTCOME_STYLE.get(entry.outcome, "")),
            Text(fmt.printable(" ".join(filter(None, (entry.detail[:80], entry.times))))))
