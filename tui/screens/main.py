"""The main screen: header, the VM list, the filter/status line, the event log, the footer.

It owns the lifecycle actions: targets (marked VMs, else the cursor's), the snapshot name for
the actions that need one, confirmation of the destructive ones, and the worker that runs them,
so the UI never waits for libvirt. It opens the provisioning and templates screens. It shares
the consoles of VMs (a link per VM, shown with its QR code), revokes their links, and keeps the
viewer counts of the console server up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input

from core.demo import DEMO_NOTE
from core.errors import VMManagerError
from core.lifecycle import Action, ActionResult, SnapshotInfo, check_snapshot_name
from core.links import VIEWER_POLL, Consoles, describe_ttl, parse_ttl
from core.model import VM, Change, HostStatus
from core.text import count, format_time
from tui import format as fmt
from tui.coalesce import Throttle
from tui.screens.audit import AuditScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.prompt import ChoiceScreen, PromptScreen
from tui.screens.provision import ProvisionScreen
from tui.screens.requests import RequestsScreen
from tui.screens.share import RevokeScreen, ShareScreen
from tui.screens.templates import TemplatesScreen
from tui.widgets.eventlog import EventLog, change_line, host_line, result_line
from tui.widgets.header import LabHeader
from tui.widgets.statusbar import FilterInput, StatusBar
from tui.widgets.vmtable import VMTable

if TYPE_CHECKING:
    from core.lab import Lab

MAX_LISTED = 8  # VMs named in one failure notification
SUMMARY_INTERVAL = 0.1  # seconds between two repaints of the header counts and the event log


def failure_message(results: Sequence[ActionResult]) -> str:
    failed = [r for r in results if not r.ok]
    lines = [f"{fmt.printable(r.vm.name)}: {fmt.printable(r.message)}" for r in failed[:MAX_LISTED]]
    if len(failed) > MAX_LISTED:
        lines.append(f"… and {len(failed) - MAX_LISTED} more (see the event log)")
    return "\n".join(lines)


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "details", "Details", id="details"),
        # priority: run as the app reads the key, before it hands the next one on (see action_filter)
        Binding("slash", "filter", "Filter", id="filter", priority=True),
        Binding("space", "mark", "Mark", show=False, id="mark"),
        Binding("ctrl+a", "mark_all", "Mark all shown", show=False, id="mark_all"),
        Binding("escape", "clear", "Clear marks, then filter", show=False, id="clear"),
        Binding("o", "sort_next", "Sort by next column", show=False, id="sort_next"),
        Binding("O", "sort_reverse", "Reverse sort", show=False, id="sort_reverse"),
        Binding("s", "act('start')", "Start", id="start"),
        Binding("h", "act('halt')", "Halt", id="halt"),
        Binding("x", "act('destroy')", "Destroy (force off)", show=False, id="destroy"),
        Binding("r", "act('reboot')", "Reboot", show=False, id="reboot"),
        Binding("p", "act('suspend')", "Suspend (pause)", show=False, id="suspend"),
        Binding("u", "act('resume')", "Resume", show=False, id="resume"),
        Binding("ctrl+d", "act('delete')", "Delete VM and its disks", show=False, id="delete"),
        Binding("R", "act('reset')", "Reset to its template", show=False, id="reset"),
        Binding("ctrl+s", "act('snapshot')", "Snapshot (named)", show=False, id="snapshot"),
        Binding("V", "act('revert')", "Revert to a snapshot", show=False, id="revert"),
        Binding("n", "new_class", "New class (provision)", show=False, id="new_class"),
        Binding("t", "templates", "Templates", show=False, id="templates"),
        Binding("c", "share", "Share console links", show=False, id="share"),
        Binding("C", "revoke_links", "Revoke console links", show=False, id="revoke_links"),
        Binding("ctrl+r", "requests", "Students' requests", show=False, id="requests"),
        Binding("a", "audit", "Audit log", show=False, id="audit"),
        Binding("l", "toggle_log", "Log", id="toggle_log"),
    ]

    def __init__(self, uri: str = "", clock: Callable[[], datetime] = datetime.now,
                 log_visible: bool | None = None) -> None:
        super().__init__()
        self.uri = uri
        self.clock = clock
        self.log_visible = log_visible
        self.lab: Lab | None = None
        self.consoles: Consoles | None = None
        self.hosts: dict[str, HostStatus] = {}
        self._summary = Throttle(self._show_summary, SUMMARY_INTERVAL, slack=0.03)

    def compose(self) -> ComposeResult:
        yield LabHeader(self.uri, id="header")
        table = VMTable(id="vms")
        table.placeholder = "connecting…"
        yield table
        yield StatusBar(table.set_query, id="statusbar")
        yield EventLog(self.clock, id="eventlog")
        yield Footer(compact=True)

    @property
    def table(self) -> VMTable:
        return self.query_one(VMTable)

    @property
    def event_log(self) -> EventLog:
        return self.query_one(EventLog)

    def on_mount(self) -> None:
        visible = self.log_visible if self.log_visible is not None else self.app.size.height >= 40
        self.event_log.display = visible
        self.table.focus()
        self.set_interval(1.0, self.table.tick)
        self.set_interval(VIEWER_POLL, self.poll_viewers)

    def on_unmount(self) -> None:
        self._summary.close()

    # -- feeding (called by the app) --
    def load(self, lab: Lab) -> None:
        self.lab = lab
        self.consoles = Consoles(lab.settings)
        self.hosts = {h.name: h for h in lab.host_statuses()}
        table = self.table
        table.placeholder = "no VMs on this hypervisor"
        table.set_vms(lab.vms())
        for status in self.hosts.values():
            self.event_log.add(host_line(status))
        self._show_header()
        self.refresh_bindings()
        self.poll_viewers()

    def apply(self, changes: Sequence[Change], hosts: Sequence[HostStatus]) -> None:
        """Rows at once; the header counts and the log at most every 100 ms (``SUMMARY_INTERVAL``).

        Painting the header (top) and the log (bottom) with a row makes the compositor work over
        the whole screen; in a storm, doing that for every change is most of the TUI's CPU.
        """
        if changes:
            self.table.apply(changes)
            log = self.event_log
            for change in changes:
                line = change_line(change)
                if line is not None:
                    log.add(line, repaint=False, vm=change.vm, mine=change.cause is not None)
        connection = False
        for status in hosts:
            old = self.hosts.get(status.name)
            self.hosts[status.name] = status
            if old is None or (old.state, old.message) != (status.state, status.message):
                self.event_log.add(host_line(status), repaint=False)
                connection = True
        if connection or self._summary.due:
            self._summary.fire()  # in this frame: a lost connection at once, counts when due
        else:
            self._summary.poke()  # a trailing repaint, unless a later apply takes it first

    def _show_summary(self) -> None:
        self._show_header()
        self.event_log.repaint()

    def _show_header(self) -> None:
        self.query_one(LabHeader).show(list(self.hosts.values()), self.table.state_counts())

    def on_vmtable_status_changed(self, event: VMTable.StatusChanged) -> None:
        self.query_one(StatusBar).show_status(event.status)
        self.event_log.follow(self.table.model.query)  # the log shows what the table shows

    # -- filter --
    def action_filter(self) -> None:
        """Open the prompt and focus it now, so every key after `/` is filter text however fast it
        comes (keys in one write, over a laggy link).

        The app hands each key it reads to the focused widget's queue, and a normal binding runs
        only once the key has come back up from there: by then the keys after it had gone to the
        table (`s` started a VM, `t` opened the templates). A priority binding runs as the app
        reads the key, and the focus set here, not a frame later as ``focus()`` does, sends the
        next key to the prompt. In the open prompt the key is text (``re:net/a``): the action
        steps aside (Textual would let an Input take a printable key before a priority binding,
        but it does not know `slash` as a character).
        """
        if self.focused is self.query_one(FilterInput):  # has_focus follows a frame later
            raise SkipAction()
        self.query_one(StatusBar).open_filter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, FilterInput):
            self.query_one(StatusBar).close_filter()
            self.table.focus()

    def action_clear(self) -> None:
        """Escape: leave the filter prompt (clearing it), else clear marks, else the filter."""
        filter_input = self.query_one(FilterInput)
        if filter_input.has_focus:
            filter_input.value = ""
        elif self.table.marked:
            self.table.clear_marks()
        elif filter_input.value:
            filter_input.value = ""
        self.table.set_query(filter_input.value)
        self.query_one(StatusBar).close_filter()
        self.table.focus()

    # -- marks, sort, log --
    def action_mark(self) -> None:
        self.table.toggle_mark()

    def action_mark_all(self) -> None:
        self.table.mark_visible()

    def action_sort_next(self) -> None:
        self.table.cycle_sort()

    def action_sort_reverse(self) -> None:
        self.table.reverse_sort()

    def action_toggle_log(self) -> None:
        self.event_log.display = not self.event_log.display

    # -- details and actions --
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("act", "details", "new_class", "share", "revoke_links") and self.lab is None:
            return None  # shown disabled until the lab is open
        return True

    def action_details(self) -> None:
        vm = self.table.cursor_vm
        if vm is None or self.lab is None:
            return
        app = self.app
        self.app.push_screen(DetailScreen(vm, self.lab, app.history, app.vm_updates))  # type: ignore[attr-defined]

    def action_new_class(self) -> None:
        if self.lab is not None:
            self.app.push_screen(ProvisionScreen(self.lab))

    def action_templates(self) -> None:
        self.app.push_screen(TemplatesScreen(self.lab.settings if self.lab else self.app.settings,  # type: ignore[attr-defined]
                                             demo=self.lab is not None and self.lab.demo))

    def action_requests(self) -> None:
        if self.lab is not None:
            self.app.push_screen(RequestsScreen(self.lab))

    def action_audit(self) -> None:
        self.app.push_screen(AuditScreen(self.lab.settings if self.lab else self.app.settings))  # type: ignore[attr-defined]

    def action_act(self, name: str) -> None:
        """Targets first; then the snapshot name (snapshot, revert); then the confirmation."""
        action = Action(name)
        vms = self.table.targets()
        if not vms or self.lab is None:
            self.notify("No VM selected.", severity="warning")
            return
        if not action.needs_name:
            self.confirm_then_perform(action, vms)
            return

        def named(snapshot: str | None) -> None:
            if snapshot:
                self.confirm_then_perform(action, vms, snapshot)
            else:
                self.event_log.add(Text(f"{action.value} cancelled", "dim"), mine=True)

        what = fmt.printable(vms[0].name) if len(vms) == 1 else count(len(vms), "VM")
        if action == Action.SNAPSHOT:
            prompt = PromptScreen(f"Snapshot {what}", "snapshot name", check=check_snapshot_name,
                                  explanation="Each VM's disks (and memory, when running) are saved "
                                              "under this name, to revert to later.")
            self.app.push_screen(prompt, named)
        else:
            self.run_worker(self._pick_snapshot(vms, what, named), group="snapshots", exclusive=True,
                            exit_on_error=False)

    async def _pick_snapshot(self, vms: Sequence[VM], what: str, then: Callable[[str | None], None]) -> None:
        """Offer the snapshots the VMs have (with how many of them have each), newest first."""
        assert self.lab is not None
        having: dict[str, list[SnapshotInfo]] = {}
        for vm in vms:
            try:
                for snapshot in await self.lab.snapshots(vm):
                    having.setdefault(snapshot.name, []).append(snapshot)
            except VMManagerError as exc:
                self.notify(f"{vm.name}: {exc.message}", title="Cannot list snapshots", severity="error",
                            markup=False)
                return
        if not having:
            self.notify(f"{what} has no snapshot to revert to (ctrl+s takes one).", severity="warning",
                        markup=False)
            return
        choices = []
        for name, found in sorted(having.items(), key=lambda item: -max(s.created for s in item[1])):
            label = Text(fmt.printable(name), "bold")
            newest = max(found, key=lambda s: s.created)
            label.append(f"  {format_time(newest.created)}", "dim")
            label.append(", with memory" if newest.with_memory else ", disks only", "dim")
            if len(vms) > 1:
                label.append(f"  {len(found)} of {len(vms)} VMs", "yellow" if len(found) < len(vms) else "")
            choices.append((name, label))
        self.app.push_screen(ChoiceScreen(f"Revert {what} to a snapshot", choices,
                                          explanation="The snapshot to go back to; you confirm next."), then)

    def confirm_then_perform(self, action: Action, vms: Sequence[VM], snapshot: str = "") -> None:
        assert self.lab is not None
        if not action.destructive:
            self.perform(action, vms, snapshot)
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.perform(action, vms, snapshot)
            else:
                self.event_log.add(Text(f"{action.value} cancelled", "dim"), mine=True)

        self.app.push_screen(ConfirmScreen.for_action(action, vms, self.lab.settings.actions.halt_timeout,
                                                      snapshot=snapshot, every_vm=self.table.all_vms()),
                             answered)

    def perform(self, action: Action, vms: Sequence[VM], snapshot: str = "") -> None:
        """Run the action in a worker; marks are cleared so the next action starts afresh."""
        if self.table.marked:
            self.table.clear_marks()
        named = f" {snapshot}" if snapshot else ""
        self.event_log.add(Text(f"{action.value}{named} requested on {count(len(vms), 'VM')}", "bold"),
                           mine=True)
        self.run_worker(self._perform(action, list(vms), snapshot), group="actions",
                        exit_on_error=False)

    async def _perform(self, action: Action, vms: list[VM], snapshot: str = "") -> None:
        assert self.lab is not None
        try:
            results = await self.lab.act(action, vms, snapshot=snapshot)
        except VMManagerError as exc:
            self.event_log.add(Text(f"{action.value} failed: {fmt.printable(exc.message)}", "bold red"),
                               mine=True)
            self.notify(exc.message, title=f"{action.value.capitalize()} failed", severity="error",
                        timeout=15, markup=False)
            return
        for result in results:
            self.event_log.add(result_line(result), vm=result.vm, mine=True)
        failed = sum(1 for r in results if not r.ok)
        if failed:
            self.notify(failure_message(results), severity="error", timeout=15, markup=False,
                        title=f"{action.value.capitalize()} failed on {failed} of {len(results)}")
        elif len(results) == 1:
            r = results[0]
            self.notify(f"{fmt.printable(r.vm.name)}: {fmt.printable(r.message)}",
                        title=action.value.capitalize(), markup=False)
        else:
            self.notify(f"{action.value}: {len(results)} of {len(results)} done", markup=False,
                        title=action.value.capitalize())

    # -- browser consoles --
    def poll_viewers(self) -> None:
        """Count the open consoles (a worker: the admin API answers on the UI's loop)."""
        if self.consoles is not None:
            self.run_worker(self._poll_viewers(self.consoles), group="viewers", exclusive=True,
                            exit_on_error=False)

    async def _poll_viewers(self, consoles: Consoles) -> None:
        self.table.set_viewers(await consoles.viewers())

    def action_share(self) -> None:
        """A share link per target VM, for how long the prompt says (VMM_SHARE_TTL by default)."""
        vms = self.table.targets()
        if not vms or self.lab is None:
            self.notify("No VM selected.", severity="warning")
            return

        def chosen(ttl: str | None) -> None:
            if ttl:
                self.share(vms, ttl)
            else:
                self.event_log.add(Text("share cancelled", "dim"), mine=True)

        what = fmt.printable(vms[0].name) if len(vms) == 1 else count(len(vms), "VM")
        self.app.push_screen(
            PromptScreen(
                f"Share the console of {what}",
                "how long: 30m, 4h, 2d, 1h30m",
                value=self.lab.settings.consoles.share_ttl,
                check=parse_ttl,
                meaning=describe_ttl,
                explanation="One link per VM: whoever opens it sees and uses the VM's "
                "screen in a browser until the link expires or you revoke it (C). How long it "
                "works: minutes, hours or days (30m, 4h, 2d, 1h30m; at most 30 days).",
            ),
            chosen,
        )

    def share(self, vms: Sequence[VM], ttl: str) -> None:
        if self.table.marked:
            self.table.clear_marks()
        self.event_log.add(Text(f"share requested on {count(len(vms), 'VM')} for {ttl}", "bold"), mine=True)
        self.run_worker(self._share(list(vms), ttl), group="consoles", exit_on_error=False)

    async def _share(self, vms: list[VM], ttl: str) -> None:
        assert self.consoles is not None
        try:
            result = await self.consoles.share(vms, ttl)
        except Exception as exc:  # anything: say so, never fail silently in a worker
            self._console_failure("Share", exc)
            return
        for link in result.links:  # the id, never the URL: it holds the token
            self.event_log.add(f"{fmt.printable(link.vm_name)}  share link {link.id} made, expires "
                               f"{link.expires}", mine=True)
        for name, why in result.errors:
            self.event_log.add(Text(f"{fmt.printable(name)}  no share link: {fmt.printable(why)}",
                                    "bold red"), mine=True)
        if result.errors:
            self.notify("\n".join(f"{fmt.printable(n)}: {fmt.printable(w)}" for n, w in result.errors),
                        title=f"No link for {count(len(result.errors), 'VM')}", severity="error", timeout=15,
                        markup=False)
        if result.links:
            note = "" if result.via_server else self.consoles.no_server_note()
            if self.lab is not None and self.lab.demo:
                note = f"{DEMO_NOTE}. {note}".strip()
            settings = self.lab.settings if self.lab else self.app.settings  # type: ignore[attr-defined]
            self.app.push_screen(ShareScreen(result, note, owners={vm.uuid: vm.meta.owner for vm in vms},
                                             save_dir=settings.data_dir / "share-links"))
        self.poll_viewers()

    def action_revoke_links(self) -> None:
        """Revoke every link of the target VMs, after a confirmation listing them."""
        vms = self.table.targets()
        if not vms or self.lab is None:
            self.notify("No VM selected.", severity="warning")
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.revoke_links(vms)
            else:
                self.event_log.add(Text("revoke links cancelled", "dim"), mine=True)

        self.app.push_screen(RevokeScreen(vms, server=self.table.viewers is not None), answered)

    def revoke_links(self, vms: Sequence[VM]) -> None:
        if self.table.marked:
            self.table.clear_marks()
        self.event_log.add(Text(f"revoke links requested on {count(len(vms), 'VM')}", "bold"), mine=True)
        self.run_worker(self._revoke_links(list(vms)), group="consoles", exit_on_error=False)

    async def _revoke_links(self, vms: list[VM]) -> None:
        assert self.consoles is not None
        try:
            result = await self.consoles.revoke(vms=vms)
        except Exception as exc:  # anything: say so, never fail silently in a worker
            self._console_failure("Revoke links", exc)
            return
        for link_id, name in result.revoked:
            self.event_log.add(f"{fmt.printable(name)}  share link {link_id} revoked", mine=True)
        revoked = len(result.revoked)
        message = f"{count(revoked, 'link')} revoked" if revoked else "no active link to revoke"
        if result.closed:
            message += f"; {count(result.closed, 'console')} closed"
        elif revoked and not result.via_server:
            message += "; no console server answers: it closes their consoles when it next checks"
        self.notify(message, title="Revoke links", markup=False)
        self.poll_viewers()

    def _console_failure(self, what: str, exc: Exception) -> None:
        message = exc.message if isinstance(exc, VMManagerError) else f"{type(exc).__name__}: {exc}"
        self.event_log.add(Text(f"{what.lower()} failed: {fmt.printable(message)}", "bold red"), mine=True)
        self.notify(message, title=f"{what} failed", severity="error", timeout=15, markup=False)
