"""The operator TUI: opens the lab (or takes an open one), feeds its screens, closes it on exit.

Entry points: :func:`run_app` for the CLI, :class:`VMManagerApp` for tests and embedding.
With ``serve``, the app also runs the console server (``vm-manager serve``) on its own loop, for
a one-person lab: started once the lab is open, stopped before it closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.dom import DOMNode
from textual.notifications import SeverityLevel
from textual.signal import Signal

from core import web
from core.errors import VMManagerError
from core.lab import InFlight, Lab
from core.links import load_secret_key
from core.model import VM, Change, HostStatus, Key, Update
from core.records import Actor, NewRequests
from core.settings import Settings
from core.text import count
from tui import format as fmt
from tui.coalesce import Coalescer
from tui.commands import VMCommands
from tui.history import StatsHistory
from tui.keymap import KeyInfo, Keymap, binding_ids, catalogue, load_keymap
from tui.screens.audit import AuditScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.error import ConnectErrorScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.prompt import PromptScreen
from tui.screens.provision import ProvisionScreen
from tui.screens.requests import RequestsScreen
from tui.screens.share import ShareScreen
from tui.screens.templates import TemplatesScreen
from tui.widgets.listing import ListScreen
from tui.widgets.vmtable import VMTable

REQUESTS_INTERVAL = 5.0
"""Seconds between two looks for students' new requests."""


class VMManagerApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "VM Manager"
    # one provider: ours, then Textual's own (theme, screenshot...), in that order
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {VMCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="help"),
        Binding("ctrl+p", "command_palette", "Commands", show=False, id="command_palette",
                priority=True),
        Binding("q,ctrl+q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, settings: Settings | None = None, uri: str | None = None, *,
                 lab: Lab | None = None, opening: concurrent.futures.Future[Lab] | None = None,
                 clock: Callable[[], datetime] = datetime.now,
                 log_visible: bool | None = None, serve: tuple[str, int] | None = None) -> None:
        """Give ``settings`` (and ``uri``) to have the app open the lab, or an open ``lab``, or
        an ``opening`` already under way (``Lab.open_soon(...)``).

        The app closes the lab on exit either way. ``clock`` stamps the event log (tests fix it);
        ``log_visible`` forces the event log on or off (default: on when the terminal is tall);
        ``serve`` = (host, port) runs the console server in the app while the lab is open.
        """
        super().__init__()
        if lab is None and settings is None:
            raise ValueError("VMManagerApp needs settings (to open the lab) or an open lab")
        self.settings: Settings = settings or lab.settings  # type: ignore[union-attr]
        self.uri = uri
        self.lab: Lab | None = lab
        self.clock = clock
        self.log_visible = log_visible
        self.history = StatsHistory()
        self.vm_updates: Signal[dict[Key, VM | None]] = Signal(self, "vm-updates")
        self.keymap: Keymap = {}
        self._coalescer = Coalescer(self._apply)
        self._unsubscribe: Callable[[], None] | None = None
        self._opening: concurrent.futures.Future[Lab] | None = opening
        self._unmounted = False
        self._heap_frozen = False
        self._new_requests: NewRequests | None = None
        self._clashes: set[frozenset[str]] = set()
        self.serve_at = serve
        self.server_url: str | None = None  # where the app's own console server answers
        self._server: asyncio.Task[None] | None = None
        self._server_stop = asyncio.Event()

    @property
    def main(self) -> MainScreen:
        return self.get_screen("main")  # type: ignore[return-value]

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification (screens' and widgets' too: theirs come here) through the one rule of
        :func:`core.text.printable`: a name or a message from outside shows its controls and bidi
        overrides escaped, wherever it was put together."""
        super().notify(fmt.printable(message, multiline=True), title=fmt.printable(title),
                       severity=severity, timeout=timeout, markup=markup)

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.uri or self.settings.connect_uri or "", self.clock, self.log_visible)

    def start_opening(self) -> None:
        """Start connecting now, on the core's thread, while Textual starts up and draws."""
        if self.lab is None and self._opening is None:
            self._opening = Lab.open_soon(self.settings, self.uri)

    def on_mount(self) -> None:
        self.start_opening()
        self.install_screen(self.screen, "main")
        self.load_keymap()

    def on_ready(self) -> None:
        """The main screen is composed: feed it the given lab, or the one being opened."""
        if self.lab is not None:
            self.attach(self.lab)
        else:
            self.action_connect()

    # -- the lab --
    def action_connect(self) -> None:
        self.run_worker(self._open(), group="connect", exclusive=True, exit_on_error=False)

    async def _open(self) -> None:
        opening = self._opening or Lab.open_soon(self.settings, self.uri)
        self._opening = None  # a retry opens afresh
        try:
            # shielded: quitting while connecting must not cancel a half-made connection...
            lab = await asyncio.shield(asyncio.wrap_future(opening))
        except asyncio.CancelledError:
            opening.add_done_callback(_close_unwanted)  # ...it is closed once it is made
            raise
        except Exception as exc:  # anything at all: say so, never sit on "connecting…"
            title, message = ((exc.title, exc.message) if isinstance(exc, VMManagerError)
                              else ("Cannot open the lab", f"{type(exc).__name__}: {exc}"))
            uri = self.uri or self.settings.connect_uri or "(automatic)"
            self.main.event_log.add(f"cannot connect: {message}", "bold red")
            self.push_screen(ConnectErrorScreen(title, message, uri))
            return
        if not self.is_running or self._unmounted:  # it came while the app was closing
            await lab.close()
            return
        self.attach(lab)

    def attach(self, lab: Lab) -> None:
        """Subscribe first, then read: a change in between is applied twice, never missed."""
        self.lab = lab
        lab.actor = Actor.local("tui")
        self._unsubscribe = lab.subscribe(self._coalescer.push)
        self.main.load(lab)
        self.call_after_refresh(self._settle_heap)
        if self.serve_at is not None and self._server is None:
            self._server = asyncio.create_task(self._serve(lab, *self.serve_at), name="console-server")
        self._new_requests = NewRequests(lab.settings.database_path)
        self.set_interval(REQUESTS_INTERVAL, self._tell_new_requests)

    def _settle_heap(self) -> None:
        """Move what lives as long as the app (modules, widgets, a row per VM) out of the garbage
        collector's sight once the table is drawn: a full collection then walks only newer objects,
        and a keystroke no longer waits ~80 ms for one over 1,000 rows (``make bench``,
        tui_filter_keystroke p95). Undone when the app ends (tests run many apps in one process)."""
        gc.collect()
        gc.freeze()
        self._heap_frozen = True

    def _tell_new_requests(self) -> None:
        """A notification per request students made since the last look (the web server's process
        writes them into the shared database)."""
        if self._new_requests is None:
            return
        try:
            fresh = self._new_requests.poll()
        except (sqlite3.Error, VMManagerError):
            return
        for request in fresh[-3:]:
            self.notify(f"#{request.id} {request.username}: {request.summary()} — ctrl+r to answer",
                        title="New request", timeout=10, markup=False)

    # -- the console server (--serve) --
    async def _serve(self, lab: Lab, host: str, port: int) -> None:
        """``vm-manager serve`` on this loop until the app ends; a failure is reported, not raised."""
        try:
            key = load_secret_key(lab.settings, demo=lab.demo)
            await web.serve(lab.settings, lab, secret_key=key, host=host, port=port, stop=self._server_stop,
                            started=self._serving)
        except Exception as exc:  # anything at all: the TUI goes on without a server
            if not self.is_running:
                raise
            message = exc.message if isinstance(exc, VMManagerError) else f"{type(exc).__name__}: {exc}"
            what = "Console server stopped" if self.server_url else "Console server not started"
            self.main.event_log.add(f"{what.lower()}: {message}", "bold red")
            self.notify(message, title=what, severity="error", timeout=20, markup=False)
        finally:
            self.server_url = None

    def _serving(self, url: str) -> None:
        self.server_url = url
        self.main.event_log.add(f"serving consoles at {url} (admin API on {self.settings.admin_socket})",
                                "bold")
        if not self.settings.web.public_url and self.serve_at and self.serve_at[0] in ("0.0.0.0", "::", ""):
            self.notify(f"PUBLIC_URL is unset: links point at and accept only {url}; set PUBLIC_URL to "
                        "the address browsers use.", title="Console server", severity="warning",
                        timeout=20, markup=False)
        self.main.poll_viewers()

    async def stop_server(self) -> None:
        """Close the consoles, stop the server and remove its admin socket (before the lab closes)."""
        if self._server is not None:
            self._server_stop.set()
            await asyncio.gather(self._server, return_exceptions=True)

    def _apply(self, updates: Sequence[Update]) -> None:
        if not self.is_running:
            return
        changes: list[Change] = []
        hosts: dict[str, HostStatus] = {}
        for update in updates:
            changes.extend(update.changes)
            hosts.update((h.name, h) for h in update.hosts)
        changed: dict[Key, VM | None] = {}
        for change in changes:
            key = change.vm.key
            if change.kind == "removed":
                self.history.forget(key)
                changed[key] = None
            else:
                if change.what == "stats":
                    self.history.record(change.vm)
                changed[key] = change.vm
        self.main.apply(changes, list(hosts.values()))
        if changed:
            self.vm_updates.publish(changed)

    async def on_unmount(self) -> None:
        self._unmounted = True
        if self._heap_frozen:
            gc.unfreeze()
        self._coalescer.close()
        await self.stop_server()
        if self._opening is not None:  # never awaited: close it once it is open
            self._opening.add_done_callback(_close_unwanted)
        if self._new_requests is not None:
            self._new_requests.close()
            self._new_requests = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.lab is not None:
            lab, self.lab = self.lab, None
            await lab.close()

    # -- keys --
    def binding_groups(self) -> list[tuple[str, Sequence[BindingType]]]:
        """Every binding of the app, grouped as the help screen shows them."""
        return [("VM list", MainScreen.BINDINGS), ("Navigation", VMTable.BINDINGS),
                ("Global", self.BINDINGS), ("Confirm dialog", ConfirmScreen.BINDINGS),
                ("Detail screen", DetailScreen.BINDINGS), ("Help screen", HelpScreen.BINDINGS),
                ("New class screen", ProvisionScreen.BINDINGS),
                ("Templates screen", TemplatesScreen.BINDINGS),
                ("Requests screen", RequestsScreen.BINDINGS), ("Audit log screen", AuditScreen.BINDINGS),
                ("Share links screen", ShareScreen.BINDINGS),
                ("Audit, requests and share lists", ListScreen.BINDINGS),
                ("Name prompt", PromptScreen.BINDINGS),
                ("Connection error", ConnectErrorScreen.BINDINGS)]

    def key_catalogue(self) -> list[KeyInfo]:
        return catalogue(self.binding_groups(), self.keymap, self.get_key_display)

    def namespace_for(self, group: str) -> DOMNode | None:
        if group == "Global":
            return self
        if group == "VM list":
            return self.main
        if group == "Navigation":
            return self.main.table
        return None

    def load_keymap(self) -> None:
        """Apply ``keymap.toml``; a broken file is reported, and the default keys stay."""
        path = self.settings.keymap_path
        keymap, problems = load_keymap(path, binding_ids(self.binding_groups()))
        self.keymap = keymap
        self.set_keymap(keymap)
        if problems:
            self.notify("\n".join(problems), title="Keymap not fully applied",
                        severity="error" if not keymap else "warning", timeout=20, markup=False)
        # Textual drops a binding whose key is taken by a remapped one, without a clash report
        unbound = [i.binding_id for i in self.key_catalogue() if not i.keys]
        if unbound:
            self.notify(f"These bindings lost their key to a remapped one: {', '.join(unbound)}",
                        title="Keymap clash", severity="warning", timeout=20, markup=False)

    def handle_bindings_clash(self, clashed_bindings: set[Binding], node: DOMNode) -> None:
        names = frozenset(b.id or b.action for b in clashed_bindings)
        if names not in self._clashes:
            self._clashes.add(names)
            self.notify(f"These bindings lost their key to a remapped one: {', '.join(sorted(names))}",
                        title="Keymap clash", severity="warning", timeout=15, markup=False)

    async def action_quit(self) -> None:
        """Quit -- but not while VMs are being made: they would be left half-made; and with
        actions under way, only once they finish or the operator says to leave them."""
        if any(isinstance(screen, ProvisionScreen) and screen.busy == "provision"
               for screen in self.screen_stack):
            self.notify("VMs are being made: wait for the report, then quit.", title="Provisioning",
                        severity="warning", markup=False)
            return
        running = self.lab.in_flight() if self.lab is not None else []
        if not running:
            self.exit()
            return
        if isinstance(self.screen, ConfirmScreen):
            return  # already asking

        def answered(leave: bool | None) -> None:
            if leave:
                self.quit_and_leave()
            else:
                self.notify("Quitting once the actions under way finish (q again: leave them).",
                            title="Waiting", markup=False)
                self.run_worker(self._quit_after_actions(), group="quit", exclusive=True,
                                exit_on_error=False)

        self.push_screen(quit_question(running), answered)

    def quit_and_leave(self) -> None:
        """Quit now: what is still under way is recorded as abandoned, one audit entry per VM."""
        if self.lab is not None:
            self.lab.abandon()
        self.exit()

    async def _quit_after_actions(self) -> None:
        """Wait for the actions under way (and any started meanwhile), then quit."""
        if self.lab is not None:
            await self.lab.settled()
        self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_catalogue(), str(self.settings.keymap_path)))


