"""One libvirt connection feeding the inventory: events, reconnection (its figures: ``sampler``).

Everything here runs on the core loop (:mod:`core.virt.eventloop`). Event callbacks only record and
schedule; every blocking libvirt call goes through :meth:`Host.call`, which runs it in a thread.
It stays one class: connecting, the event callbacks, the re-reads they schedule and the address
look-ups share one state (the open connection, the events seen per domain, the closing flag),
which a split would pass around rather than hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import libvirt

from core import failpoints
from core.errors import HypervisorUnavailable, VMManagerError, from_libvirt
from core.model import VM, ConnState, Figures, HostFigures, HostStatus, VMState
from core.virt import domainxml
from core.virt.inventory import Inventory
from core.virt.sampler import StatsSampler

log = logging.getLogger(__name__)
T = TypeVar("T")

# What each lifecycle event means for the state, before a refresh confirms it.
_EVENT_STATE = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: VMState.SHUTOFF,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: VMState.PMSUSPENDED,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: VMState.CRASHED,
}
# Events whose state above is the whole change (a pause changes neither definition nor process).
_EXACT = frozenset({libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_RESUMED})
_EVENT_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "paused",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "suspended by guest",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
_IP_RETRY_DELAYS = (3.0, 10.0, 30.0, 60.0, 120.0)
_LEASE = libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE
_AGENT = libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT
ALL_ADDRESS_SOURCES = (_LEASE, _AGENT)
IP_LOOKUP_CONCURRENCY = 8  # domains whose addresses one (re)sync looks up at once


def address_sources(info: domainxml.DomainInfo) -> tuple[int, ...]:
    """Who can tell a running domain's addresses: libvirt's DHCP leases, for an interface on a
    libvirt network; the guest agent, when the domain has its channel and libvirt does not know it
    disconnected. Empty: nobody can (no interface, no agent), so nothing is asked or waited for."""
    sources = []
    if any(interface.kind == "network" for interface in info.interfaces):
        sources.append(_LEASE)
    if info.agent_state is not None and info.agent_state != "disconnected":
        sources.append(_AGENT)
    return tuple(sources)


def host_name_for(uri: str) -> str:
    """A short, stable name for the host column: the URI's host part, else ``localhost``."""
    return urlsplit(uri).hostname or "localhost"


def reachable_addresses(found: dict[str, Any]) -> tuple[str, ...]:
    """The addresses of ``interfaceAddresses``' answer that reach the VM from outside, written as
    :mod:`ipaddress` writes them, sorted.

    The guest agent's answer is the guest's to make: a student who is root there can put any text
    in an ``ip-address`` (terminal escapes, a line break and a made-up row). Only what parses as
    an IPv4 or IPv6 address is kept (an IPv6 scope, ``%`` and any text, is dropped with its
    address); loopback, link-local, multicast and unspecified ones are not a way in.
    """
    kept = []
    for iface_name, iface in found.items():
        if iface_name == "lo":
            continue
        for entry in iface.get("addrs") or []:
            try:
                address = ipaddress.ip_address(entry.get("addr"))
            except ValueError:
                continue
            if (getattr(address, "scope_id", None) or address.is_loopback or address.is_link_local
                    or address.is_multicast or address.is_unspecified):
                continue
            kept.append(str(address))
    return tuple(sorted(kept))


