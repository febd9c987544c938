"""Provisioning: the VMs of a class made from a template, each one all-or-nothing.

:func:`plan` checks everything and fixes every name, path and password without making anything
(``--dry-run`` prints it). :func:`execute` then makes the VMs, a few at a time. For each VM:

1. ``folder``  ``<student_vms>/<username>/<vm>/`` (mode 0711: QEMU passes, nobody lists it)
2. ``disk``    a qcow2 overlay backed by the template image (no copy: milliseconds, a few hundred KiB)
3. ``seed``    a cloud-init NoCloud ISO, or a CD with the Windows answer file
4. ``define``  the domain, with our metadata and VNC on a Unix socket (no TCP port)
5. ``start``   when asked: started paused, and resumed together once every VM is made

When a step fails -- whatever the error, an expected refusal or a bug -- what was made for that
VM is removed, the failure is its line of the report, and the other VMs go on. A run that is
killed half-way leaves what ``vm-manager doctor`` finds and removes (``core.provision.doctor``); a lock on
the student folder root keeps the doctor away from a run in progress.

Domain type ``auto`` is decided by a KVM probe boot (``core.provision.kvmprobe``), cached per host. Planning
only reads that cache, so a dry run makes nothing; without a cached answer the plan says ``auto``
and :func:`execute` runs the probe before it makes the first VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import logging
import os
import shutil
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import libvirt

from core import failpoints
from core.errors import InvalidInput, VMManagerError, from_libvirt
from core.metadata import LabMeta
from core.model import Student
from core.names import check_class_name, check_username, check_vm_name
from core.provision import kvmprobe
from core.provision.domainbuild import VMFiles, provisioned_domain
from core.provision.guests.linux import (
    LinuxSeed,
    SeedUser,
    gecos_problem,
    linux_username_problem,
    write_seed_iso,
)
from core.provision.guests.windows import (
    WindowsSeed,
    computer_name,
    windows_full_name_problem,
    windows_username_problem,
    write_windows_seed_iso,
)
from core.provision.passwords import generate_password, windows_password_problem
from core.provision.templates import Template
from core.settings import Settings
from core.storage import folders, images
from core.storage import permissions as access
from core.storage.folders import CONSOLE_LOG, DISK, LINUX_SEED, WINDOWS_SEED
from core.virt.connection import Host

log = logging.getLogger(__name__)

QEMU_USER = access.QEMU_USER
STEPS = ("folder", "disk", "seed", "define", "start")
GIB = 1024**3
AUTO = "auto"
"""``Plan.domain_type`` when no probe has answered yet: :func:`execute` runs it."""


@dataclass(frozen=True)
class VMPlan:
    """One VM to make: its name, owner, files and the password its account gets."""

    name: str
    uuid: str
    student: Student
    password: str
    generated: bool  # the password was made here (and goes to the passwords file)
    folder: Path
    files: VMFiles
    admin_password: str = ""  # Windows only: the local Administrator's, made per VM


@dataclass(frozen=True)
class Capacity:
    """What the class needs against what the host has free (``None``: the host does not say)."""

    memory_needed_mib: int
    memory_free_mib: int | None
    disk_needed_gib: float
    disk_free_gib: float | None

    def problems(self) -> list[str]:
        found = []
        if self.memory_free_mib is not None and self.memory_needed_mib > self.memory_free_mib:
            found.append(f"memory: the VMs need {self.memory_needed_mib} MiB, the host has "
                         f"{self.memory_free_mib} MiB free")
        if self.disk_free_gib is not None and self.disk_needed_gib > self.disk_free_gib:
            found.append(f"disk: the overlays may grow to {self.disk_needed_gib:.1f} GiB, "
                         f"{self.disk_free_gib:.1f} GiB is free")
        return found

    def describe(self) -> str:
        memory = "unknown" if self.memory_free_mib is None else f"{self.memory_free_mib} MiB"
        disk = "unknown" if self.disk_free_gib is None else f"{self.disk_free_gib:.1f} GiB"
        return (f"memory {self.memory_needed_mib} MiB of {memory} free; "
                f"disk up to {self.disk_needed_gib:.1f} GiB of {disk} free")


@dataclass(frozen=True)
class Plan:
    template: Template
    lab_class: str
    domain_type: str
    start: bool
    vms: tuple[VMPlan, ...]
    capacity: Capacity
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    grants: tuple[Path, ...] = ()
    """Folders QEMU's user gets search permission on (a POSIX ACL) before anything is made."""

    def describe(self) -> list[str]:
        """What would be made, one line a VM (the dry run)."""
        kind = ("domain type decided when the VMs are made (a KVM probe boot, once per host)"
                if self.domain_type == AUTO else self.domain_type)
        lines = [f"template {self.template.name} ({self.template.os}, {kind}, "
                 f"{self.template.vcpus} vCPU, {self.template.memory_mib} MiB), class {self.lab_class}, "
                 f"{len(self.vms)} VM{'s' if len(self.vms) != 1 else ''}"
                 f"{', started' if self.start else ''}",
                 f"capacity: {self.capacity.describe()}"]
        if self.grants:
            lines.append(f"folders: {access.QEMU_USER} gets search permission (a POSIX ACL) on "
                         f"{', '.join(map(str, self.grants))} before anything is made")
        for vm in self.vms:
            seed = vm.files.seed or "no seed"
            lines.append(f"{vm.name}: owner {vm.student.username}, folder {vm.folder}, "
                         f"disk {vm.files.disk or 'none'}, seed {seed}, "
                         f"password {'generated' if vm.generated else 'from the roster'}")
        return lines


