"""Students' resource requests, answered by the operator.

Requests are made on the web portal (another process), so the screen looks at the shared database
every couple of seconds for a change (one cheap query). Approving a vCPU or memory request writes
it into the VM's definition (:meth:`core.lab.Lab.apply_request`, effective at the next boot);
the answer is recorded, audited and mailed to the student when SMTP is set up.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from core.errors import VMManagerError
from core.lab import Lab
from core.records import Kind, Request, RequestStore, Status
from core.text import count, format_time
from tui import format as fmt
from tui.screens.prompt import PromptScreen
from tui.widgets.listing import ListFilter, ListScreen, ListTable, row_matches

POLL_INTERVAL = 2.0
_STATUS_STYLE = {Status.PENDING: "bold yellow", Status.APPROVED: "green", Status.REJECTED: "red"}


class RequestsScreen(ListScreen):
    """Pending requests first, then the answered ones; ``a`` approves, ``x`` rejects (with a word).
    The selected request is shown whole under the table (its reason wraps)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "leave", "Back", id="requests_back"),
        Binding("a", "answer(True)", "Approve", id="requests_approve"),
        Binding("x", "answer(False)", "Reject", id="requests_reject"),
        Binding("f", "toggle_answered", "Show answered", id="requests_answered"),
    ]

    COLUMNS = ("#", "Status", "Student", "Asks for", "Reason", "Made", "Answer")

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab
        self.store = RequestStore(lab.settings.database_path)
        self.requests: list[Request] = []
        self.show_answered = False
        self._version: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Resource requests", "bold"), id="requests-title")
        table = ListTable(id="requests-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*self.COLUMNS)
        yield table
        yield Static(id="requests-detail")
        yield ListFilter()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.reload()
        self.set_interval(POLL_INTERVAL, self.reload)

    def on_unmount(self) -> None:
        self.store.close()

    def reload(self, *, force: bool = False) -> None:
        version = self.store.version()
        if version == self._version and not force:
            return
        self._version = version
        found = self.store.list(status=None if self.show_answered else Status.PENDING)
        self.requests = sorted(found, key=lambda r: (r.status is not Status.PENDING, -r.id))
        self._show()

    def _show(self) -> None:
        table = self.query_one(DataTable)
        selected = self.selected()
        table.clear()
        query = self.filter_query
        for r in self.requests:
            # Text, never str: a str cell is read as markup, and names and reasons are students' words
            cells = (str(r.id), Text(r.status.value, _STATUS_STYLE[r.status]),
                     Text(fmt.printable(r.username)), Text(fmt.printable(r.summary())),
                     Text(fmt.printable(r.reason[:60])),
                     format_time(r.created), Text(fmt.printable(r.answer or (r.answered_by or ""))))
            if row_matches(query, (*cells, fmt.printable(r.reason))):
                table.add_row(*cells, key=str(r.id))
        if selected is not None and str(selected.id) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected.id)))
        self.show_selected()

    def refilter(self) -> None:
        self._show()

    def show_selected(self) -> None:
        """The count, and the selected request whole: at 80 columns its reason column is cut."""
        what = "request" if self.show_answered else "pending request"
        shown = self.query_one(DataTable).row_count
        text = Text(count(len(self.requests), what) if self.requests else f"No {what}s.", "dim")
        if shown < len(self.requests):
            text.append(f", {shown} matching the filter", "dim")
        if (request := self.selected()) is not None:
            text.append("\n")
            text.append_text(request_text(request))
        self.query_one("#requests-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()

    def selected(self) -> Request | None:
        table = self.query_one(DataTable)
        if not 0 <= table.cursor_row < table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((r for r in self.requests if str(r.id) == key), None)

    def action_toggle_answered(self) -> None:
        self.show_answered = not self.show_answered
        self.reload(force=True)

    def action_answer(self, approve: bool) -> None:
        request = self.selected()
        if request is None or request.status is not Status.PENDING:
            self.notify("Choose a pending request.", severity="warning")
            return
        verb = "Approve" if approve else "Reject"
        effect = ("It goes into the VM's definition: the student has it from the VM's next boot."
                  if approve and request.kind is not Kind.NEW_VM else
                  "Make the VM with a new class (n) afterwards." if approve else
                  "The student sees your word on their page.")

        def answered(word: str | None) -> None:
            if word is not None:
                self.answer(request, approve, word)

        reason = f"Reason: {fmt.printable(request.reason)}\n" if request.reason else ""
        self.app.push_screen(PromptScreen(
            f"{verb} #{request.id}: {fmt.printable(request.summary())} for {fmt.printable(request.username)}",
            "a word for the student" + ("" if not approve else " (optional)"), explanation=reason + effect,
            required=not approve), answered)

    @work(group="requests", exit_on_error=False)
    async def answer(self, request: Request, approve: bool, word: str) -> None:
        try:
            done = await self.lab.answer_request(request.id, approve=approve, word=word)
        except VMManagerError as exc:
            self.notify(exc.message, title="Not answered", severity="error", markup=False)
        else:
            told = f" ({done.email} is told by mail)" if done.email and self.lab.settings.smtp.host else ""
            self.notify(f"#{done.id} {done.status}{told}", markup=False)
        self.reload(force=True)


def request_text(request: Request) -> Text:
    """One request whole: who asks for what, and why (wrapped), and the answer if any."""
    text = Text(f"#{request.id} {fmt.printable(request.username)}: {fmt.printable(request.summary())}",
                "bold")
    if request.reason:
        text.append("\n" + fmt.printable(request.reason))
    if request.answer or request.answered_by:
        by, answer = fmt.printable(request.answered_by or ""), fmt.printable(request.answer or "")
        text.append(f"\nanswer ({by}): {answer}", "dim")
    return text
