"""The two-line header: hosts, URIs, connection state, host figures, DEMO, and counts by state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from core.model import ConnState, HostStatus, VMState
from core.text import count
from tui import format as fmt
from tui.widgets.textlines import fit, text_strip

_CONN = {
    ConnState.ACTIVE: ("●", "connected", "green"),
    ConnState.CONNECTING: ("…", "connecting", "yellow"),
    ConnState.DISCONNECTED: ("✖", "DISCONNECTED", "bold red"),
}


def host_figures(status: HostStatus) -> str:
    f = status.figures
    cpu = fmt.percent(f.cpu_percent)
    cpu = cpu if cpu == fmt.DASH else f"{cpu}%"
    if f.mem_total_mib is None:
        mem = fmt.DASH
    else:
        mem = f"{fmt.size_mib(f.mem_used_mib)}/{fmt.size_mib(f.mem_total_mib)}"
    return f"CPU {cpu}  MEM {mem}"


def title_line(hosts: Sequence[HostStatus], counts: Counter[VMState], pending_uri: str = "") -> Text:
    """`` DEMO  24 VMs  12 running  3 paused …`` (or connecting…); the app's name is the window title."""
    text = Text()
    if any(h.demo for h in hosts):
        text.append(" DEMO ", "bold reverse")
        text.append("  ")
    if not hosts:
        text.append("… connecting to ", "yellow")
        text.append(fmt.display_uri(pending_uri) if pending_uri else "the hypervisor", "yellow")
        return text
    total = sum(counts.values())
    text.append(count(total, "VM"), "bold")
    for state in VMState:
        if counts.get(state):
            text.append("  ")
            text.append(f"{counts[state]} {state.value}", fmt.STATE_STYLES[state])
    return text


def host_text(status: HostStatus) -> Text:
    """``localhost  ● connected  CPU 12%  MEM 3G/16G  qemu:///system``; every string literal.

    The state comes first: on a narrow terminal the URI is what gets cut.
    """
    icon, word, style = _CONN[status.state]
    text = Text()
    text.append(fmt.printable(status.name), "bold")
    text.append(f"  {icon} {word}", style)
    if status.state != ConnState.ACTIVE and status.message:
        text.append(f": {fmt.printable(status.message)}", style)
    text.append(f"  {host_figures(status)}  ")
    text.append(fmt.display_uri(status.uri), "dim")
    return text


class LabHeader(Widget):
    """The lab at a glance: a title line with counts by state, then a line per host.

    Line API: a count change repaints one line, with no layout pass. It turns red as soon as any
    host is disconnected.
    """

    DEFAULT_CSS = """
    LabHeader { height: 2; padding: 0 1; background: $panel; }
    LabHeader.-disconnected { background: $error 40%; }
    """

    def __init__(self, uri: str = "", *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.pending_uri = uri
        self._hosts: tuple[HostStatus, ...] = ()
        self._counts: tuple[tuple[VMState, int], ...] = ()
        self.lines: list[Text] = [title_line([], Counter(), uri)]
        self._strips: list[Strip] | None = None
        self._base: Style | None = None

    def show(self, hosts: Sequence[HostStatus], counts: Counter[VMState]) -> None:
        host_part, count_part = tuple(hosts), tuple(sorted(counts.items()))
        if (host_part, count_part) == (self._hosts, self._counts):
            return
        self.lines[0] = title_line(hosts, counts, self.pending_uri)
        self._strips = None
        if host_part != self._hosts:
            self.lines[1:] = [host_text(h) for h in hosts]
            self.set_class(any(h.state == ConnState.DISCONNECTED for h in hosts), "-disconnected")
            self.styles.height = max(2, len(self.lines))
            self.refresh()
        else:
            self.refresh(Region(0, 0, self.outer_size.width, 1))
        self._hosts, self._counts = host_part, count_part

    @property
    def text(self) -> str:
        return "\n".join(line.plain for line in self.lines)

    def render_line(self, y: int) -> Strip:
        if self._strips is None:
            self._strips = [text_strip(line, self.app.console) for line in self.lines]
        width = self.size.width
        if self._base is None:
            self._base = self.rich_style
        if y >= len(self._strips):
            return Strip.blank(width, self._base)
        return fit(self._strips[y], width, self._base)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