@dataclass(frozen=True)
class Outcome:
    name: str
    username: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Report:
    outcomes: list[Outcome]
    passwords_file: Path | None  # where generated passwords went (mode 0600), if any
    granted: tuple[Path, ...] = ()  # folders QEMU's user was let pass (see Plan.grants)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


Progress = Callable[[int, int, Outcome], None]
"""Called after each VM: (VMs done, VMs in all, that VM's outcome)."""


# -- planning --
def vm_name(scheme: str, lab_class: str, username: str, template: str) -> str:
    """The VM name the scheme gives, checked as a host name."""
    name = scheme
    for key, value in (("{class}", lab_class), ("{username}", username), ("{template}", template)):
        name = name.replace(key, value)
    return check_vm_name(name.replace("_", "-").replace(".", "-"))


class Unreachable(InvalidInput):
    """The one problem of a request: folders QEMU's user cannot pass (``folders``). A terminal
    asks whether to let it pass them; elsewhere ``--fix-permissions`` does."""

    def __init__(self, message: str, folders: Sequence[Path]) -> None:
        super().__init__(message)
        self.folders = tuple(folders)


def plan(settings: Settings, host: Host, template: Template, lab_class: str,
         students: Sequence[Student], *, start: bool = False, overcommit: bool = False,
         fix_permissions: bool = False, existing: set[str] | None = None) -> Plan:
    """Check the request as a whole and decide everything; makes nothing. Blocking (libvirt calls).

    Raises InvalidInput naming every problem: bad names, clashes with existing VMs or folders,
    template files QEMU cannot read, not enough memory or disk (unless ``overcommit``), folders
    QEMU cannot pass on the way to the VMs' files (unless ``fix_permissions``: then the plan
    lets it pass them first); :class:`Unreachable` when those folders are the only problem.
    """
    check_class_name(lab_class)
    if not students:
        raise InvalidInput("no students: the roster is empty")
    if host.remote:
        raise InvalidInput(f"provisioning makes files on this machine: run it on {host.name} itself")
    root = settings.student_vms_dir.absolute()
    problems, blocked = _reach(settings, template, root)
    conn = host.connection()
    taken = existing if existing is not None else {dom.name() for dom in conn.listAllDomains(0)}
    vms: list[VMPlan] = []
    seen: dict[str, str] = {}
    for student in students:
        check_username(student.username)
        try:
            name = vm_name(settings.vm_name_scheme, lab_class, student.username, template.name)
        except InvalidInput as exc:
            problems.append(f"{student.username}: {exc.message}")
            continue
        if name in seen:
            problems.append(f"{student.username}: the VM name {name} is also {seen[name]}'s")
            continue
        seen[name] = student.username
        folder = root / student.username / name
        if name in taken:
            problems.append(f"{name}: a VM of that name exists (it is never overwritten)")
        elif folder.exists():
            problems.append(f"{name}: {folder} exists (a leftover? see vm-manager doctor)")
        problems += [f"{student.username}: {p}" for p in account_problems(template.os, student, name)]
        vms.append(_vm_plan(settings, template, student, name, folder, problems))
    capacity = _capacity(conn, template, len(vms), root)
    if not overcommit:
        problems += [f"{p} (--overcommit to go on anyway)" for p in capacity.problems()]
    if blocked and not fix_permissions:
        passage = (f"{access.QEMU_USER} (QEMU) cannot enter {', '.join(map(str, blocked))}, on the way "
                   f"to the VMs' files: --fix-permissions lets it pass (no listing, no reading), as "
                   f"would `{access.grant_command(blocked)}`; or set VMM_STUDENT_VMS_DIR (and "
                   "VMM_TEMPLATE_DIR) to folders it can pass, e.g. under /srv")
        if not problems:
            raise Unreachable(f"nothing made:\n  {passage}", blocked)
        problems.append(passage)
    if problems:
        raise InvalidInput("nothing made:\n" + "\n".join(f"  {p}" for p in problems))
    return Plan(template, lab_class, _domain_type(settings, template), start, tuple(vms), capacity,
                grants=tuple(blocked))


