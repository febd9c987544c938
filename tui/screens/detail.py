"""One VM in full: metadata, disks, interfaces with IPs, graphics, snapshots, and live sparklines."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.signal import Signal
from textual.widgets import Footer, Sparkline, Static

from core.errors import VMManagerError
from core.lifecycle import SnapshotInfo
from core.model import VM, Key
from core.text import format_time
from core.virt import DomainInfo
from tui import format as fmt
from tui.history import SERIES, Series, StatsHistory

if TYPE_CHECKING:
    from core.lab import Lab

_LABELS = {"cpu": "CPU", "memory": "Memory", "disk": "Disk I/O", "network": "Network"}


def _latest(name: str, series: Series) -> str:
    values = getattr(series, name)
    if not values:
        return fmt.DASH
    value = values[-1]
    if name == "cpu":
        return f"{fmt.percent(value)}%"
    if name == "memory":
        return fmt.size_mib(value)
    return fmt.rate(value)


def summary_text(vm: VM, now: float, removed: bool = False) -> Text:
    """Name and state, then labelled fields, a few to a line (they wrap on a narrow terminal)."""
    text = Text()
    text.append(fmt.printable(vm.name), "bold")
    text.append(f"  {fmt.state(vm, now)}", fmt.STATE_STYLES[fmt.style_state(vm)])
    if fmt.halting(vm):
        text.append("  (ACPI shutdown sent; powered off then if the guest has not stopped)", "dim")
    if removed:
        text.append("  (removed from the hypervisor)", "bold red")
    lines = [
        [("Owner", fmt.text_or_dash(vm.meta.owner)), ("Class", fmt.text_or_dash(vm.meta.lab_class)),
         ("Template", fmt.text_or_dash(vm.meta.template)), ("Created", fmt.text_or_dash(vm.meta.created))],
        [("vCPUs", str(vm.vcpus)), ("Memory", fmt.memory_detail(vm)),
         ("CPU", fmt.percent(vm.figures.cpu_percent)), ("Uptime", fmt.uptime(vm, now)),
         ("IPs", ", ".join(fmt.printable(ip) for ip in vm.ips) or fmt.DASH)],
        [("UUID", vm.uuid), ("Host", fmt.printable(vm.host)),
         ("Persistent", "yes" if vm.persistent else "no (transient)")],
    ]
    if pending := fmt.next_boot(vm):
        lines[1].insert(2, ("From the next boot", pending))
    for fields in lines:
        text.append("\n")
        for n, (label, value) in enumerate(fields):
            text.append(("   " if n else "") + label + " ", "dim")
            text.append(fmt.printable(value))
    return text


def devices_text(info: DomainInfo | None, vm: VM, error: str = "") -> Text:
    text = Text()
    if error:
        return Text(f"Cannot read the definition: {fmt.printable(error)}", "red")
    if info is None:
        return Text("loading the definition…", "dim italic")
    text.append("Disks\n", "bold underline")
    for disk in info.disks:
        flags = ", ".join(f for f, on in (("read-only", disk.readonly), ("shared", disk.shareable)) if on)
        text.append(f"  {fmt.printable(disk.target) or '?':<6}", "bold")
        text.append(f"{disk.device:<7}{fmt.printable(disk.source) or '(empty)'}")
        text.append(f"  {disk.source_type}{', ' + flags if flags else ''}\n", "dim")
        for backing in disk.backing:
            text.append(f"{'':>13}↳ {fmt.printable(backing)}\n", "dim")
    if not info.disks:
        text.append("  none\n", "dim")
    text.append("Interfaces\n", "bold underline")
    for iface in info.interfaces:
        text.append(f"  {fmt.printable(iface.mac) or '?':<18}", "bold")
        text.append(f"{iface.kind} {fmt.printable(iface.source) or '—'}  model {iface.model or '—'}"
                    f"  dev {fmt.printable(iface.target) or '—'}\n")
    if not info.interfaces:
        text.append("  none\n", "dim")
    text.append("  IPs: ", "dim")
    text.append((", ".join(fmt.printable(ip) for ip in vm.ips) or fmt.DASH) + "\n")
    text.append("Graphics\n", "bold underline")
    for g in info.graphics:
        where = fmt.printable(g.socket or g.listen or "—")
        text.append(f"  {g.kind:<7}{where}{f':{g.port}' if g.port else ''}\n")
    if not info.graphics:
        text.append("  none\n", "dim")
    return text


# -- snapshots: a section of its own -----------------------------------------------------------------
def snapshots_text(snapshots: Sequence[SnapshotInfo] | None, error: str = "") -> Text:
    """The VM's snapshots, oldest first: name, when taken, with memory or disks only, current."""
    text = Text("Snapshots\n", "bold underline")
    if error:
        text.append(f"  cannot list them: {fmt.printable(error)}\n", "red")
    elif snapshots is None:
        text.append("  loading…\n", "dim italic")
    elif not snapshots:
        text.append("  none (ctrl+s takes one)\n", "dim")
    for snapshot in snapshots or ():
        text.append(f"  {fmt.printable(snapshot.name):<20}", "bold")
        text.append(f"{format_time(snapshot.created)}  {snapshot.state or fmt.DASH}")
        text.append(", with memory" if snapshot.with_memory else ", disks only", "dim")
        text.append("  current\n" if snapshot.current else "\n", "green")
    return text


