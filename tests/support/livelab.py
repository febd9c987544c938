"""Helpers for the integration tests: the outside world, tiny domains, and event-driven waits.

The tests drive a real libvirtd on qemu:///system. What they do "from outside" (define, start,
kill) goes through :class:`Outside`, a plain libvirt connection of their own; what they check is
what :class:`core.lab.Lab` shows. Every domain is named ``vmm-it-<run id>-N-label`` and removed by
the fixtures, so the suite never touches anyone else's VMs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import libvirt
import pytest

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VM, Change, ConnState, Update, VMState
from core.settings import load_settings
from core.storage.permissions import group_id
from core.testing.domains import DiskSpec as Disk
from core.testing.domains import remove_domains, tiny_domain

URI = "qemu:///system"
RUN_PREFIX = f"vmm-it-{secrets.token_hex(3)}-"
T = TypeVar("T")


def required() -> bool:
    """In CI, and under ``make test``, a missing libvirt fails the integration tests."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("VMM_REQUIRE_INTEGRATION") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail when the integration tests are required (never skip silently in CI)."""
    if required():
        pytest.fail(f"integration tests required (CI / VMM_REQUIRE_INTEGRATION), but {reason}",
                    pytrace=False)
    pytest.skip(reason)


def domain_type() -> str:
    """The setting (``VMM_DOMAIN_TYPE``, environment or .env), ``auto`` meaning TCG here: /dev/kvm is
    nested on these machines and a guest kernel hangs under it (the probe test covers ``auto``)."""
    return "kvm" if load_settings().provision.domain_type == "kvm" else "qemu"


def domain_xml(name: str, *, disks: Iterable[Disk] = (), meta: LabMeta | None = None) -> str:
    """A tiny domain (64 MiB, 1 vCPU, SeaBIOS, VGA, VNC on loopback, no NIC), built by the core."""
    return tiny_domain(name, domain_type=domain_type(), meta=meta, disks=disks)


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; the tests check errors themselves."""


libvirt.registerErrorHandler(_quiet, None)


def open_system() -> libvirt.virConnect:
    return libvirt.open(URI)


_problem: dict[str, str | None] = {}


def system_problem() -> str | None:
    """Why qemu:///system cannot run the tests, or None; asked once per session."""
    if "reason" not in _problem:
        reason = None
        try:
            conn = open_system()
            try:
                caps = conn.getCapabilities()
            finally:
                conn.close()
            if "qemu-system-x86_64" not in caps:
                reason = f"{URI} answers but offers no qemu-system-x86_64"
        except libvirt.libvirtError as exc:
            reason = f"{URI} is unreachable ({exc.get_error_message() or exc}); run `make test`"
        _problem["reason"] = reason
    return _problem["reason"]


def system_answers() -> bool:
    try:
        conn = open_system()
    except libvirt.libvirtError:
        return False
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
    return True


class Outside:
    """The world outside the Lab: a plain libvirt connection, and the domains this test made."""

    def __init__(self) -> None:
        self._conn: libvirt.virConnect | None = None
        self.uuids: list[str] = []
        self.dirs: list[Path] = []
        self._count = 0

    @property
    def conn(self) -> libvirt.virConnect:
        """The connection, opened again when the daemon went away (the reconnect test kills it)."""
        if self._conn is not None:
            try:  # isAlive() may not know yet that the daemon went: a cheap call finds out
                alive = bool(self._conn.isAlive()) and self._conn.getLibVersion() > 0
            except libvirt.libvirtError:
                alive = False
            if not alive:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None
        if self._conn is None:
            self._conn = open_system()
        return self._conn

    def shared_dir(self) -> Path:
        """A temp dir QEMU (running as libvirt-qemu) can reach; pytest's tmp_path is 0700.

        Removed by :meth:`cleanup` after the domains that use it are gone.
        """
        path = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir="/var/tmp"))
        path.chmod(0o755)
        self.dirs.append(path)
        return path

    def consoles_dir(self, folder: Path | None = None) -> Path:
        """``consoles`` in ``folder`` (else in a new shared dir), as provisioning makes the console
        socket folder: mode 0770, group QEMU's own, so that QEMU can make its VNC sockets there."""
        sockets = (folder or self.shared_dir()) / "consoles"
        sockets.mkdir()
        sockets.chmod(0o770)
        os.chown(sockets, os.getuid(), group_id() or 0)
        return sockets

    def name(self, label: str) -> str:
        self._count += 1
        return f"{RUN_PREFIX}{self._count}-{label}"

    def define(self, label: str, *, disks: Iterable[Disk] = (), meta: LabMeta | None = None,
               start: bool = False) -> libvirt.virDomain:
        dom = self.conn.defineXML(domain_xml(self.name(label), disks=disks, meta=meta))
        self.uuids.append(dom.UUIDString())
        if start:
            dom.create()
        return dom

    def domain(self, uuid: str) -> libvirt.virDomain:
        return self.conn.lookupByUUIDString(uuid)

    def state(self, uuid: str) -> VMState:
        return VMState.from_libvirt(self.domain(uuid).state()[0])

    def exists(self, uuid: str) -> bool:
        try:
            self.domain(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
        return True

    def qemu_pid(self, name: str) -> int:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())

    def cleanup(self) -> None:
        """Destroy and undefine every domain this test made (and any stray one of this run)."""
        try:
            self._remove_domains()
        finally:
            for path in self.dirs:
                shutil.rmtree(path, ignore_errors=True)

    def _remove_domains(self) -> None:
        try:
            conn = self.conn
        except libvirt.libvirtError:
            return
        doms = []
        for uuid in self.uuids:
            with contextlib.suppress(libvirt.libvirtError):
                doms.append(conn.lookupByUUIDString(uuid))
        remove_domains(conn, RUN_PREFIX, doms)
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
        self._conn = None