def _reach(settings: Settings, template: Template, root: Path) -> tuple[list[str], list[Path]]:
    """What QEMU cannot reach: the template files it could not read even once it may pass their
    folders (problems), and the folders in its way, to those files, the student folder root and
    the console socket folder (in path order, each once)."""
    problems = []
    blocked: dict[Path, None] = {}
    try:
        for folder in (root, settings.console_socket_dir):
            blocked.update(dict.fromkeys(access.blocked_folders(folder)))
        for role, path in template.files().items():
            blocked.update(dict.fromkeys(access.blocked_folders(path.absolute().parent)))
            if problem := access.file_problem(path):
                problems.append(f"template {template.name}: {role} {path}: {problem}")
    except VMManagerError as exc:  # no QEMU user on this host
        return [exc.message], []
    return problems, sorted(blocked)


def account_problems(os_family: str, student: Student, vm: str) -> list[str]:
    """What the guest would refuse in the student's account, by the seed's own rules.

    A roster already refused these with their line numbers; students from an LDAP group (or any
    other caller) are checked here, before anything is made, not when their seed is written.
    """
    if os_family == "windows":
        found = [windows_username_problem(student.username, computer_name(vm)),
                 windows_full_name_problem(student.full_name)]
    else:
        found = [linux_username_problem(student.username), gecos_problem(student.full_name)]
    return [problem for problem in found if problem is not None]


def _vm_plan(settings: Settings, template: Template, student: Student, name: str, folder: Path,
             problems: list[str]) -> VMPlan:
    password, generated = student.password, student.password is None
    if password is None:
        password = generate_password()
    admin_password = ""
    if template.os == "windows":
        if problem := windows_password_problem(password):
            problems.append(f"{student.username}: {problem}")
        admin_password = generate_password(16)
    uuid = str(uuidlib.uuid4())
    seed = folder / (WINDOWS_SEED if template.os == "windows" else LINUX_SEED)
    files = VMFiles(disk=folder / DISK if template.image is not None else None, seed=seed,
                    serial_log=folder / CONSOLE_LOG,
                    vnc_socket=settings.console_socket_dir / f"{uuid}.vnc")
    return VMPlan(name, uuid, student, password, generated, folder, files, admin_password)


