"""Confirmation of a destructive action, listing every VM it will touch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from core.lifecycle import Action, confirmation_word
from core.model import VM
from core.text import count
from tui import format as fmt

CONSEQUENCES = {
    Action.HALT: "asks each guest to shut down (ACPI); a guest that ignores it for {timeout:g} s "
                 "is forced off",
    Action.DESTROY: "forces each VM off at once, like pulling the plug: unsaved work is lost",
    Action.REBOOT: "reboots each running guest",
    Action.DELETE: "forces each VM off, then removes it, the disks only it uses (never a "
                   "template) and its student folder",
    Action.RESET: "gives each VM a fresh disk from its template: everything written since is lost, "
                  "its snapshots too; a running VM is restarted",
    Action.REVERT: "takes each VM back to its snapshot {snapshot}: everything written since is "
                   "lost. Each stays running, paused or shut off as it is now, and the vCPUs or "
                   "memory of requests approved since are put back (from the next boot)",
}


def vm_lines(vms: Sequence[VM]) -> list[Text]:
    """A line a VM: name, state, owner and class, each in a column as wide as its widest cell."""
    cells = [(fmt.printable(vm.name), vm.state.value, fmt.printable(vm.meta.owner or ""),
              fmt.printable(vm.meta.lab_class or "")) for vm in vms]
    widths = [max((cell_len(row[i]) for row in cells), default=0) for i in range(3)]
    lines = []
    for vm, (name, state, owner, lab_class) in zip(vms, cells, strict=True):
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(name + " " * (widths[0] - cell_len(name)), "bold")
        line.append("  " + state.ljust(widths[1]), fmt.STATE_STYLES[vm.state])
        line.append("  " + owner + " " * (widths[2] - cell_len(owner)))
        line.append(f"  {lab_class}", "dim")
        line.rstrip()
        lines.append(line)
    return lines


class ConfirmScreen(ModalScreen[bool]):
    """Returns True to go ahead. Cancel has the focus, so a stray Enter changes nothing.

    ``lines`` are what it touches (a VM a line); :meth:`for_action` asks before an action on VMs.
    ``no`` names the safe answer ("Cancel", or "Wait" before quitting with actions under way).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm", id="confirm_yes"),
        Binding("n,escape", "cancel", "Cancel", id="confirm_no"),
    ]

    def __init__(self, title: str, consequence: str, yes: str, *, vms: Sequence[VM] = (),
                 lines: Sequence[Text] = (), no: str = "Cancel", word: str = "") -> None:
        """``no``: the label of the way back; ``word``: what must be typed to go ahead (a class's
        name, a count), for the actions that cannot be undone on many VMs; without it, y does."""
        super().__init__()
        self.word = word
        self.title_text = title
        self.consequence = consequence
        self.yes = yes
        self.no = no
        self.vms = list(vms)
        self.lines = [*vm_lines(self.vms), *lines]

    @classmethod
    def for_action(cls, action: Action, vms: Sequence[VM], halt_timeout: float = 60.0, *,
                   snapshot: str = "", every_vm: Sequence[VM] = ()) -> ConfirmScreen:
        """``every_vm``: the lab's VMs, to tell a whole class (whose name must be typed to delete it)."""
        consequence = CONSEQUENCES.get(action, "").format(timeout=halt_timeout,
                                                          snapshot=fmt.printable(snapshot))
        return cls(f"{action.value.capitalize()} {count(len(vms), 'VM')}?", consequence,
                   action.value.capitalize(), vms=vms,
                   word=confirmation_word(action.value, vms, every_vm or vms))

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.title_text, "bold"), id="confirm-title")
            if self.consequence:
                yield Static(Text(self.consequence), id="confirm-consequence")
            with VerticalScroll(id="confirm-list"):
                for line in self.lines:
                    yield Static(line, classes="confirm-vm")
            if self.word:
                what = "the class's name" if not self.word.isdigit() else "how many VMs"
                yield Static(Text.assemble(f"This cannot be undone. Type {what}, ",
                                           (fmt.printable(self.word), "bold"), ", to go ahead:"),
                             id="confirm-ask")
                yield Input(placeholder=fmt.printable(self.word), id="confirm-word", compact=True)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.no} (esc)" if self.word else f"{self.no} (n)", id="cancel", compact=True)
                yield Button(self.yes if self.word else f"{self.yes} (y)", id="confirm", variant="error",
                             compact=True, disabled=bool(self.word))

    def on_mount(self) -> None:
        if self.word:  # a stray Enter there changes nothing either: only the word goes ahead
            self.query_one("#confirm-word", Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    @property
    def typed(self) -> bool:
        """Whether what must be typed (if anything) is."""
        return not self.word or self.query_one("#confirm-word", Input).value.strip() == self.word

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#confirm", Button).disabled = not self.typed

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.dismiss(False)

    def action_confirm(self) -> None:
        if self.typed:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
