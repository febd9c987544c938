"""The live inventory: the one place that holds what the core knows of every VM.

It is fed by :class:`core.virt.connection.Host` (libvirt events, bulk stats, resyncs) and read by consumers.
All methods run on the core loop (see :mod:`core.virt.eventloop`); consumers get batches of
:class:`~core.model.Change` through :meth:`Inventory.subscribe` and never mutate it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from core.model import VM, Change, HostStatus, Key, Update

Subscriber = Callable[[Update], None]


@dataclass(slots=True)
class _Waiter:
    key: Key
    predicate: Callable[[VM | None], bool]
    future: asyncio.Future[VM | None] = field(repr=False)


class Inventory:
    """Records of every VM of every host, keyed by ``(host, uuid)``."""

    def __init__(self) -> None:
        self._vms: dict[Key, VM] = {}
        self._hosts: dict[str, HostStatus] = {}
        self._subscribers: list[Subscriber] = []
        self._pending: list[Change] = []
        self._pending_hosts: dict[str, HostStatus] = {}
        self._flush_scheduled = False
        self._causes: dict[Key, tuple[str, float]] = {}
        self._waiters: list[_Waiter] = []
        self._halting: dict[Key, float] = {}  # halts this process waits on: their power-off times

    # -- reading (safe from any thread: returns copies of immutable records) --
    def vms(self) -> list[VM]:
        return list(self._vms.copy().values())

    def get(self, key: Key) -> VM | None:
        return self._vms.get(key)

    # -- subscribing --
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` (on the core loop) with every batch of changes from now on."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    # -- writing (core loop only) --
    def expect(self, key: Key, cause: str, within: float = 120.0) -> None:
        """Attribute the changes of ``key`` in the next ``within`` seconds to ``cause`` (an action).

        For the event log: "net101-bob running → shutoff (halt)". Actions call it again with a short
        ``within`` when they finish, for the events that trail the call that caused them.
        """
        self._causes[key] = (cause, time.monotonic() + within)

    def put(self, vm: VM, what: str = "") -> None:
        """Add or replace a record; notifies only when something differs. A VM being halted keeps
        its ``halting_until`` while it runs (the hosts' records know nothing of it)."""
        deadline = self._halting.get(vm.key)
        if deadline is not None and not vm.state.is_active:
            del self._halting[vm.key]
            deadline = None
        if vm.halting_until != deadline:
            vm = replace(vm, halting_until=deadline)
        old = self._vms.get(vm.key)
        if old == vm:
            return
        self._vms[vm.key] = vm
        kind = "added" if old is None else "changed"
        cause = self._take_cause(vm.key) if what != "stats" else None
        self._emit(Change(kind, vm, cause, what or _describe(old, vm)))

    def halting_until(self, key: Key) -> float | None:
        """When the halt this process waits on powers the VM off; None when none is under way."""
        return self._halting.get(key)

    def begin_halt(self, key: Key, deadline: float) -> float | None:
        """Mark the VM as halting until ``deadline`` (``time.time()``) — unless a halt is already
        under way: then its deadline, and nothing changes."""
        if key in self._halting:
            return self._halting[key]
        self._halting[key] = deadline
        if (vm := self._vms.get(key)) is not None:
            self.put(vm, "halting")
        return None

    def end_halt(self, key: Key) -> None:
        """The halt is over (stopped, forced off, or failed): the mark goes."""
        if self._halting.pop(key, None) is not None and (vm := self._vms.get(key)) is not None:
            self.put(vm, "halt over")

    def remove(self, key: Key, what: str = "undefined") -> None:
        self._halting.pop(key, None)
        vm = self._vms.pop(key, None)
        if vm is not None:
            self._emit(Change("removed", vm, self._take_cause(key), what))

    def replace_host(self, host: str, vms: Iterable[VM]) -> None:
        """Make ``host``'s records exactly ``vms`` (a full resync): no stale and no duplicate rows."""
        fresh = {vm.key: vm for vm in vms}
        for key in [k for k in self._vms if k[0] == host and k not in fresh]:
            self.remove(key, what="gone (resync)")
        for vm in fresh.values():
            self.put(vm)

    def set_host(self, status: HostStatus) -> None:
        if self._hosts.get(status.name) == status:
            return
        self._hosts[status.name] = status
        self._pending_hosts[status.name] = status
        self._schedule_flush()

    # -- waiting for a state, event-driven --
    def watch(self, key: Key, predicate: Callable[[VM | None], bool]) -> asyncio.Future[VM | None]:
        """A future resolved as soon as the record of ``key`` satisfies ``predicate``.

        ``None`` stands for "removed". Registered at once, so a change that happens right after
        (an event racing the action that caused it) is not missed. Release it with :meth:`unwatch`.
        """
        future: asyncio.Future[VM | None] = asyncio.get_running_loop().create_future()
        current = self._vms.get(key)
        if predicate(current):
            future.set_result(current)
        else:
            self._waiters.append(_Waiter(key, predicate, future))
        return future

    def unwatch(self, future: asyncio.Future[VM | None]) -> None:
        self._waiters = [w for w in self._waiters if w.future is not future]

    async def wait_for(self, key: Key, predicate: Callable[[VM | None], bool]) -> VM | None:
        """Wait (no polling) until ``predicate`` holds; bound it with ``asyncio.timeout``."""
        future = self.watch(key, predicate)
        try:
            return await future
        finally:
            self.unwatch(future)

    def fail_waiters(self, host: str, error: BaseException) -> None:
        for waiter in [w for w in self._waiters if w.key[0] == host]:
            if not waiter.future.done():
                waiter.future.set_exception(error)

    # -- internals --
    def _take_cause(self, key: Key) -> str | None:
        entry = self._causes.get(key)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._causes[key]
            return None
        return entry[0]

    def _emit(self, change: Change) -> None:
        self._pending.append(change)
        for waiter in self._waiters:
            if waiter.key == change.vm.key and not waiter.future.done():
                current = None if change.kind == "removed" else change.vm
                if waiter.predicate(current):
                    waiter.future.set_result(current)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Hand everything that changed during this loop iteration to subscribers, as one batch."""
        self._flush_scheduled = False
        update = Update(tuple(self._pending), tuple(self._pending_hosts.values()))
        self._pending.clear()
        self._pending_hosts.clear()
        for subscriber in list(self._subscribers):
            subscriber(update)


def _describe(old: VM | None, new: VM) -> str:
    if old is None:
        return "appeared"
    if old.state != new.state:
        return f"{old.state} → {new.state}"
    if old.meta != new.meta:
        return "metadata changed"
    if old.ips != new.ips:
        return "addresses: " + (", ".join(new.ips) or "none")
    if old.figures != new.figures:
        return "stats"
    return "definition changed"