def _capacity(conn: libvirt.virConnect, template: Template, count: int, root: Path) -> Capacity:
    memory_free = None
    with contextlib.suppress(libvirt.libvirtError):
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        if "free" in stats:
            memory_free = (stats["free"] + stats.get("buffers", 0) + stats.get("cached", 0)) // 1024
    size = template.disk_size_gib * GIB
    if template.image is not None and template.image.exists():
        size = max(size, images.virtual_size(template.image))
    existing = root if root.exists() else root.parent
    disk_free = shutil.disk_usage(existing).free / GIB if existing.exists() else None
    disk_needed = count * size / GIB if template.image is not None else 0.0
    return Capacity(count * template.memory_mib, memory_free, disk_needed, disk_free)


def _domain_type(settings: Settings, template: Template) -> str:
    """The template's choice, else the setting's, else the cached probe's answer, else AUTO
    (planning boots nothing: the probe runs when the VMs are made)."""
    for choice in (template.domain_type, settings.domain_type):
        if choice != AUTO:
            return choice
    return kvmprobe.cached(settings) or AUTO


# -- making --
async def execute(plan: Plan, settings: Settings, host: Host, progress: Progress | None = None) -> Report:
    """Make every VM of the plan (on the core loop); an outcome per VM, in the plan's order."""
    if plan.grants:  # before anything is made: a refusal here leaves nothing behind
        await asyncio.to_thread(access.grant_passage, plan.grants)
        log.info("provision %s: %s may now pass %s (POSIX ACL)", plan.lab_class, access.QEMU_USER,
                 ", ".join(map(str, plan.grants)))
    if plan.domain_type == AUTO:  # blocking: up to kvmprobe.DEADLINE, once per host
        decided = await host.call(kvmprobe.decide, settings, host.connection())
        log.info("provision %s: domain type %s", plan.lab_class, decided)
        plan = dataclasses.replace(plan, domain_type=decided)
    await asyncio.to_thread(folders.prepare, settings)
    slots = asyncio.Semaphore(settings.provision_concurrency)
    done = 0
    with folders.run_lock(settings.student_vms_dir), _PasswordFile(settings, plan) as passwords:
        async def one(vm: VMPlan) -> Outcome:
            nonlocal done
            async with slots:
                outcome = await _make(plan, vm, host, passwords)
            done += 1
            if progress is not None:
                progress(done, len(plan.vms), outcome)
            return outcome

        outcomes = list(await asyncio.gather(*(one(vm) for vm in plan.vms)))
    if plan.start:
        outcomes = await _resume_all(host, outcomes, plan)
    return Report(outcomes, passwords.path, plan.grants)


async def _make(plan: Plan, vm: VMPlan, host: Host, passwords: _PasswordFile) -> Outcome:
    made: list[str] = []
    step = STEPS[0]
    try:
        for step in STEPS:
            if step == "start" and not plan.start:
                break
            failpoints.hit(step, vm.name)
            if step in ("define", "start"):
                await host.call(_STEP_CALLS[step], host, plan, vm)
            else:
                await asyncio.to_thread(_STEP_CALLS[step], host, plan, vm)
            made.append(step)
            if step == "define":  # from here the VM exists: a killed run must leave its password
                await asyncio.to_thread(passwords.add, vm)
    except Exception as exc:  # anything: this VM fails, the others go on
        reason = _reason(exc)
        if isinstance(exc, (VMManagerError, OSError, libvirt.libvirtError)):
            log.warning("provision %s FAILED at %s: %s", vm.name, step, reason)
        else:  # a bug or a tool that broke: the traceback goes to the log
            log.error("provision %s FAILED at %s: %s", vm.name, step, reason, exc_info=exc)
            reason += " (details in the log)"
        try:
            await host.call(_undo, host, vm, made, step)
        except Exception:
            log.exception("provision %s: could not remove all that was made for it", vm.name)
        try:
            await asyncio.to_thread(passwords.remove, vm)
        except OSError:
            log.exception("provision %s: could not take its row out of %s", vm.name, passwords.path)
        return Outcome(vm.name, vm.student.username, False, f"failed at {step}: {reason}")
    message = "made and started" if plan.start else "made"
    log.info("provision %s: %s (owner %s, template %s)", vm.name, message, vm.student.username,
             plan.template.name)
    return Outcome(vm.name, vm.student.username, True, message)


