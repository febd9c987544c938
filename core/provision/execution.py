"""Making a planned class (:mod:`core.provision.planning`), each VM all-or-nothing.

:func:`execute` makes the plan's VMs, a few at a time. For each VM:

1. ``folder``  ``<student_vms>/<username>/<vm>/`` (mode 0711: QEMU passes, nobody lists it)
2. ``disk``    a qcow2 overlay backed by the template image (no copy: milliseconds, a few hundred KiB)
3. ``seed``    a cloud-init NoCloud ISO, or a CD with the Windows answer file
4. ``define``  the domain, with our metadata and VNC on a Unix socket (no TCP port)
5. ``start``   when asked: started paused, and resumed together once every VM is made

When a step fails -- whatever the error, an expected refusal or a bug -- what was made for that
VM is removed, the failure is its line of the report, and the other VMs go on. A run that is
killed half-way leaves what ``vm-manager doctor`` finds and removes (``core.provision.doctor``); a lock on
the student folder root keeps the doctor away from a run in progress.

On the demo lab (libvirt's test driver, whose storage is fictional and whose domains live in
its memory) only ``define`` and ``start`` run: no folder, disk, seed or lock is made.

A plan whose domain type is ``auto`` first boots the KVM probe (once per host, cached); a plan
with ``grants`` first lets QEMU's user pass those folders (a POSIX ACL).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import libvirt

from core import failpoints
from core.errors import VMManagerError, from_libvirt
from core.metadata import LabMeta
from core.provision import kvmprobe
from core.provision.domainbuild import provisioned_domain
from core.provision.guests.linux import LinuxSeed, SeedUser, write_seed_iso
from core.provision.guests.windows import WindowsSeed, computer_name, write_windows_seed_iso
from core.provision.passwords import PasswordFile
from core.provision.planning import AUTO, GIB, Plan, VMPlan
from core.settings import Settings
from core.storage import folders, images
from core.storage import permissions as access
from core.virt import domains
from core.virt.connection import Host

log = logging.getLogger(__name__)

STEPS = ("folder", "disk", "seed", "define", "start")
DEMO_STEPS = ("define", "start")  # the demo lab's: its domains are all there is of its VMs


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
    if not host.demo:
        await asyncio.to_thread(folders.prepare, settings)
    slots = asyncio.Semaphore(settings.provision.concurrency)
    done = 0
    lock = contextlib.nullcontext() if host.demo else folders.run_lock(settings.provision.student_vms_dir)
    with lock, PasswordFile(settings, plan.lab_class) as passwords:
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


async def _make(plan: Plan, vm: VMPlan, host: Host, passwords: PasswordFile) -> Outcome:
    made: list[str] = []
    step = STEPS[0]
    try:
        for step in DEMO_STEPS if host.demo else STEPS:
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
    mark = None if host.demo else vm.folder / folders.STARTING
    if mark is not None:
        mark.touch(mode=0o600)
    try:
        host.domain(vm.uuid).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    except BaseException:
        if mark is not None:
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
    domains.undefine(dom)
