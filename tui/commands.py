"""The command palette (ctrl+p): every binding of the main screen, as a searchable command, found
by the words operators bring from elsewhere too (virsh, Proxmox, lazydocker: "shutdown", "power
off", "kill", "boot", "console"...), each saying what it does; then Textual's own commands.

Built from the same catalogue as the help screen, so a new binding appears in both; what each
does and its other words are in :data:`PALETTE`, by binding id (a test checks none is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import VMManagerApp

PALETTE_GROUPS = ("VM list", "Navigation", "Global")


class Words(NamedTuple):
    """What a command does (its help line; ``{timeout}``: the halt timeout) and the other words it
    is found by."""

    does: str
    also: tuple[str, ...] = ()


PALETTE: dict[str, Words] = {
    "details": Words("Disks, interfaces and IPs, graphics, owner, live figures of the VM",
                     ("info", "inspect", "show", "dominfo", "describe")),
    "filter": Words("Show only the VMs matching words, field:value or re:…", ("search", "find", "grep")),
    "mark": Words("Mark the VM under the cursor, for an action on many", ("select", "tag")),
    "mark_all": Words("Mark every VM shown", ("select all",)),
    "clear": Words("Clear the marks, then the filter", ("unmark", "unselect", "reset filter")),
    "sort_next": Words("Sort the list by the next column", ("order",)),
    "sort_reverse": Words("Reverse the sort", ("order", "descending")),
    "start": Words("Power the VM on", ("boot", "power on", "run", "turn on")),
    "halt": Words("Ask the guest to shut down (ACPI), then power it off after {timeout:g} s",
                  ("shutdown", "shut down", "stop", "acpi", "graceful")),
    "destroy": Words("Power the VM off at once, like pulling the plug: unsaved work is lost",
                     ("power off", "poweroff", "kill", "force off", "hard stop", "pull the plug")),
    "reboot": Words("Ask the guest to restart", ("restart",)),
    "suspend": Words("Pause the VM in memory (it keeps its state, uses no CPU)", ("pause", "freeze")),
    "resume": Words("Let a paused VM run again", ("unpause", "continue", "thaw", "unfreeze")),
    "delete": Words("Remove the VM, the disks only it uses and its student folder (never a template)",
                    ("remove", "undefine", "rm", "purge", "destroy vm")),
    "reset": Words("A fresh disk from the template: the exercise starts again", ("reimage", "wipe", "rebuild",
                                                                                  "recreate")),
    "snapshot": Words("Save the VM's disks (and memory) under a name, to go back to later",
                      ("checkpoint", "save", "snapshot create")),
    "revert": Words("Take the VM back to a named snapshot", ("rollback", "restore", "snapshot revert")),
    "new_class": Words("Make a class of VMs from a template and a roster", ("provision", "create", "clone",
                                                                            "new vm", "deploy")),
    "templates": Words("The templates, and whether QEMU can read their files", ("images", "base images")),
    "share": Words("A console link per VM, to open its screen in a browser", ("console", "vnc", "screen",
                                                                               "view", "link", "novnc")),
    "revoke_links": Words("End the VMs' console links; consoles open through them close",
                          ("close console", "unshare", "revoke")),
    "requests": Words("Students' requests for more vCPUs or memory: approve or reject",
                      ("tickets", "approve", "reject", "students")),
    "audit": Words("Who did what to which VM, when, from where, how it went", ("history", "journal", "who")),
    "toggle_log": Words("Show or hide the event log under the list", ("events", "messages")),
    "cursor_up": Words("Move up a VM", ("previous", "up")),
    "cursor_down": Words("Move down a VM", ("next", "down")),
    "page_up": Words("Move up a page"),
    "page_down": Words("Move down a page"),
    "first": Words("Go to the first VM", ("top", "home")),
    "last": Words("Go to the last VM", ("bottom", "end")),
    "help": Words("Every key, as currently mapped", ("keys", "shortcuts", "bindings")),
    "quit": Words("Leave VM Manager (asks first while actions are under way)", ("exit", "close")),
}


class Command(NamedTuple):
    name: str
    help: str
    callback: Callable[[], object]
    words: tuple[str, ...]


class VMCommands(Provider):
    """Our commands first, each with what it does and its key; then Textual's own (theme,
    screenshot…), after every one of ours in a search (one provider for both: the palette shows
    its providers' results in whatever order they come, and sorts only by score)."""

    def _commands(self) -> list[Command]:
        app: VMManagerApp = self.app  # type: ignore[assignment]
        timeout = (app.lab.settings if app.lab else app.settings).actions.halt_timeout
        commands = []
        for info in app.key_catalogue():
            if info.group not in PALETTE_GROUPS or info.binding_id == "command_palette":
                continue
            namespace = app.namespace_for(info.group)
            if namespace is None:
                continue
            words = PALETTE.get(info.binding_id, Words(info.description))
            keys = ", ".join(info.keys) or "no key"
            commands.append(Command(info.description, f"{words.does.format(timeout=timeout)}  ({keys})",
                                    partial(app.run_action, info.action, namespace), words.also))
        return commands

    def _system_commands(self) -> list[Command]:
        return [Command(c.title, c.help, c.callback, ()) for c in self.app.get_system_commands(self.screen)
                if c.discover]

    async def discover(self) -> Hits:
        for name, help_text, callback, _words in [*self._commands(), *self._system_commands()]:
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        """Ours scored in the upper half (by name or by one of its words), Textual's in the lower."""
        matcher = self.matcher(query)
        for name, help_text, callback, words in self._commands():
            by_name = matcher.match(name)
            by_word, word = max(((matcher.match(w), w) for w in words), default=(0.0, ""))
            if by_name >= by_word and by_name > 0:
                yield Hit(0.5 + by_name / 2, matcher.highlight(name), callback, text=name, help=help_text)
            elif by_word > 0:
                yield Hit(0.5 + by_word / 2, f"{name}  ({word})", callback, text=name, help=help_text)
        for name, help_text, callback, _words in self._system_commands():
            if (score := matcher.match(name)) > 0:
                yield Hit(score / 2, matcher.highlight(name), callback, text=name, help=help_text)
