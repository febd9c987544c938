"""Small modals asking for one value: typed (a snapshot name), checked before it is returned, or
chosen from a list (the snapshots a VM has)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from core.errors import VMManagerError
from tui import format as fmt


class PromptScreen(ModalScreen[str | None]):
    """Returns the value (stripped), or None when cancelled. Enter submits; a value ``check``
    refuses (by raising a VMManagerError) stays in the box with the reason under it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="prompt_cancel"),
    ]

    def __init__(self, title: str, label: str, *, explanation: str = "", value: str = "",
                 check: Callable[[str], object] | None = None, required: bool = True,
                 meaning: Callable[[str], str] | None = None) -> None:
        """``meaning`` says under the box, as it is typed, what the value means (``4h``: 4 hours)."""
        super().__init__()
        self.required = required
        self.title_text = title
        self.label = label
        self.explanation = explanation
        self.initial = value
        self.check = check
        self.meaning = meaning

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.title_text, "bold"), id="prompt-title")
            if self.explanation:
                yield Static(Text(self.explanation), id="prompt-explanation")
            yield Input(self.initial, placeholder=self.label, id="prompt-input", compact=True)
            yield Static(id="prompt-error")
            yield Static(Text("enter: go ahead   esc: cancel", "dim"), id="prompt-help")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._say_meaning(self.initial)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._say_meaning(event.value)

    def _say_meaning(self, value: str) -> None:
        if self.meaning is None:
            return
        try:
            said = Text(f"= {self.meaning(value)}", "green") if value.strip() else Text("")
        except VMManagerError as exc:
            said = Text(fmt.printable(exc.message), "dim")
        self.query_one("#prompt-error", Static).update(said)

    @property
    def error(self) -> str:
        return str(self.query_one("#prompt-error", Static).render())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        problem = "" if value or not self.required else f"{self.label}: enter a value (esc cancels)"
        if value and self.check is not None:
            try:
                self.check(value)
            except VMManagerError as exc:
                problem = exc.message
        if problem:
            self.query_one("#prompt-error", Static).update(Text(fmt.printable(problem), "red"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    """Returns the chosen value, or None when cancelled (or when there is nothing to choose).
    Enter picks the highlighted choice; each choice is (value, label shown)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="prompt_cancel"),
    ]

    def __init__(self, title: str, choices: Sequence[tuple[str, Text]], *, explanation: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.choices = list(choices)
        self.explanation = explanation

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.title_text, "bold"), id="prompt-title")
            if self.explanation:
                yield Static(Text(self.explanation), id="prompt-explanation")
            yield OptionList(*(Option(label, id=str(n)) for n, (_value, label) in enumerate(self.choices)),
                             id="choice-list", compact=True)
            yield Static(Text("↑↓: choose   enter: go ahead   esc: cancel", "dim"), id="prompt-help")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        options.highlighted = 0 if self.choices else None

    @property
    def values(self) -> list[str]:
        return [value for value, _label in self.choices]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[int(event.option.id or 0)][0])

    def action_cancel(self) -> None:
        self.dismiss(None)