def quit_question(running: Sequence[InFlight]) -> ConfirmScreen:
    """"1 action in progress: wait, or quit and leave it?", listing each action and its VMs."""
    lines = []
    for action in running:
        vms = action.pending() or list(action.vms)
        names = ", ".join(fmt.printable(vm.name) for vm in vms[:3]) + (" …" if len(vms) > 3 else "")
        lines.append(Text.assemble((action.action, "bold"), f"  {count(len(vms), 'VM')}: {names}"))
    return ConfirmScreen(
        f"{count(len(running), 'action')} in progress: wait, or quit and leave it?",
        "Waiting quits once they finish. Leaving them quits now: they stop where they are (a halt "
        "never forces its VMs off) and each VM is recorded as abandoned in the audit log.",
        "Quit and leave it", lines=lines, no="Wait")


def _close_unwanted(opening: concurrent.futures.Future[Lab]) -> None:
    """A lab that finished opening after the app gave up on it (runs on the core's thread)."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close_soon()


def run_app(settings: Settings, uri: str | None = None,
            opening: concurrent.futures.Future[Lab] | None = None,
            serve: tuple[str, int] | None = None) -> int:
    """Run the TUI until the operator quits; returns the process exit code.

    ``opening`` is a ``Lab.open`` already under way (the CLI starts it before importing Textual);
    ``serve`` = (host, port) runs the console server in the TUI.
    """
    app = VMManagerApp(settings, uri, opening=opening, serve=serve)
    app.start_opening()
    app.run()
    return app.return_code or 0
