"""Rate limits for the screen: bursts of updates become one apply, summaries repaint at most so often."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from core.model import Update


class Throttle:
    """Calls ``callback`` soon after :meth:`poke`, but at most once every ``interval`` seconds.

    The first poke after a quiet spell runs on the next loop iteration; later ones wait until
    ``interval`` (plus ``slack``) has passed since the last call, and any number of pokes
    meanwhile make one call. A caller may also :meth:`fire` early when :attr:`due`.
    """

    def __init__(self, callback: Callable[[], None], interval: float, slack: float = 0.0) -> None:
        self._callback = callback
        self.interval = interval
        self.slack = slack
        self._handle: asyncio.Handle | None = None
        self._last = 0.0
        self.closed = False

    def poke(self) -> None:
        if self._handle is None and not self.closed:
            loop = asyncio.get_running_loop()
            wait = self._last + self.interval - time.monotonic()
            self._handle = (loop.call_later(wait + self.slack, self.fire) if wait > 0
                            else loop.call_soon(self.fire))

    @property
    def due(self) -> bool:
        """Whether a call now would respect the interval (to piggyback on other work)."""
        return time.monotonic() - self._last >= self.interval

    def fire(self) -> None:
        """Call now (also used to skip the wait, e.g. for a connection lost)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self.closed:
            self._last = time.monotonic()
            self._callback()

    def close(self) -> None:
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Coalescer:
    """Collects :class:`Update` batches and hands them to ``apply`` together, through a Throttle.

    A storm costs one table pass per ``interval`` while each change still reaches the screen
    within ``interval`` plus a frame.
    """

    def __init__(self, apply: Callable[[list[Update]], None], interval: float = 0.03) -> None:
        self._apply = apply
        self._pending: list[Update] = []
        self._throttle = Throttle(self._flush, interval)

    @property
    def closed(self) -> bool:
        return self._throttle.closed

    def push(self, update: Update) -> None:
        if not self.closed:
            self._pending.append(update)
            self._throttle.poke()

    def flush(self) -> None:
        self._throttle.fire()

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._apply(pending)

    def close(self) -> None:
        self._throttle.close()
        self._pending.clear()
