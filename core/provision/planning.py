"""Planning a class: every check made and every name, path and password fixed, nothing made.

:func:`plan` refuses a request as a whole, naming every problem (``--dry-run`` prints a plan;
:func:`core.provision.execution.execute` makes exactly what it says). Domain type ``auto`` is
decided by a KVM probe boot (:mod:`core.provision.kvmprobe`), cached per host: planning only reads
that cache, so a dry run makes nothing; without a cached answer the plan says :data:`AUTO` and
the run probes before it makes the first VM.
"""

from __future__ import annotations

import shutil
import uuid as uuidlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import libvirt

from core.errors import InvalidInput, VMManagerError
from core.model import Student
from core.names import check_class_name, check_username, check_vm_name
from core.provision import kvmprobe
from core.provision.domainbuild import VMFiles
from core.provision.guests.linux import gecos_problem, linux_username_problem
from core.provision.guests.windows import computer_name, windows_full_name_problem, windows_username_problem
from core.provision.passwords import generate_password, windows_password_problem
from core.provision.templates import Template
from core.settings import Settings
from core.storage import images
from core.storage import permissions as access
from core.storage.folders import CONSOLE_LOG, DISK, LINUX_SEED, WINDOWS_SEED
from core.text import count
from core.virt.connection import Host
from core.virt.sampler import node_free_memory_mib

QEMU_USER = access.QEMU_USER
GIB = 1024**3
AUTO = "auto"
"""``Plan.domain_type`` when no probe has answered yet: the run probes first."""


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
    kept: tuple[tuple[str, str], ...] = ()
    """(VM, owner) of the roster's VMs that exist already (``add``): named here, never touched."""
    host: str = ""

    TABLE_HEADER = ("VM", "owner", "host", "template", "what")

    def describe(self) -> list[str]:
        """What would be made, in a few lines (the dry run); :meth:`table` has a row a VM."""
        kind = ("domain type decided when the VMs are made (a KVM probe boot, once per host)"
                if self.domain_type == AUTO else self.domain_type)
        lines = [f"template {self.template.name} ({self.template.os}, {kind}, "
                 f"{count(self.template.vcpus, 'vCPU')}, {self.template.memory_mib} MiB), "
                 f"class {self.lab_class}, "
                 f"{count(len(self.vms), 'VM')}"
                 f"{', started' if self.start else ''}",
                 f"capacity: {self.capacity.describe()}"]
        if self.grants:
            lines.append(f"folders: {access.QEMU_USER} gets search permission (a POSIX ACL) on "
                         f"{', '.join(map(str, self.grants))} before anything is made")
        if self.kept:
            lines.append(f"kept: {count(len(self.kept), 'VM')} of the roster that exist already "
                         "(never touched)")
        return lines

    def table(self) -> list[tuple[str, str, str, str, str]]:
        """A row a VM of the roster, as :data:`TABLE_HEADER` says: the VMs to make, then those kept."""
        rows = [(vm.name, vm.student.username, self.host, self.template.name,
                 f"new, password {'generated' if vm.generated else 'from the roster'}") for vm in self.vms]
        rows += [(name, owner, self.host, "—", "kept: exists, not touched") for name, owner in self.kept]
        return rows


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
         fix_permissions: bool = False, existing: set[str] | None = None, add: bool = False) -> Plan:
    """Check the request as a whole and decide everything; makes nothing. Blocking (libvirt calls).

    Raises InvalidInput naming every problem: bad names, clashes with existing VMs or folders,
    template files QEMU cannot read, not enough memory or disk (unless ``overcommit``), folders
    QEMU cannot pass on the way to the VMs' files (unless ``fix_permissions``: then the plan
    lets it pass them first); :class:`Unreachable` when those folders are the only problem.
    With ``add`` (a late student joins), the roster's VMs that exist are kept, not refused: only
    the missing ones are planned.
    """
    check_class_name(lab_class)
    if not students:
        raise InvalidInput("no students: the roster is empty")
    if host.remote:
        raise InvalidInput(f"provisioning makes files on this machine: run it on {host.name} itself")
    root = settings.provision.student_vms_dir.absolute()
    # the demo lab's files are fictional (nothing is made or read): nothing for QEMU to reach
    problems, blocked = ([], []) if host.demo else _reach(settings, template, root)
    conn = host.connection()
    taken = existing if existing is not None else {dom.name() for dom in conn.listAllDomains(0)}
    vms: list[VMPlan] = []
    kept: list[tuple[str, str]] = []
    clashed = False
    seen: dict[str, str] = {}
    for student in students:
        check_username(student.username)
        try:
            name = vm_name(settings.provision.vm_name_scheme, lab_class, student.username, template.name)
        except InvalidInput as exc:
            problems.append(f"{student.username}: {exc.message}")
            continue
        if name in seen:
            problems.append(f"{student.username}: the VM name {name} is also {seen[name]}'s")
            continue
        seen[name] = student.username
        folder = root / student.username / name
        if name in taken and add:
            kept.append((name, student.username))
            continue
        if name in taken:
            problems.append(f"{name}: a VM of that name exists (it is never overwritten)")
            clashed = True
        elif folder.exists():
            problems.append(f"{name}: {folder} exists (a leftover? see vm-manager doctor)")
        problems += [f"{student.username}: {p}" for p in account_problems(template.os, student, name)]
        vms.append(_vm_plan(settings, template, student, name, folder, problems))
    if clashed:
        problems.append("to make only the roster's VMs that do not exist yet (a late student): --add, "
                        "or \"only the missing VMs\" in the TUI")
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
    if not vms and kept and not problems:
        problems.append(f"every student of the roster has a VM already ({count(len(kept), 'VM')} "
                        "kept): there is nothing to add")
    if problems:
        raise InvalidInput("nothing made:\n" + "\n".join(f"  {p}" for p in problems))
    return Plan(template, lab_class, _domain_type(settings, template), start, tuple(vms), capacity,
                grants=tuple(blocked), kept=tuple(kept), host=host.name)


def _reach(settings: Settings, template: Template, root: Path) -> tuple[list[str], list[Path]]:
    """What QEMU cannot reach: the template files it could not read even once it may pass their
    folders (problems), and the folders in its way, to those files, the student folder root and
    the console socket folder (in path order, each once)."""
    problems = []
    blocked: dict[Path, None] = {}
    try:
        for folder in (root, settings.consoles.socket_dir):
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
                    vnc_socket=settings.consoles.socket_dir / f"{uuid}.vnc")
    return VMPlan(name, uuid, student, password, generated, folder, files, admin_password)


def _capacity(conn: libvirt.virConnect, template: Template, count: int, root: Path) -> Capacity:
    memory_free = node_free_memory_mib(conn)
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
    for choice in (template.domain_type, settings.provision.domain_type):
        if choice != AUTO:
            return choice
    return kvmprobe.cached(settings) or AUTO