def _reason(exc: Exception) -> str:
    """One line for the report: the operator's message, or what broke and how."""
    if isinstance(exc, VMManagerError | libvirt.libvirtError):
        return from_libvirt(exc).message
    if isinstance(exc, subprocess.SubprocessError):
        cmd = getattr(exc, "cmd", None) or ["a command"]
        tool = Path(str(cmd if isinstance(cmd, str | bytes) else cmd[0]).split()[0]).name
        if isinstance(exc, subprocess.TimeoutExpired):
            return f"{tool} did not finish within {exc.timeout:g} s"
        if isinstance(exc, subprocess.CalledProcessError):
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            last = (stderr or "").strip().splitlines()[-1:]
            return f"{tool} failed (exit {exc.returncode}){': ' + last[0] if last else ''}"
    if isinstance(exc, OSError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def _make_folder(_host: Host, _plan: Plan, vm: VMPlan) -> None:
    """The VM's folder, marked as its domain's (a failure halfway removes it again)."""
    folders.make_vm_folder(vm.folder, vm.uuid)


def _make_disk(_host: Host, plan: Plan, vm: VMPlan) -> None:
    if vm.files.disk is not None and plan.template.image is not None:
        images.create_overlay(Path(vm.files.disk), plan.template.image, plan.template.disk_size_gib * GIB)


def _make_seed(_host: Host, plan: Plan, vm: VMPlan) -> None:
    template, student = plan.template, vm.student
    path = Path(vm.files.seed or "")
    if template.os == "windows":
        write_windows_seed_iso(path, WindowsSeed(
            computer_name=computer_name(vm.name), username=student.username, full_name=student.full_name,
            password=vm.password, admin_password=vm.admin_password, keyboard=template.keyboard,
            locale=template.locale, firmware=template.firmware))
    else:
        write_seed_iso(path, LinuxSeed(
            hostname=vm.name, instance_id=f"iid-{vm.uuid}",
            user=SeedUser(student.username, student.full_name, vm.password, student.ssh_keys),
            keyboard=template.keyboard, locale=template.locale))


def _define(host: Host, plan: Plan, vm: VMPlan) -> None:
    meta = LabMeta(owner=vm.student.username, lab_class=plan.lab_class, template=plan.template.name,
                   created=plan.created)
    xml = provisioned_domain(vm.name, vm.uuid, plan.template, vm.files, domain_type=plan.domain_type,
                             meta=meta)
    host.connection().defineXML(xml)


def _start(host: Host, _plan: Plan, vm: VMPlan) -> None:
    """Started paused: QEMU is up and the VM is whole, but its CPUs wait (see :func:`_resume_all`).
    The folder's STARTING mark says so until the resume, for ``doctor`` after a killed run."""
    mark = vm.folder / folders.STARTING
    mark.touch(mode=0o600)
    try:
        host.domain(vm.uuid).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    except BaseException:
        mark.unlink(missing_ok=True)
        raise


async def _resume_all(host: Host, outcomes: list[Outcome], plan: Plan) -> list[Outcome]:
    """Let every VM started paused run, once all are started.

    Thirty guests booting under TCG while libvirt starts the next ones take the two cores libvirt
    needs: starting them paused and resuming them together took "30 VMs made and started" from
    22 s to 7 s here (libvirt alone needs about 0.25 s a start).
    """
    by_name = {vm.name: vm for vm in plan.vms}

    async def resume(outcome: Outcome) -> Outcome:
        if not outcome.ok:
            return outcome
        vm = by_name[outcome.name]
        failpoints.hit("resume", vm.name)
        try:
            await host.call(lambda: host.domain(vm.uuid).resume())
        except VMManagerError as exc:
            return Outcome(outcome.name, outcome.username, False, f"made, but it stays paused: {exc.message}")
        (vm.folder / folders.STARTING).unlink(missing_ok=True)
        return outcome

    return list(await asyncio.gather(*(resume(o) for o in outcomes)))


_STEP_CALLS: dict[str, Callable[[Host, Plan, VMPlan], None]] = {
    "folder": _make_folder, "disk": _make_disk, "seed": _make_seed, "define": _define, "start": _start,
}


def _undo(host: Host, vm: VMPlan, made: list[str], failed: str) -> None:
    """Remove what was made for one VM, newest first; ``failed`` is the step that failed.

    A define that failed may still have defined the domain: its UUID is this VM's own, made by
    the plan, so a domain found by it is ours to remove.
    """
    try:
        if "define" in made or failed == "define":
            _remove_domain(host, vm.uuid)
    finally:  # a domain that would not go is the doctor's "domain whose disk is gone"
        if "folder" in made and not folders.remove_vm_folder(vm.folder):
            log.warning("provision %s: %s could not be removed whole", vm.name, vm.folder)


def _remove_domain(host: Host, uuid: str) -> None:
    try:
        dom = host.domain(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return  # never defined
        raise
    if dom.isActive():
        dom.destroy()
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        dom.undefine()  # a driver without those flags (libvirt's test driver)


class _PasswordFile:
    """Generated passwords: one CSV per run, mode 0600, a row for each VM that exists.

    The file is made with its first row (a run with no password to write makes none). A row is
    written when its VM is defined, not at the end of the run, so that a run killed half-way still
    leaves the passwords of the VMs it did make; a VM undone afterwards (a failed start) takes its
    row out again, and the last row out takes the file. Nothing else ever prints the passwords.
    """

    HEADER = ("vm", "username", "password", "admin_password")

    def __init__(self, settings: Settings, plan: Plan) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self._target = settings.passwords_dir / f"{plan.lab_class}-{stamp}-{os.getpid()}.csv"
        self.path: Path | None = None  # once made
        self._file: IO[str] | None = None
        self._rows: dict[str, list[str]] = {}
        self._lock = threading.Lock()  # VMs add and remove rows from worker threads

    def add(self, vm: VMPlan) -> None:
        if not (vm.generated or vm.admin_password):
            return
        with self._lock:
            self._add(vm)

    def _add(self, vm: VMPlan) -> None:
        row = [vm.name, vm.student.username, vm.password if vm.generated else "", vm.admin_password]
        self._rows[vm.name] = row
        if self._file is None:
            self._open()
        assert self._file is not None
        csv.writer(self._file).writerow(row)
        self._sync()

    def remove(self, vm: VMPlan) -> None:
        """Take a VM's row out: it was undone. Rewrites the file whole (a rare event)."""
        with self._lock:
            self._remove(vm)

    def _remove(self, vm: VMPlan) -> None:
        if self._rows.pop(vm.name, None) is None or self.path is None:
            return
        self.close()
        if not self._rows:
            self.path.unlink(missing_ok=True)
            self.path = None
            return
        fresh = self.path.with_name(f".{self.path.name}.new")
        fresh.unlink(missing_ok=True)
        with os.fdopen(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", newline="",
                       encoding="utf-8") as out:
            csv.writer(out).writerows([self.HEADER, *self._rows.values()])
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, self.path)  # the old rows or the new ones, never half of them
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def _open(self) -> None:
        folder = self._target.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        fd = os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.path = self._target
        self._file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        csv.writer(self._file).writerow(self.HEADER)

    def _sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> _PasswordFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
