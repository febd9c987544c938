"""The share links just made: one row per VM, a QR code of the selected link, copy one or all of
them with OSC 52, save them as CSV.

A link's URL holds its token and is shown only here, once: the event log names links by id.
The QR code is drawn with half blocks (two modules per character cell), black on white whatever
the terminal's colours, inside a quiet zone, so a phone scans it straight from the terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from core.links import SharedLink, ShareResult
from core.model import VM
from core.text import count, csv_text
from tui import format as fmt
from tui.screens.confirm import ConfirmScreen
from tui.widgets.listing import ListFilter, ListScreen, ListTable, row_matches

QUIET_ZONE = 2  # modules of white around the code: scanners want some; 80x24 has room for 2
QR_STYLE = Style(color="#000000", bgcolor="#ffffff")  # explicit: a theme's "black" may be grey
SHARE_CSV_COLUMNS = ("vm", "owner", "url", "id", "expires")
_HALF_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_lines(data: str, quiet_zone: int = QUIET_ZONE) -> list[str]:
    """The QR code of ``data`` as text: ``█`` dark over dark, ``▀`` dark over light, ``▄`` light
    over dark, a space light over light (meant for black on white)."""
    import segno  # ~60 ms: when a code is drawn, not when the TUI starts

    code = segno.make(data, error="l", micro=False)  # segno raises the level while the size allows
    rows = [[bool(module) for module in row] for row in code.matrix_iter(scale=1, border=quiet_zone)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    return ["".join(_HALF_BLOCKS[top, bottom] for top, bottom in zip(upper, lower, strict=True))
            for upper, lower in zip(rows[::2], rows[1::2], strict=True)]


class QRCode(Static):
    """A QR code drawn with half blocks; ``show("")`` clears it."""

    DEFAULT_CSS = """
    QRCode { width: auto; height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.data = ""
        self.lines: list[str] = []

    def show(self, data: str) -> None:
        self.data = data
        self.lines = qr_lines(data) if data else []
        self.update(Text("\n".join(self.lines), QR_STYLE, no_wrap=True, overflow="crop"))


class ShareScreen(ListScreen):
    """The links of one share: VM, URL, expiry and id; the QR code of the row under the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy the link", id="share_copy"),
        Binding("a", "copy_all", "Copy all", id="share_copy_all"),
        Binding("s", "save_csv", "Save as CSV", id="share_save_csv"),
        Binding("escape", "leave", "Back", id="share_close"),
    ]

    def __init__(self, result: ShareResult, note: str = "", *, owners: Mapping[str, str] | None = None,
                 save_dir: Path | None = None) -> None:
        """``owners``: VM UUID -> owner, for the CSV; ``save_dir``: where "save as CSV" writes."""
        super().__init__()
        self.result = result
        self.links = list(result.links)
        self.shown = self.links  # those the filter lets through
        self.note = note
        self.owners = dict(owners or {})
        self.save_dir = save_dir
        self.saved: Path | None = None  # the last CSV written

    def compose(self) -> ComposeResult:
        title = f"Console links: {count(len(self.links), 'VM')}, for {self.result.ttl}"
        yield Static(Text(title, "bold"), id="share-title")
        with Horizontal(id="share-body"):
            with Vertical(id="share-left"):
                yield ListTable(id="share-links", cursor_type="row", zebra_stripes=True)
                yield Static(id="share-selected")
                yield Static(self._notes(), id="share-notes")
            yield QRCode(id="share-qr")
        yield ListFilter()
        yield Footer(compact=True)

    def _notes(self) -> Text:
        notes = Text()
        for name, why in self.result.errors:
            notes.append(f"{fmt.printable(name)}: no link: {fmt.printable(why)}\n", "red")
        if self.note:
            notes.append(self.note + "\n", "yellow")
        notes.append("Each link opens its VM's screen for whoever holds it, until it expires or "
                     "you revoke it (C in the VM list). c copies the selected link, a all of them "
                     "(OSC 52); s saves them as CSV (the URLs are shown only here).", "dim")
        return notes

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("VM", "URL", "EXPIRES", "ID")
        self.refilter()
        table.focus()

    def refilter(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.shown = [link for link in self.links
                      if row_matches(self.filter_query, (fmt.printable(link.vm_name), link.url, link.id))]
        for link in self.shown:  # Text cells: a str cell would be read as markup
            table.add_row(Text(fmt.printable(link.vm_name)), Text(link.url), Text(link.expires),
                          Text(link.id), key=link.id)
        self.show(0)

    @property
    def selected(self) -> SharedLink | None:
        row = self.query_one(DataTable).cursor_row
        return self.shown[row] if 0 <= row < len(self.shown) else None

    @property
    def qr(self) -> QRCode:
        return self.query_one(QRCode)

    def show(self, row: int) -> None:
        link = self.shown[row] if 0 <= row < len(self.shown) else None
        details = Text()
        if link is not None:
            details.append(fmt.printable(link.vm_name), "bold")
            details.append(f"  expires {link.expires}  id {link.id}\n")
            details.append(link.url)
        self.query_one("#share-selected", Static).update(details)
        self.qr.show(link.url if link is not None else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show(event.cursor_row)

    def action_copy(self) -> None:
        link = self.selected
        if link is None:
            return
        self.app.copy_to_clipboard(link.url)  # OSC 52: tmux passes it on with `set-clipboard on`
        self.notify(f"The link of {fmt.printable(link.vm_name)} is on the clipboard (OSC 52; in tmux: "
                    "set -g set-clipboard on).", title="Copied", markup=False)

    def all_lines(self) -> str:
        """One line per link: the VM's name, a tab, its URL (what "copy all" puts on the clipboard)."""
        return "".join(f"{fmt.printable(link.vm_name)}\t{link.url}\n" for link in self.links)

    def csv(self) -> str:
        return csv_text(SHARE_CSV_COLUMNS, [(link.vm_name, self.owners.get(link.vm_uuid, ""), link.url,
                                             link.id, link.expires) for link in self.links])

    def action_copy_all(self) -> None:
        self.app.copy_to_clipboard(self.all_lines())
        self.notify(f"{count(len(self.links), 'link')} on the clipboard, a line each: VM, tab, URL "
                    "(OSC 52; in tmux: set -g set-clipboard on).", title="Copied", markup=False)

    def action_save_csv(self) -> None:
        """Write the links to a new file of their own, readable by this user only: the URLs hold
        the tokens."""
        if self.save_dir is None:
            return
        path = self.save_dir / f"share-links-{time.strftime('%Y%m%d-%H%M%S')}-{self.links[0].id}.csv"
        try:
            self.save_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(self.csv())
        except OSError as exc:
            self.notify(f"{path}: {exc.strerror or exc}", title="Not saved", severity="error", markup=False)
            return
        self.saved = path
        self.notify(f"{count(len(self.links), 'link')} saved to {path} (mode 0600).", title="Saved",
                    markup=False)


class RevokeScreen(ConfirmScreen):
    """Confirms revoking every console link of the VMs it lists."""

    def __init__(self, vms: Sequence[VM], *, server: bool) -> None:
        super().__init__(f"Revoke the console links of {count(len(vms), 'VM')}?",
                         "every share link of each VM stops working; the consoles open through them "
                         "close " + ("at once" if server else "when the console server next checks "
                                     "(none answers now)"), "Revoke links", vms=vms)
