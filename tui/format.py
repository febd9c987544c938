"""How values are written on screen: plain strings and Rich styles, never markup.

Everything from outside (VM names, owners, messages) goes through :func:`printable` (the one rule
of :mod:`core.text`: controls and bidi overrides shown escaped) and is placed in
:class:`rich.text.Text` or a Strip segment as-is, so ``[b]bold`` reads ``[b]bold``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from rich.style import Style

from core.model import VM, VMState
from core.text import printable

DASH = "—"
"""Shown for every figure the driver does not report: never an invented number."""

STATE_STYLES: dict[VMState, Style] = {
    VMState.RUNNING: Style(color="green"),
    VMState.BLOCKED: Style(color="magenta"),
    VMState.PAUSED: Style(color="yellow"),
    VMState.SHUTDOWN: Style(color="yellow", italic=True),
    VMState.SHUTOFF: Style(dim=True),
    VMState.CRASHED: Style(color="red", bold=True),
    VMState.PMSUSPENDED: Style(color="cyan"),
    VMState.NOSTATE: Style(dim=True, italic=True),
}


def display_uri(uri: str) -> str:
    """The URI as shown in the header; a test-driver file shows only its name (paths differ)."""
    parts = urlsplit(uri)
    if parts.scheme == "test" and parts.path not in ("", "/default"):
        return f"test:///…/{PurePosixPath(parts.path).name}"
    return printable(uri)


def size_mib(mib: float | None) -> str:
    """``512M``, ``2G``, ``1.5G``, ``1.2T``; ``—`` when unknown."""
    if mib is None:
        return DASH
    if mib < 1024:
        return f"{mib:.0f}M"
    gib = mib / 1024
    if gib < 1024:
        return f"{gib:.0f}G" if gib == int(gib) or gib >= 100 else f"{gib:.1f}G"
    return f"{gib / 1024:.1f}T"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}" if value < 99.95 else "100"


def rate(bps: float | None) -> str:
    """Bytes per second, as ``12K/s``; ``—`` when unknown."""
    if bps is None:
        return DASH
    for unit in ("B", "K", "M", "G"):
        if bps < 1024 or unit == "G":
            return f"{bps:.0f}{unit}/s" if unit == "B" or bps >= 10 else f"{bps:.1f}{unit}/s"
        bps /= 1024
    return DASH  # pragma: no cover


def duration(seconds: float | None) -> str:
    """Compact uptime: ``42s``, ``12m05s``, ``5h12m``, ``3d04h``; ``—`` when unknown."""
    if seconds is None:
        return DASH
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


HALTING_WIDEST = "halting… 999s"
"""As wide as a halting VM's state gets (for a column's width; a longer halt timeout is cut)."""


def halting(vm: VM) -> bool:
    return vm.halting_until is not None and vm.state.is_active


def state(vm: VM, now: float) -> str:
    """libvirt's state, or ``halting… 42s`` (the time left before the power-off) while this
    process halts it."""
    if vm.halting_until is None or not vm.state.is_active:
        return vm.state.value
    return f"halting… {max(0, round(vm.halting_until - now))}s"  # seconds alone: a narrow cell


def style_state(vm: VM) -> VMState:
    """The state a row is coloured as: a halting VM as one shutting down."""
    return VMState.SHUTDOWN if halting(vm) else vm.state


def uptime(vm: VM, now: float) -> str:
    if vm.started_at is None or not vm.state.is_active:
        return DASH
    return duration(now - vm.started_at)


def ips(vm: VM) -> str:
    if not vm.ips:
        return DASH
    extra = len(vm.ips) - 1
    return printable(vm.ips[0]) + (f"+{extra}" if extra else "")


MEMORY_HELP = ("MEM", "used/allocated (310M/1G) when the guest's balloon driver reports its use; "
                      "else the allocation alone (1G)")
"""What the table's memory cell says, for the help screen."""
DISK_HELP = ("DISK", "a running VM's disks and CDs: what they take on the host (an overlay: what was "
                     "written since it was made) / their size to the guest; wide terminals only")


def memory(vm: VM) -> str:
    """Allocated memory, preceded by what the guest says it uses when it says so (see
    :data:`MEMORY_HELP`)."""
    used = vm.figures.mem_used_mib
    if used is None:
        return size_mib(vm.memory_mib)
    return f"{size_mib(used)}/{size_mib(vm.memory_mib)}"


def disk(vm: VM) -> str:
    """What a running VM's disks (and CDs) take on the host, and their size to the guest (``12M/1G``: for
    an overlay, what the student wrote so far); ``—`` for a VM not running (bulk stats, which the
    figures come from, cover running VMs)."""
    used, size = vm.figures.disk_used_mib, vm.figures.disk_size_mib
    if used is None:
        return DASH
    taken = "<1M" if used < 1 else size_mib(used)  # a fresh overlay: a few hundred KiB
    return taken if size is None else f"{taken}/{size_mib(size)}"


def memory_detail(vm: VM) -> str:
    """The memory as the detail view says it: which figure is the guest's own."""
    used = vm.figures.mem_used_mib
    if used is None:
        return f"{size_mib(vm.memory_mib)} allocated" + (
            " (no use reported)" if vm.state.is_active else "")
    return f"{size_mib(used)} used of {size_mib(vm.memory_mib)}"


def created(stamp: str) -> str:
    """The day a VM was made (``2026-11-24``, local time) from its metadata's ISO 8601 stamp; the
    stamp as written when it is no date; ``—`` when there is none."""
    if not stamp:
        return DASH
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return printable(stamp)
    return (when.astimezone() if when.tzinfo else when).date().isoformat()


def next_boot(vm: VM) -> str:
    """What a running VM gets at its next boot, when its definition changed (``512 MiB, 2 vCPUs``:
    an approved request); "" when nothing waits."""
    parts = ([f"{vm.next_memory_mib} MiB"] if vm.next_memory_mib is not None else []) + \
        ([f"{vm.next_vcpus} vCPUs"] if vm.next_vcpus is not None else [])
    return ", ".join(parts)


def text_or_dash(value: str) -> str:
    return printable(value) if value else DASH
