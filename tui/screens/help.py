"""Every key, generated from the bindings in force (a remapped key shows as remapped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from core import query
from tui import format as fmt
from tui.keymap import KeyInfo


def help_text(infos: Sequence[KeyInfo], keymap_path: str) -> Text:
    text = Text()
    group = None
    width = max((len(" ".join(i.keys)) for i in infos), default=8) + 2
    for info in infos:
        if info.group != group:
            group = info.group
            text.append(("\n" if text else "") + group + "\n", "bold underline")
        keys = " ".join(info.keys) or "(unbound)"
        text.append(f"  {keys:<{width}}", "bold cyan")
        text.append(f"{info.description or info.action:<28}")
        text.append(f" {info.binding_id}\n", "dim")
    text.append("\nFilter syntax (/)\n", "bold underline")
    for example, meaning in query.SYNTAX:
        text.append(f"  {example:<20}", "bold cyan")
        text.append(f"{meaning}\n")
    text.append("\nColumns\n", "bold underline")
    for column, meaning in (fmt.MEMORY_HELP, fmt.DISK_HELP):
        text.append(f"  {column:<20}", "bold cyan")
        text.append(f"{meaning}\n")
    text.append("\nRemap keys in ", "dim")
    text.append(keymap_path, "dim bold")
    text.append(" by binding id (right column):\n", "dim")
    text.append('  [keymap]\n  halt = "H"\n  cursor_down = ["j", "n"]\n', "dim")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close help", id="close_help"),
    ]

    def __init__(self, infos: Sequence[KeyInfo], keymap_path: str) -> None:
        super().__init__()
        self.infos = list(infos)
        self.keymap_path = keymap_path

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("Keys", "bold"), id="help-title")
            yield Static(help_text(self.infos, self.keymap_path), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()
