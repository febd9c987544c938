"""The facade every consumer uses: which hosts to talk to, the shared inventory, the actions.

Methods are awaitable from any asyncio loop; the work itself runs on the core loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from core import failpoints
from core.demo import demo_settings, remove_scratch
from core.errors import ActionFailed, ConfigError, InvalidInput, NotFound, VMManagerError, from_libvirt
from core.lifecycle.actions import Action, ActionResult
from core.lifecycle.ownership import Protected
from core.lifecycle.resources import write_resources
from core.lifecycle.runner import run_bulk
from core.lifecycle.snapshots import SnapshotInfo, list_snapshots
from core.metadata import NAMESPACE, PREFIX
from core.model import VM, HostStatus, Key, Student, Update
from core.names import check_class_name, check_username
from core.provision.guests.answer_cd import AnswerCDEjector
from core.provision.templates import Template, load_templates
from core.records.audit import Actor, AuditLog, Item
from core.records.mail import notify_answer
from core.records.requests import Kind, Request, RequestStore, Status
from core.settings import Settings
from core.virt import domainxml, eventloop
from core.virt.connection import Host
from core.virt.inventory import Inventory

if TYPE_CHECKING:  # imported where used: starting the TUI needs neither
    from core import provision
    from core.provision import doctor

log = logging.getLogger(__name__)

DEMO_LAB = Path(__file__).parent / "demo" / "lab.xml"
DEMO_URI = f"test://{DEMO_LAB}"
SYSTEM_URI = "qemu:///system"
_SYSTEM_SOCKETS = ("/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock")


def system_socket_answers() -> bool:
    """Whether a local libvirtd (or virtqemud) accepts connections on its system socket."""
    for path in _SYSTEM_SOCKETS:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(path)
                return True
            except OSError:
                continue
    return False


def choose_uri(settings: Settings, explicit: str | None = None) -> tuple[str, bool]:
    """``-c URI``, else ``LIBVIRT_DEFAULT_URI``, else qemu:///system if it answers, else the demo.

    Returns the URI and whether it is the built-in demo lab.
    """
    uri = explicit or settings.connect_uri
    if uri:
        return uri, uri == DEMO_URI
    if system_socket_answers():
        return SYSTEM_URI, False
    return DEMO_URI, True


ABANDONED = "left unfinished: the operator quit before it ended"


@dataclass
class InFlight:
    """An action under way on some VMs, and the results in so far (told on the core loop, read on
    the caller's: hence the lock)."""

    action: str
    vms: tuple[VM, ...]
    actor: Actor
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    abandoned: bool = False
    _results: dict[Key, ActionResult] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, result: ActionResult) -> None:
        with self._lock:
            self._results[result.vm.key] = result

    def results(self) -> list[ActionResult]:
        with self._lock:
            return list(self._results.values())

    def pending(self) -> list[VM]:
        """The VMs whose action has not finished yet."""
        with self._lock:
            return [vm for vm in self.vms if vm.key not in self._results]


