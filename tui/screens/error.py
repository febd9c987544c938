"""Shown when the hypervisor cannot be reached: what went wrong, and retry or quit."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui import format as fmt


class ConnectErrorScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", id="retry"),
    ]

    def __init__(self, title: str, message: str, uri: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.uri = uri

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(Text(self.title_text, "bold"), id="error-title")
            yield Static(Text(fmt.printable(self.message, multiline=True)), id="error-message")
            yield Static(Text.assemble(("URI: ", "dim"), fmt.printable(self.uri)), id="error-uri")
            yield Static(Text("Press r to try again, q to quit. Set the URI with -c URI or "
                              "LIBVIRT_DEFAULT_URI.", "dim"), id="error-help")
        yield Footer(compact=True)

    def action_retry(self) -> None:
        self.dismiss(None)
        self.app.call_later(self.app.run_action, "connect")
