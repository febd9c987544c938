"""A clock that only tests move: stores and servers take it instead of ``time.time``."""

from __future__ import annotations

import time


class Clock:
    """Real time (or ``start``, fixed) plus ``offset``, which a test moves forward."""

    def __init__(self, start: float | None = None) -> None:
        self.start = start
        self.offset = 0.0

    def __call__(self) -> float:
        return (time.time() if self.start is None else self.start) + self.offset