class Lab:
    """Hosts feeding one inventory, and the actions on their VMs."""

    def __init__(self, settings: Settings, hosts: Iterable[Host], inventory: Inventory) -> None:
        self.settings = settings
        self.inventory = inventory
        self.hosts = {host.name: host for host in hosts}
        self.actor = Actor.local("cli")
        """Who acts when a call names nobody: the TUI sets its own; the web names each user."""
        self._ejectors: list[AnswerCDEjector] = []
        self._in_flight: list[InFlight] = []
        self._scratch: Path | None = None  # the demo's own folder (its database), removed at close

    @functools.cached_property
    def audit(self) -> AuditLog:
        """The audit log (opened on first use: a lab that only reads never makes the database)."""
        return AuditLog(self.settings.database_path)

    def record(self, actor: Actor | None, items: Sequence[Item]) -> None:
        """Write to the audit log; a failure to write is logged, never fails the action itself."""
        try:
            self.audit.record_many(actor or self.actor, items)
        except (sqlite3.Error, OSError, VMManagerError) as exc:
            log.error("audit log not written (%s): %s", exc, items)

    def purge_audit(self) -> int:
        """Delete the audit entries older than VMM_AUDIT_DAYS (the server does, at start and
        hourly); how many went."""
        return self.audit.purge(self.settings.records.audit_days)

    def _record_results(self, actor: Actor | None, results: Iterable[ActionResult]) -> None:
        self.record(actor, [Item(r.action, r.vm.name, r.vm.uuid, "ok" if r.ok else "failed", r.message)
                            for r in results])

    @classmethod
    async def open(cls, settings: Settings, uri: str | None = None, *, addresses: bool = True,
                   figures: bool = True) -> Lab:
        """Connect (to the chosen URI) and fill the inventory; raises HypervisorUnavailable.

        For a one-shot command: ``addresses=False``, the running VMs' addresses are not looked up
        (``share`` shows none, so neither asks nor waits for them); ``figures=False``, no CPU or
        I/O figures are sampled (a rate needs two samples, and closing waits for a call under way).
        """
        chosen, demo = choose_uri(settings, uri)
        return await eventloop.run_on_core(cls._open(settings, [chosen], demo, addresses, figures))

    @classmethod
    def open_soon(cls, settings: Settings, uri: str | None = None) -> concurrent.futures.Future[Lab]:
        """Start :meth:`open` now, from any thread, even before the caller has an event loop (the TUI
        overlaps it with Textual's start); the future gives the Lab."""
        return eventloop.submit(cls.open(settings, uri))

    def close_soon(self) -> concurrent.futures.Future[None]:
        """Start :meth:`close` from any thread (a Lab opened for an app that has gone)."""
        return eventloop.submit(self.close())

    def is_remote(self, vm: VM) -> bool:
        """Whether ``vm`` runs on a hypervisor of another machine (its files and sockets are there)."""
        host = self.hosts.get(vm.host)
        return host is not None and host.remote

    @classmethod
    async def _open(cls, settings: Settings, uris: list[str], demo: bool, addresses: bool = True,
                    figures: bool = True) -> Lab:
        inventory = Inventory()
        hosts = [Host(uri, inventory, stats_interval=settings.hosts.stats_interval,
                      keepalive=(settings.hosts.keepalive_interval, settings.hosts.keepalive_count),
                      reconnect_max_delay=settings.hosts.reconnect_max_delay, demo=demo,
                      look_up_addresses=addresses, sample_figures=figures)
                 for uri in uris]
        ejectors = [AnswerCDEjector(host) for host in hosts]  # before the first sync: it sees every VM
        connected: list[Host] = []
        try:
            for host in hosts:
                await host.connect()
                connected.append(host)
        except BaseException:
            for ejector in ejectors:
                await ejector.close()
            for host in connected:  # no half-open lab: close what did connect
                await host.close()
            raise
        scratch = None
        if demo:  # its links, requests and audit stay in a database of its own, gone at close
            settings, scratch = demo_settings(settings)
        lab = cls(settings, hosts, inventory)
        lab._ejectors = ejectors
        lab._scratch = scratch
        return lab

    # -- reading --
    @property
    def demo(self) -> bool:
        return any(host.demo for host in self.hosts.values())

    def vms(self) -> list[VM]:
        return self.inventory.vms()

    def host_statuses(self) -> list[HostStatus]:
        return [host.status for host in self.hosts.values()]

    def has_figures(self, vm: VM) -> bool:
        host = self.hosts.get(vm.host)
        return host is not None and host.has_figures

    def subscribe(self, callback: Callable[[Update], None],
                  loop: asyncio.AbstractEventLoop | None = None) -> Callable[[], None]:
        """Deliver every inventory update to ``callback`` on ``loop`` (default: the caller's)."""
        target = loop or asyncio.get_running_loop()

        def deliver(update: Update) -> None:
            if not target.is_closed():
                target.call_soon_threadsafe(callback, update)

        unsubscribe = self.inventory.subscribe(deliver)
        return lambda: eventloop.call_soon(unsubscribe)

    # -- acting --
    async def act(self, action: Action | str, vms: Iterable[VM], *, halt_timeout: float | None = None,
                  snapshot: str = "", actor: Actor | None = None) -> list[ActionResult]:
        """Run an action on many VMs (``snapshot``: the name for snapshot/revert); a result per VM,
        each recorded in the audit log as ``actor``'s."""
        timeout = self.settings.actions.halt_timeout if halt_timeout is None else halt_timeout
        deleting = Action(action) == Action.DELETE
        running = InFlight(Action(action).value, tuple(vms), actor or self.actor)
        self._in_flight.append(running)
        try:
            protected = await asyncio.to_thread(self.protected) if deleting else Protected()
            reverting = Action(action) == Action.REVERT
            approved = await asyncio.to_thread(self.approved_requests) if reverting else []
            results = await eventloop.run_on_core(run_bulk(
                self.hosts, action, running.vms, concurrency=self.settings.actions.bulk_concurrency,
                halt_timeout=timeout, protected=protected, vm_root=self.settings.provision.student_vms_dir,
                socket_dir=self.settings.consoles.socket_dir, snapshot=snapshot, approved=approved,
                on_result=running.done))
        finally:
            self._in_flight.remove(running)
            running.ended.set()
        failpoints.hit("acted", running.action)  # done in libvirt, not yet in the audit log
        if not running.abandoned:
            self._record_results(actor, results)
        return results

    def approved_requests(self) -> list[Request]:
        """Every approved vCPU or memory request (what a revert must not silently undo)."""
        store = RequestStore(self.settings.database_path)
        try:
            return [r for r in store.list(status=Status.APPROVED) if r.kind in (Kind.VCPUS, Kind.MEMORY)]
        finally:
            store.close()

    def in_flight(self) -> list[InFlight]:
        """The actions under way (:meth:`act` calls not returned yet), oldest first."""
        return list(self._in_flight)

    async def settled(self) -> None:
        """Return once no action is under way (those started meanwhile included)."""
        while self._in_flight:
            await self._in_flight[0].ended.wait()

    def abandon(self) -> int:
        """The caller leaves without waiting: each action under way is recorded now, one entry per
        VM, its VMs still waiting as ``abandoned`` (the action will not finish: a halt's forced
        power-off never comes), the others with their results. Returns how many were abandoned."""
        abandoned = 0
        for running in self.in_flight():
            running.abandoned = True
            vms = running.pending()
            self._record_results(running.actor, running.results())
            self.record(running.actor, [Item(running.action, vm.name, vm.uuid, "abandoned", ABANDONED)
                                        for vm in vms])
            abandoned += len(vms)
        return abandoned

    def protected(self) -> Protected:
        """What delete must never remove: the template folder and every file templates.toml
        declares, read afresh. A file that cannot be read leaves the templates unknown: delete
        then refuses every VM it would remove a disk of (see :class:`core.lifecycle.actions.Protected`)."""
        folder = self.settings.templates_path
        try:
            templates = load_templates(self.settings.templates_file, folder)
        except ConfigError as exc:
            reason = exc.message.replace(":\n  ", ": ", 1).replace("\n  ", "; ")  # on one line
            return Protected.of([folder], problem=f"templates.toml is broken ({reason})")
        except OSError as exc:
            return Protected.of([folder], problem=f"{self.settings.templates_file} cannot be read "
                                f"({exc.strerror or exc})")
        return Protected.of([folder], [path for t in templates.values() for path in t.files().values()])

    async def assign(self, vms: Iterable[VM], owner: str | None,
                     lab_class: str | None = None, *, actor: Actor | None = None) -> list[ActionResult]:
        """Write owner (and class) into each VM's metadata, for VMs made by other means."""
        if owner is not None:
            check_username(owner)
        if lab_class is not None:
            check_class_name(lab_class)
        results = await eventloop.run_on_core(self._assign(list(vms), owner, lab_class))
        self._record_results(actor, results)
        return results

    async def _assign(self, vms: list[VM], owner: str | None,
                      lab_class: str | None) -> list[ActionResult]:
        async def one(vm: VM) -> ActionResult:
            host = self.hosts[vm.host]
            meta = vm.meta.merged(owner=owner, lab_class=lab_class)

            def write() -> None:
                dom = host.domain(vm.uuid)
                flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
                if dom.isActive():
                    flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
                dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, meta.to_xml(), PREFIX,
                                NAMESPACE, flags)

            try:
                host.inventory.expect(vm.key, "assign")
                await host.call(write)
                await host.refresh(vm.uuid)
                return ActionResult(vm, "assign", True, f"owner {meta.owner or '—'}, "
                                    f"class {meta.lab_class or '—'}")
            except VMManagerError as exc:
                return ActionResult(vm, "assign", False, exc.message)

        return list(await asyncio.gather(*(one(vm) for vm in vms)))

    async def apply_request(self, request: Request, *, actor: Actor | None = None) -> ActionResult:
        """Write an approved request's vCPUs or memory into its VM's definition (the next boot has it)."""
        vm = next((v for v in self.vms() if v.uuid == request.vm_uuid), None)
        if vm is None or request.amount is None or request.kind is Kind.NEW_VM:
            raise NotFound(f"request #{request.id} names no VM that exists now ({request.vm_name or '—'})")
        host = self.hosts[vm.host]
        amount = request.amount

        def write() -> None:
            write_resources(host.domain(vm.uuid), request.kind, amount)

        try:
            await eventloop.run_on_core(host.call(write))
            await eventloop.run_on_core(host.refresh(vm.uuid))  # no event says the definition changed
            result = ActionResult(vm, f"request-{request.kind}", True,
                                  f"request #{request.id}: {request.summary()} from the next boot")
        except VMManagerError as exc:
            result = ActionResult(vm, f"request-{request.kind}", False, exc.message)
        self._record_results(actor, [result])
        return result

    async def answer_request(self, request_id: int, *, approve: bool, word: str = "",
                             actor: Actor | None = None) -> Request:
        """Approve (vCPUs or memory written into the VM's definition first) or reject a pending
        request; recorded in the audit log, and mailed to the student when SMTP is set up.

        Raises NotFound, InvalidInput (answered already: by another operator meanwhile), or
        ActionFailed (the VM's definition could not be changed: the request stays pending).
        """
        store = RequestStore(self.settings.database_path)
        try:
            request = store.get(request_id)
            if request is None:
                raise NotFound(f"no request #{request_id}")
            if request.status is not Status.PENDING:
                raise InvalidInput(f"request #{request.id} was {request.status} already")
            if approve and request.kind is not Kind.NEW_VM:
                result = await self.apply_request(request, actor=actor)
                if not result.ok:
                    raise ActionFailed(f"{result.vm.name}: {result.message}")
            done = store.answer(request.id, approve=approve, by=(actor or self.actor).user, word=word)
        finally:
            store.close()
        self.record(actor, [Item(f"request-{'approve' if approve else 'reject'}", done.vm_name or "",
                                 done.vm_uuid or "", "ok", f"#{done.id} {done.summary()}: {word}")])
        await notify_answer(self.settings, done)
        return done

    async def snapshots(self, vm: VM) -> list[SnapshotInfo]:
        """The VM's snapshots, oldest first (the current one marked)."""
        host = self.hosts[vm.host]
        return await eventloop.run_on_core(host.call(lambda: list_snapshots(host.domain(vm.uuid))))

    async def details(self, vm: VM) -> domainxml.DomainInfo:
        host = self.hosts[vm.host]

        async def read() -> domainxml.DomainInfo:
            xml = await host.call(lambda: host.domain(vm.uuid).XMLDesc(0))
            return domainxml.parse(xml)

        return await eventloop.run_on_core(read())

    async def addresses_looked_up(self, within: float) -> None:
        """Wait (at most ``within`` seconds) until the running VMs' addresses read at connect are in."""
        async def wait() -> None:
            with contextlib.suppress(TimeoutError):
                looked_up = [host.addresses_looked_up() for host in self.hosts.values()]
                await asyncio.wait_for(asyncio.gather(*looked_up), within)

        await eventloop.run_on_core(wait())

    async def refresh_ips(self, vm: VM) -> tuple[str, ...]:
        host = self.hosts[vm.host]
        try:
            return await eventloop.run_on_core(host.refresh_ips(vm.uuid))
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc) from exc

    # -- provisioning --
    def _local_host(self) -> Host:
        """The host provisioning makes files for (the first; provisioning refuses remote ones)."""
        return next(iter(self.hosts.values()))

    async def plan_provision(self, template: Template, lab_class: str, students: Sequence[Student], *,
                             start: bool = False, overcommit: bool = False,
                             fix_permissions: bool = False, add: bool = False) -> provision.Plan:
        """Check a class's request and decide every name and path; makes nothing (the dry run).
        ``add``: the roster's VMs that exist are kept, only the missing ones planned."""
        from core import provision

        host = self._local_host()
        taken = {vm.name for vm in self.vms() if vm.host == host.name}
        work = functools.partial(provision.plan, self.settings, host, template, lab_class, students,
                                 start=start, overcommit=overcommit, fix_permissions=fix_permissions,
                                 existing=taken, add=add)
        return await eventloop.run_on_core(host.call(work))

    async def provision(self, plan: provision.Plan, progress: provision.Progress | None = None, *,
                        actor: Actor | None = None) -> provision.Report:
        """Make the plan's VMs; ``progress`` is called on the caller's loop after each VM.

        Each VM is audited as soon as it is made (before ``progress`` hears of it): a run killed
        later leaves no VM made without its entry. An outcome the resume of VMs started paused
        changes is audited again at the end, with the folders QEMU's user was let pass."""
        from core import provision

        caller = asyncio.get_running_loop()
        uuids = {vm.name: vm.uuid for vm in plan.vms}
        audited: dict[str, provision.Outcome] = {}

        def entry(outcome: provision.Outcome) -> Item:
            return Item("provision", outcome.name, uuids[outcome.name] if outcome.ok else "",
                        "ok" if outcome.ok else "failed", f"for {outcome.username}: {outcome.message}")

        def made(done: int, total: int, outcome: provision.Outcome) -> None:  # on the caller's loop
            self.record(actor, [entry(outcome)])
            audited[outcome.name] = outcome
            if progress is not None:
                progress(done, total, outcome)

        def relay(done: int, total: int, outcome: provision.Outcome) -> None:  # on the core's loop
            if not caller.is_closed():
                caller.call_soon_threadsafe(made, done, total, outcome)

        report = await eventloop.run_on_core(
            provision.execute(plan, self.settings, self._local_host(), relay))
        failpoints.hit("acted", "provision")
        granted = [Item("grant-passage", "", "", "ok", f"{provision.QEMU_USER} may pass {folder} (POSIX ACL)")
                   for folder in report.granted]
        self.record(actor, granted + [entry(o) for o in report.outcomes if audited.get(o.name) != o])
        return report

    async def doctor(self, fix: bool = False, *, actor: Actor | None = None) -> doctor.Checkup:
        """Find (and with ``fix`` remove) what killed provisioning runs left half-made."""
        from core.provision import doctor

        host = self._local_host()
        checkup = await eventloop.run_on_core(host.call(doctor.checkup, self.settings, host, fix))
        if fix:
            self.record(actor, [Item("doctor-fix", f.where if f.what == "domain" else "", "", "ok",
                                     f"{f.what} {f.where}: {f.fixed}") for f in checkup.findings if f.fixed])
        return checkup

    async def close(self) -> None:
        async def close_all() -> None:
            for ejector in self._ejectors:
                await ejector.close()
            for host in self.hosts.values():
                await host.close()
            await eventloop.drain()

        # shielded: a caller cancelled half-way (an app quitting while its worker closes a lab
        # that came too late) must not leave the connection open
        await asyncio.shield(eventloop.run_on_core(close_all()))
        if (audit := self.__dict__.pop("audit", None)) is not None:  # opened (a cached_property)
            audit.close()
        if self._scratch is not None:
            remove_scratch(self._scratch)
            self._scratch = None