def qemu_img(*args: str | os.PathLike[str]) -> None:
    subprocess.run(["qemu-img", *map(os.fspath, args)], check=True, capture_output=True, timeout=60)


class Watch:
    """Every update a Lab delivers from now on, and waits driven by them (no polling, no refresh)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.updates: list[Update] = []
        self._changed = asyncio.Event()
        self._unsubscribe = lab.subscribe(self._on_update)

    def _on_update(self, update: Update) -> None:
        self.updates.append(update)
        self._changed.set()

    def close(self) -> None:
        self._unsubscribe()

    async def until(self, predicate: Callable[[], T], within: float = 20.0, what: str = "") -> T:
        """Return ``predicate()`` once it is truthy, re-checked after each update; fail after ``within`` s."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self._changed.clear()
                    value = predicate()
                    if value:
                        return value
                    await self._changed.wait()
        except TimeoutError:
            rows = ", ".join(f"{vm.name}={vm.state}" for vm in self.lab.vms()
                             if vm.name.startswith(RUN_PREFIX))
            host = self.lab.host_statuses()[0]
            raise AssertionError(f"timed out after {within:g} s waiting for {what or predicate}; "
                                 f"host {host.state} ({host.message}); our VMs: {rows or 'none'}") from None

    # -- reading the inventory --
    def vm(self, uuid: str) -> VM | None:
        return next((vm for vm in self.lab.vms() if vm.uuid == uuid), None)

    async def vm_in(self, uuid: str, state: VMState, within: float = 20.0) -> VM:
        def check() -> VM | None:
            vm = self.vm(uuid)
            return vm if vm is not None and vm.state == state else None

        return await self.until(check, within, f"{uuid} to be {state}")

    async def gone(self, uuid: str, within: float = 20.0) -> None:
        await self.until(lambda: self.vm(uuid) is None, within, f"{uuid} to leave the inventory")

    def changes(self, uuid: str) -> list[Change]:
        return [c for u in self.updates for c in u.changes if c.vm.uuid == uuid]

    def host_states(self) -> list[ConnState]:
        return [h.state for u in self.updates for h in u.hosts]


OpenLab = Callable[..., Awaitable[tuple[Lab, Watch]]]
"""The ``open_lab`` fixture."""


TINY_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_template_tiny.sh"


@contextlib.contextmanager
def built_tiny_template() -> Iterator[Path]:
    """Build the tiny template into a temp dir QEMU can read; a failed build fails, never skips."""
    if not system_answers():
        unavailable("qemu:///system is unreachable; run `make test`")
    root = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}template-", dir="/var/tmp"))
    root.chmod(0o755)
    out = root / "tiny"
    try:
        proc = subprocess.run([TINY_SCRIPT, out], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"{TINY_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                        f"{proc.stderr[-3000:]}", pytrace=False)
        yield out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sweep_run_domains() -> None:
    """Remove every domain of this run that a failed test left behind (names start RUN_PREFIX)."""
    with contextlib.suppress(libvirt.libvirtError):
        conn = open_system()
        try:
            remove_domains(conn, RUN_PREFIX)
        finally:
            conn.close()