class DetailScreen(Screen[None]):
    """Follows its VM live through the app's update signal; Escape goes back to the list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="detail_back"),
        Binding("i", "refresh_ips", "Refresh IPs", id="refresh_ips"),
    ]

    def __init__(self, vm: VM, lab: Lab, history: StatsHistory,
                 updates: Signal[Mapping[Key, VM | None]], now: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.vm = vm
        self.lab = lab
        self.history = history
        self.updates = updates
        self.now = now
        self.info: DomainInfo | None = None
        self.snapshots: list[SnapshotInfo] | None = None  # None: not read yet
        self.error = ""
        self.removed = False
        self.has_figures = lab.has_figures(vm)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-body"):
            yield Static(summary_text(self.vm, self.now()), id="detail-summary")
            if not self.has_figures:
                yield Static(Text("This driver reports no CPU, memory or I/O figures: nothing to "
                                  "plot.", "dim italic"), id="detail-nofigures")
            for name in SERIES:
                with Horizontal(classes="spark-row"):
                    yield Static(id=f"label-{name}", classes="spark-label")
                    yield Sparkline([], id=f"spark-{name}", summary_function=max)
            yield Static(devices_text(None, self.vm), id="detail-devices")
            yield Static(snapshots_text(None), id="detail-snapshots")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.updates.subscribe(self, self._on_updates)
        self._show_series()
        self.load_details()
        self.load_snapshots()
        self.set_interval(1.0, self._tick)

    @work(exclusive=True, group="details")
    async def load_details(self) -> None:
        try:
            self.info = await self.lab.details(self.vm)
        except VMManagerError as exc:
            self.error = exc.message
        self._show_devices()

    @work(exclusive=True, group="snapshots")
    async def load_snapshots(self) -> None:
        try:
            self.snapshots, error = await self.lab.snapshots(self.vm), ""
        except VMManagerError as exc:
            self.snapshots, error = [], exc.message
        self.query_one("#detail-snapshots", Static).update(snapshots_text(self.snapshots, error))

    @work(exclusive=True, group="ips")
    async def action_refresh_ips(self) -> None:
        try:
            ips = await self.lab.refresh_ips(self.vm)
        except VMManagerError as exc:
            self.notify(exc.message, title="Cannot read IPs", severity="error", markup=False)
            return
        self.notify(", ".join(ips) or "no address reported", title="IPs", markup=False)

    def _on_updates(self, changed: Mapping[Key, VM | None]) -> None:
        if self.vm.key not in changed:
            return
        vm = changed[self.vm.key]
        if vm is None:
            self.removed = True
        else:
            self.vm = vm
        self.query_one("#detail-summary", Static).update(summary_text(self.vm, self.now(), self.removed))
        self._show_series()
        self._show_devices()

    def _tick(self) -> None:
        if self.vm.started_at is not None or self.vm.halting_until is not None:
            self.query_one("#detail-summary", Static).update(
                summary_text(self.vm, self.now(), self.removed))

    def _show_series(self) -> None:
        series = self.history.get(self.vm.key)
        for name in SERIES:
            label = Text(f"{_LABELS[name]:<9}", "bold")
            label.append(f"{_latest(name, series):>9}")
            self.query_one(f"#label-{name}", Static).update(label)
            spark = self.query_one(f"#spark-{name}", Sparkline)
            spark.data = list(getattr(series, name))
            spark.display = bool(spark.data)  # no flat line that would read as zero

    def _show_devices(self) -> None:
        self.query_one("#detail-devices", Static).update(devices_text(self.info, self.vm, self.error))
