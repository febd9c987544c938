"""A bounded history of each VM's figures, fed by the ``stats`` changes, for the detail sparklines."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from core.model import VM, Key

SERIES = ("cpu", "memory", "disk", "network")


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else (a or 0.0) + (b or 0.0)


@dataclass
class Series:
    """The last ``size`` samples of one VM; a figure the driver does not report is not recorded."""

    size: int
    cpu: deque[float] = field(init=False)
    memory: deque[float] = field(init=False)
    disk: deque[float] = field(init=False)
    network: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        for name in SERIES:
            setattr(self, name, deque(maxlen=self.size))

    def add(self, vm: VM) -> None:
        f = vm.figures
        for name, value in (("cpu", f.cpu_percent), ("memory", f.mem_used_mib),
                            ("disk", _sum(f.disk_read_bps, f.disk_write_bps)),
                            ("network", _sum(f.net_rx_bps, f.net_tx_bps))):
            if value is not None:
                getattr(self, name).append(value)


class StatsHistory:
    """Per-VM series, bounded in length; forgotten when the VM goes away."""

    def __init__(self, size: int = 90) -> None:
        self.size = size
        self._series: dict[Key, Series] = {}

    def record(self, vm: VM) -> None:
        series = self._series.get(vm.key)
        if series is None:
            series = self._series[vm.key] = Series(self.size)
        series.add(vm)

    def get(self, key: Key) -> Series:
        return self._series.get(key) or Series(self.size)

    def forget(self, key: Key) -> None:
        self._series.pop(key, None)

    def __len__(self) -> int:
        return len(self._series)
