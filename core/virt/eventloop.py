"""The process-wide asyncio loop that dispatches libvirt events.

``libvirtaio.virEventRegisterAsyncIOImpl`` can be called only once per process and binds libvirt
to one asyncio loop for good, while consumers come and go with loops of their own (every Textual
test runs on a new loop; the CLI uses ``asyncio.run``). So the core owns one loop, in a daemon
thread, registered once; all inventory state lives on it. Consumers reach it through
:func:`run_on_core`, which awaits a core coroutine from any loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import libvirt
import libvirtaio

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_impl: ThreadSafeAsyncIOImpl | None = None  # the one registered with libvirt, kept alive here


class ThreadSafeAsyncIOImpl(libvirtaio.virEventAsyncIOImpl):  # type: ignore[misc]  # libvirtaio has no types
    """libvirtaio's event implementation, safe to drive from worker threads.

    libvirt calls these hooks from whichever thread makes an API call (the remote driver updates
    its socket watch around every RPC), while libvirtaio touches the asyncio loop directly, which
    only the loop's own thread may do. Here every hook is queued to the loop thread in call order;
    only the new watch or timer id is handed out at once, as libvirt needs it synchronously.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._ids = itertools.count(1)

    def _queue(self, hook: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(hook, *args)

    def _add_handle(self, fd: int, event: int, cb: Any, opaque: Any) -> int:
        iden = next(self._ids)
        self._queue(self._added_handle, iden, fd, event, cb, opaque)
        return iden

    def _added_handle(self, iden: int, fd: int, event: int, cb: Any, opaque: Any) -> None:
        callback = libvirtaio.FDCallback(self, cb, opaque, descriptor=self.descriptors[fd], event=event)
        callback.iden = iden
        self.callbacks[iden] = callback
        self.descriptors[fd].add_handle(callback)
        self._pending_inc()

    def _update_handle(self, watch: int, event: int) -> None:
        self._queue(super()._update_handle, watch, event)

    def _remove_handle(self, watch: int) -> int:
        self._queue(super()._remove_handle, watch)
        return 0

    def _add_timeout(self, timeout: int, cb: Any, opaque: Any) -> int:
        iden = next(self._ids)
        self._queue(self._added_timeout, iden, timeout, cb, opaque)
        return iden

    def _added_timeout(self, iden: int, timeout: int, cb: Any, opaque: Any) -> None:
        callback = libvirtaio.TimeoutCallback(self, cb, opaque)
        callback.iden = iden
        self.callbacks[iden] = callback
        callback.update(timeout=timeout)
        self._pending_inc()

    def _update_timeout(self, timer: int, timeout: int) -> None:
        self._queue(super()._update_timeout, timer, timeout)

    def _remove_timeout(self, timer: int) -> int:
        self._queue(super()._remove_timeout, timer)
        return 0


def _silence_libvirt_stderr(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default, which would scribble over the TUI."""


def core_loop() -> asyncio.AbstractEventLoop:
    """The core's loop, started (and registered with libvirt) on first use."""
    global _loop
    with _lock:
        if _loop is None:
            libvirt.registerErrorHandler(_silence_libvirt_stderr, None)
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                global _impl
                _impl = ThreadSafeAsyncIOImpl(loop).register()
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="libvirt-events", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def on_core_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule a coroutine on the core loop from any thread."""
    return asyncio.run_coroutine_threadsafe(coro, core_loop())


async def run_on_core(coro: Coroutine[Any, Any, T]) -> T:
    """Await a coroutine that must run on the core loop, from whatever loop the caller is on."""
    if on_core_loop():
        return await coro
    return await asyncio.wrap_future(submit(coro))


def call_soon(callback: Any, *args: Any) -> None:
    """Run a plain callback on the core loop (thread-safe)."""
    core_loop().call_soon_threadsafe(callback, *args)


async def drain() -> None:
    """Let libvirt's pending free-callbacks run (core loop), after a connection has closed.

    Closing a connection makes libvirt remove its watches and timers; each removal queues a
    callback that frees libvirt's side of it. A process that exits before they run can crash in
    libvirt at exit. They are queued ahead of the close's own completion, so a couple of loop
    iterations suffice. (``virEventAsyncIOImpl.drain`` waits for *every* connection's handles,
    so it never returns while another connection of the process is open.)
    """
    for _ in range(3):
        await asyncio.sleep(0)