WORKERS = 16  # libvirt calls one connection makes at once (its pool's threads, made as needed, kept)
WORKER_NAME = "vmm-libvirt"
"""The operating system's name of those threads (``ps -L``, ``top -H``; at most 15 characters): the
soak tells this bounded pool from threads that would leak."""


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` where the system shows it (Python names threads only for
    itself); nothing where /proc cannot say it."""
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(name[:15])


class Host:
    """The connection to one hypervisor, and the inventory rows it owns."""

    def __init__(self, uri: str, inventory: Inventory, *, stats_interval: float = 2.0,
                 keepalive: tuple[int, int] = (5, 3), reconnect_max_delay: float = 30.0,
                 demo: bool = False, name: str | None = None, look_up_addresses: bool = True,
                 sample_figures: bool = True) -> None:
        """``look_up_addresses`` / ``sample_figures``: False for a one-shot reader that shows no
        address (``share``) / no figures (any one-shot command: a rate needs two samples)."""
        self.uri = uri
        self.name = name or host_name_for(uri)
        self.demo = demo
        self.inventory = inventory
        self.stats_interval = stats_interval
        self.keepalive = keepalive
        self.reconnect_max_delay = reconnect_max_delay
        self.conn: libvirt.virConnect | None = None
        self._driver = ""  # the connection's getType(), once open
        self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix=f"libvirt-{self.name}",
                                           initializer=name_os_thread, initargs=(WORKER_NAME,))
        self._callback_ids: list[int] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._addresses: asyncio.Task[Any] | None = None
        self.look_up_addresses = look_up_addresses
        self.sample_figures = sample_figures
        # Per domain, the sources its addresses can come from (see address_sources), as last read.
        self._address_sources: dict[str, tuple[int, ...]] = {}
        self._dirty: set[str] = set()
        # Events seen per domain: a read that started before the latest event is stale.
        self._events_seen: dict[str, int] = {}
        self._refresh_task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self.sampler = StatsSampler(self)
        self._started_at: dict[str, float] = {}
        self._closing = False
        self._status = HostStatus(self.name, uri, ConnState.DISCONNECTED, demo=demo)

    # -- public --
    @property
    def status(self) -> HostStatus:
        return self._status

    @property
    def remote(self) -> bool:
        """True when the hypervisor runs on another machine (its files are not ours to touch)."""
        return urlsplit(self.uri).hostname not in (None, "", "localhost")

    @property
    def test_driver(self) -> bool:
        """libvirt's test driver (the demo lab): asked of the connection once it is open, so a URI
        alias counts too."""
        return (self._driver or urlsplit(self.uri).scheme.split("+")[0]).lower() == "test"

    @property
    def files_local(self) -> bool:
        """Whether the file paths in this host's domains are files of this machine, ours to touch:
        not on a remote host, and never on the test driver, whose storage is fictional."""
        return not self.remote and not self.test_driver

    @property
    def has_figures(self) -> bool:
        """libvirt's test driver reports no CPU or I/O figures: show none rather than invent them."""
        return not self.test_driver

    async def connect(self) -> None:
        """Open the connection and fill the inventory; raise HypervisorUnavailable on failure."""
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._set_status(ConnState.CONNECTING, "connecting")
        try:
            await self._open()
        except HypervisorUnavailable as exc:
            self._set_status(ConnState.DISCONNECTED, exc.message)
            raise

    async def close(self) -> None:
        """Deregister every callback, then the close callback, then close; stop background tasks."""
        self._closing = True  # from here on, events record nothing and schedule nothing
        tasks = [t for t in (self._stats_task, self._refresh_task, self._reconnect_task, *self._tasks)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Calls already in worker threads must finish before the connection goes away under them.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self.executor.shutdown, cancel_futures=True))
        conn, self.conn = self.conn, None
        if conn is not None:
            await loop.run_in_executor(None, self._teardown, conn)
        self._set_status(ConnState.DISCONNECTED, "closed")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking libvirt call in a worker thread; libvirt errors become VMManagerErrors."""
        try:
            return await self._run(fn, *args)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc) from exc

    def connection(self) -> libvirt.virConnect:
        if self.conn is None:
            raise HypervisorUnavailable(f"not connected to {self.uri} ({self._status.message})")
        return self.conn

    def domain(self, uuid: str) -> libvirt.virDomain:
        """Look up a domain by UUID (blocking: call inside :meth:`call`)."""
        return self.connection().lookupByUUIDString(uuid)

    async def refresh(self, uuid: str) -> None:
        """Re-read one domain now (after an action, or on demand)."""
        self._mark_dirty(uuid)
        if self._refresh_task is not None:
            await asyncio.shield(self._refresh_task)

    async def refresh_ips(self, uuid: str) -> tuple[str, ...]:
        ips = await self._run(self._read_ips, uuid)
        vm = self.inventory.get((self.name, uuid))
        if vm is not None:
            self.inventory.put(replace(vm, ips=ips))
        return ips

    # -- connecting --
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closing:
            raise HypervisorUnavailable(f"the connection to {self.uri} is closing")
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _open(self) -> None:
        try:
            conn = await self._run(libvirt.open, self.uri)
        except libvirt.libvirtError as exc:
            raise HypervisorUnavailable(
                f"cannot connect to {self.uri}: {exc.get_error_message() or exc}") from exc
        self.conn = conn
        with contextlib.suppress(libvirt.libvirtError):
            self._driver = await self._run(conn.getType)
        self._callback_ids = await self._run(self._register, conn)
        try:
            await self._resync()
        except Exception as exc:
            self.conn = None
            await self._run(self._teardown, conn)
            raise HypervisorUnavailable(f"cannot read {self.uri}: {from_libvirt(exc).message}") from exc
        self._set_status(ConnState.ACTIVE, "connected")
        log.info("connected to %s (%d VMs)", self.uri,
                 sum(1 for vm in self.inventory.vms() if vm.host == self.name))
        if self.sample_figures:
            self._stats_task = asyncio.create_task(self.sampler.run(), name=f"stats-{self.name}")

    def _register(self, conn: libvirt.virConnect) -> list[int]:
        """Keepalive, close callback and domain event callbacks (runs in a worker thread)."""
        with contextlib.suppress(libvirt.libvirtError):  # the test driver has no keepalive
            conn.setKeepAlive(*self.keepalive)
        with contextlib.suppress(libvirt.libvirtError):
            conn.registerCloseCallback(self._on_close, None)
        handlers: dict[int, Callable[..., None]] = {
            libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE: self._on_lifecycle,
            libvirt.VIR_DOMAIN_EVENT_ID_REBOOT: self._on_reboot,
            libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE: self._on_changed,
            libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED: self._on_changed,
            libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED: self._on_changed,
            libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE: self._on_agent,
        }
        ids = []
        for event_id, handler in handlers.items():
            with contextlib.suppress(libvirt.libvirtError):
                ids.append(conn.domainEventRegisterAny(None, event_id, handler, None))
        return ids

    def _teardown(self, conn: libvirt.virConnect) -> None:
        for callback_id in self._callback_ids:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(callback_id)
        self._callback_ids = []
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    def _on_close(self, conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        """libvirt's close callback: show the loss at once, then reconnect.

        libvirt may call it from whichever thread noticed the loss (one blocked in an RPC), so
        it only hands over to the core loop.
        """
        reasons = {libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "I/O error",
                   libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "the daemon closed the connection",
                   libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timed out"}
        self._loop.call_soon_threadsafe(self._lost, conn, reasons.get(reason, "connection closed"))

    def _lost(self, conn: libvirt.virConnect, why: str) -> None:
        if self.conn is None or self._closing or conn is not self.conn:
            return  # already handled, closing on purpose, or a previous connection's late call
        log.warning("lost %s: %s", self.uri, why)
        self.conn = None
        if self._stats_task is not None:
            self._stats_task.cancel()
        self._set_status(ConnState.DISCONNECTED, f"lost: {why}; reconnecting")
        self.inventory.fail_waiters(self.name, HypervisorUnavailable(f"lost {self.uri}: {why}"))
        self._spawn(self._run(self._teardown, conn))
        self._reconnect_task = asyncio.create_task(self._reconnect(), name=f"reconnect-{self.name}")

    async def _reconnect(self) -> None:
        delay = 0.5
        while not self._closing:
            await asyncio.sleep(delay)
            self._set_status(ConnState.CONNECTING, "reconnecting")
            try:
                await self._open()
                log.info("reconnected to %s", self.uri)
                return
            except HypervisorUnavailable as exc:
                self._set_status(ConnState.DISCONNECTED, f"{exc.message}; retrying in {delay:.0f} s")
                delay = min(delay * 2, self.reconnect_max_delay)

    def set_figures(self, figures: HostFigures) -> None:
        """The host's CPU and memory, from the latest sample (:class:`core.virt.sampler.StatsSampler`)."""
        self._set_status(self._status.state, self._status.message, figures)

    def _set_status(self, state: ConnState, message: str,
                    figures: HostFigures | None = None) -> None:
        self._status = HostStatus(self.name, self.uri, state, self.demo, message,
                                  figures or self._status.figures)
        self.inventory.set_host(self._status)

    # -- reading domains (worker threads) --
    def _read(self, dom: libvirt.virDomain) -> VM:
        state, _reason = dom.state()
        info = domainxml.parse(dom.XMLDesc(0))
        vm_state = VMState.from_libvirt(state)
        uuid = info.uuid
        self._address_sources[uuid] = address_sources(info)
        started = self._started_at.get(uuid) if vm_state.is_active else None
        if vm_state.is_active and started is None:
            started = self._process_start(info.name)
            if started is not None:
                self._started_at[uuid] = started
        old = self.inventory.get((self.name, uuid))
        persistent = bool(dom.isPersistent())
        next_vcpus = next_memory = None
        if vm_state.is_active and persistent:  # what an approved request changed waits for the next boot
            defined = domainxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            next_vcpus = defined.vcpus if defined.vcpus != info.vcpus else None
            next_memory = defined.memory_mib if defined.max_memory_mib != info.max_memory_mib else None
        return VM(
            host=self.name, uuid=uuid, name=info.name, state=vm_state, vcpus=info.vcpus,
            memory_mib=info.memory_mib, meta=info.meta, next_vcpus=next_vcpus, next_memory_mib=next_memory,
            ips=old.ips if old is not None and vm_state.is_active else (),
            started_at=started,
            figures=old.figures if old is not None and vm_state.is_active else Figures(),
            persistent=persistent,
        )

    def _read_all(self) -> list[VM]:
        vms = []
        for dom in self.connection().listAllDomains(0):
            try:
                vms.append(self._read(dom))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone meanwhile: skip it
                    raise
        return vms

    def _read_uuids(self, uuids: set[str]) -> tuple[list[VM], list[str]]:
        found, gone = [], []
        for uuid in uuids:
            try:
                found.append(self._read(self.domain(uuid)))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                gone.append(uuid)
        return found, gone

    def _process_start(self, name: str) -> float | None:
        """Start time of the QEMU process, read from its pid file (local qemu driver only)."""
        if not self.uri.startswith("qemu:///"):
            return None
        rundir = "/run/libvirt/qemu" if self.uri.endswith("system") else \
            os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/run"), "libvirt/qemu/run")
        try:
            with open(os.path.join(rundir, f"{name}.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/stat") as f:
                ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
            with open("/proc/stat") as f:
                boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        except (OSError, ValueError, IndexError, StopIteration):
            return None
        return boot + ticks / os.sysconf("SC_CLK_TCK")

    def _read_ips(self, uuid: str, sources: tuple[int, ...] = ALL_ADDRESS_SOURCES) -> tuple[str, ...]:
        """The DHCP leases' addresses, else the guest agent's (a guest's own word: see
        :func:`reachable_addresses`)."""
        failpoints.hit("ip-lookup", uuid)
        dom = self.domain(uuid)
        for source in sources:
            try:
                found = dom.interfaceAddresses(source, 0) or {}
            except libvirt.libvirtError:
                continue
            ips = reachable_addresses(found)
            if ips:
                return ips
        return ()

    async def _resync(self) -> None:
        self._dirty.clear()
        seen = dict(self._events_seen)
        vms = await self._run(self._read_all)
        current, stale = self._fresh(vms, seen)
        # Domains an event touched while the list was being read but that it does not show (one
        # defined just after the list was taken): their own re-read has put them, or will.
        listed = {vm.uuid for vm in vms}
        touched = [uuid for uuid, count in self._events_seen.items()
                   if count != seen.get(uuid, 0) and uuid not in listed]
        recheck = [*stale, *touched]
        keep = [vm for uuid in recheck if (vm := self.inventory.get((self.name, uuid))) is not None]
        self.inventory.replace_host(self.name, current + keep)
        for uuid in recheck:
            self._mark_dirty(uuid)
        askable = [vm.uuid for vm in current if vm.state.is_active and self._address_sources.get(vm.uuid)]
        self._addresses = None
        if askable and self.look_up_addresses:
            self._addresses = self._spawn(self._look_up_ips(askable))

    async def addresses_looked_up(self) -> None:
        """Wait for the address look-up of the last (re)sync: a one-shot reader (``list``) wants
        the IPs, which the look-up adds after the rows."""
        if self._addresses is not None:
            await asyncio.shield(self._addresses)

    async def _look_up_ips(self, uuids: list[str]) -> None:
        """The addresses of the running VMs after a (re)sync: one worker job, not one per VM."""
        try:
            found = await self._run(self._read_ips_many, uuids)
        except (libvirt.libvirtError, VMManagerError):
            return
        for uuid, ips in found.items():
            vm = self.inventory.get((self.name, uuid))
            if vm is not None and ips and vm.state.is_active:
                self.inventory.put(replace(vm, ips=ips))

    def _read_ips_many(self, uuids: list[str]) -> dict[str, tuple[str, ...]]:
        """One pass over ``uuids``, a few at once (a slow guest agent delays only its own VM), each
        asking only the sources its definition has."""
        def read(uuid: str) -> tuple[str, ...] | None:
            try:
                return self._read_ips(uuid, self._address_sources.get(uuid, ALL_ADDRESS_SOURCES))
            except libvirt.libvirtError:
                return None

        if not uuids:
            return {}
        with ThreadPoolExecutor(max_workers=min(IP_LOOKUP_CONCURRENCY, len(uuids)),
                                thread_name_prefix=f"ips-{self.name}") as pool:
            answers = list(pool.map(read, uuids))
        return {uuid: ips for uuid, ips in zip(uuids, answers, strict=True) if ips is not None}

    # -- events (core loop: record and schedule, nothing blocking) --
    def _on_lifecycle(self, _conn: object, dom: libvirt.virDomain, event: int, detail: int,
                      _opaque: object) -> None:
        if self._closing:
            return
        uuid = dom.UUIDString()
        self._events_seen[uuid] = self._events_seen.get(uuid, 0) + 1
        key = (self.name, uuid)
        what = _EVENT_NAMES.get(event, f"event {event}")
        if event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
            self.inventory.remove(key)
            self._started_at.pop(uuid, None)
            self._address_sources.pop(uuid, None)
            self._events_seen.pop(uuid, None)  # a read in flight now differs, and is re-done
            return
        vm = self.inventory.get(key)
        state = _EVENT_STATE.get(event)
        if event == libvirt.VIR_DOMAIN_EVENT_RESUMED and (
                vm is None or vm.state not in (VMState.PAUSED, VMState.PMSUSPENDED)):
            state = None  # QEMU also sends RESUMED while booting, before STARTED: not a resume
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            self._started_at[uuid] = time.time()
            self._spawn(self._look_for_ips(uuid))
        elif event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._started_at.pop(uuid, None)
            self.sampler.forget(uuid)
        if vm is not None and state is not None:
            active = state.is_active
            self.inventory.put(replace(
                vm, state=state, started_at=self._started_at.get(uuid) if active else None,
                ips=vm.ips if active else (), figures=vm.figures if active else Figures()), what=what)
            if event in _EXACT:
                return  # the event says all there is: no need to read the domain again
        self._mark_dirty(uuid)

    def _on_reboot(self, _conn: object, dom: libvirt.virDomain, _opaque: object) -> None:
        vm = self.inventory.get((self.name, dom.UUIDString()))
        if vm is not None:
            self.inventory.put(replace(vm, started_at=time.time()), what="rebooted")

    def _on_changed(self, _conn: object, dom: libvirt.virDomain, *_args: object) -> None:
        self._mark_dirty(dom.UUIDString())

    def _on_agent(self, _conn: object, dom: libvirt.virDomain, state: int, _reason: int,
                  _opaque: object) -> None:
        if state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
            self._spawn(self._look_for_ips(dom.UUIDString(), delays=(0.0,)))

    def _mark_dirty(self, uuid: str) -> None:
        if self._closing:
            return
        self._dirty.add(uuid)
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = asyncio.create_task(self._refresh_dirty())

    async def _refresh_dirty(self) -> None:
        """Re-read every domain an event touched, in one worker job per batch."""
        while self._dirty and self.conn is not None:
            uuids, self._dirty = self._dirty, set()
            seen = dict(self._events_seen)
            try:
                found, gone = await self._run(self._read_uuids, uuids)
            except (libvirt.libvirtError, VMManagerError) as exc:
                log.warning("refresh failed on %s: %s", self.uri, from_libvirt(exc).message)
                return
            current, stale = self._fresh(found, seen)
            self._dirty.update(stale)  # an event came while reading: read those again
            for vm in current:
                self.inventory.put(vm)
            for uuid in gone:
                self.inventory.remove((self.name, uuid))

    def _fresh(self, vms: list[VM], seen: dict[str, int]) -> tuple[list[VM], list[str]]:
        """Split reads into those still current and the UUIDs an event overtook meanwhile."""
        current, stale = [], []
        for vm in vms:
            if self._events_seen.get(vm.uuid, 0) == seen.get(vm.uuid, 0):
                current.append(vm)
            else:
                stale.append(vm.uuid)
        return current, stale

    async def _look_for_ips(self, uuid: str, delays: tuple[float, ...] = _IP_RETRY_DELAYS) -> None:
        """Look a started VM's addresses up a few times while DHCP and the agent come up; not per tick."""
        for delay in delays:
            await asyncio.sleep(delay)
            vm = self.inventory.get((self.name, uuid))
            if vm is None or not vm.state.is_active or self.conn is None:
                return
            try:
                if await self.refresh_ips(uuid):
                    return
            except (libvirt.libvirtError, VMManagerError):
                return

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        if self._closing:
            coro.close()
            return None
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
