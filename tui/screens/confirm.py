"""Confirmation of a destructive action, listing every VM it will touch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from core.lifecycle import Action
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


def vm_line(vm: VM) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(fmt.printable(vm.name), "bold")
    line.append(f"  {vm.state.value}", fmt.STATE_STYLES[vm.state])
    if vm.meta.owner:
        line.append(f"  {fmt.printable(vm.meta.owner)}")
    if vm.meta.lab_class:
        line.append(f"  {fmt.printable(vm.meta.lab_class)}", "dim")
    return line


class ConfirmScreen(ModalScreen[bool]):
    """Returns True to go ahead. Cancel has the focus, so a stray Enter changes nothing.

    ``lines`` are what it touches (a VM a line); :meth:`for_action` asks before an action on VMs.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm", id="confirm_yes"),
        Binding("n,escape", "cancel", "Cancel", id="confirm_no"),
    ]

    def __init__(self, title: str, consequence: str, yes: str, *, vms: Sequence[VM] = (),
                 lines: Sequence[Text] = ()) -> None:
        super().__init__()
        self.title_text = title
        self.consequence = consequence
        self.yes = yes
        self.vms = list(vms)
        self.lines = [*map(vm_line, self.vms), *lines]

    @classmethod
    def for_action(cls, action: Action, vms: Sequence[VM], halt_timeout: float = 60.0, *,
                   snapshot: str = "") -> ConfirmScreen:
        consequence = CONSEQUENCES.get(action, "").format(timeout=halt_timeout,
                                                          snapshot=fmt.printable(snapshot))
        return cls(f"{action.value.capitalize()} {count(len(vms), 'VM')}?", consequence,
                   action.value.capitalize(), vms=vms)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.title_text, "bold"), id="confirm-title")
            if self.consequence:
                yield Static(Text(self.consequence), id="confirm-consequence")
            with VerticalScroll(id="confirm-list"):
                for line in self.lines:
                    yield Static(line, classes="confirm-vm")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (n)", id="cancel", compact=True)
                yield Button(f"{self.yes} (y)", id="confirm", variant="error", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
