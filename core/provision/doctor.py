"""``vm-manager doctor``: what provisioning runs that were killed left half-made.

Four kinds of leftovers:

- a VM folder (``<student_vms>/<username>/<vm>/``) marked as made for a domain that does not
  exist (:data:`core.storage.folders.MARKER`): the run died before ``define``, or a delete died half-way;
  also a hidden work folder such a kill left (marked the same way, or holding nothing);
- a domain of ours (it carries our metadata with a creation time, its files are under the
  student root) whose disk is gone;
- a domain of ours left paused: the run started it paused and died before resuming it (its
  folder keeps the ``STARTING`` mark until the resume);
- a VNC socket ``<console_socket_dir>/<uuid>.vnc`` of a domain that does not exist (QEMU
  leaves its socket behind when it stops).

``fix`` removes the first two and the sockets, resumes the third, and touches nothing else: a
folder without our marker is never removed (only reported when no domain uses it; but for a
work folder of ours that holds nothing, not even a whole marker), domains without our metadata
are never looked at twice, and nothing runs while a provisioning run holds the student folder
root's lock. A domain whose definition cannot be read might use any folder or socket: while
there is one, doctor says so and removes no file at all. Files are looked at only on a host
whose files are this machine's (``Host.files_local``): the test driver's storage
is fictional.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import libvirt

from core import failpoints
from core.errors import domain_name
from core.settings import Settings
from core.storage.folders import (
    MARKER,
    STARTING,
    exclusive_lock,
    folder_domain,
    remove_if_empty,
    remove_vm_folder,
    remove_vnc_socket,
    vm_folders,
    vnc_sockets,
    work_folders,
)
from core.storage.paths import inside
from core.virt import domainxml
from core.virt.connection import Host
from core.virt.domains import undefine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    what: str  # "folder" | "domain" | "socket"
    where: str  # the folder's or socket's path, or the domain's name
    problem: str
    fixed: str = ""  # what --fix did, "" when not (yet) fixed
    advisory: bool = False  # only for the operator to know: not ours, doctor never acts on it


@dataclass
class Checkup:
    findings: list[Finding] = field(default_factory=list)
    busy: bool = False  # a provisioning run was in progress: nothing was fixed

    @property
    def unfixed(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed and not f.advisory]


@dataclass
class _Domains:
    """What the domains of the host tell: their UUIDs, the files they name, which could not be read."""

    uuids: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    unreadable: list[str] = field(default_factory=list)


def checkup(settings: Settings, host: Host, fix: bool = False) -> Checkup:
    """Look (blocking: libvirt calls and file-system walks); with ``fix``, remove what is found."""
    root = settings.provision.student_vms_dir
    with exclusive_lock(root) as free:
        result = Checkup(busy=not free)
        fix = fix and free
        domains = _Domains()
        if host.files_local:  # the test driver's and a remote host's files are none of this machine's
            for dom in host.connection().listAllDomains(0):
                result.findings += _look_at(dom, domains, root, fix)
            result.findings += _folders(root, domains, fix)
            result.findings += _sockets(settings.consoles.socket_dir, domains, fix)
    for finding in result.findings:
        log.info("doctor: %s %s: %s%s", finding.what, finding.where, finding.problem,
                 f" ({finding.fixed})" if finding.fixed else "")
    return result


def _read(dom: libvirt.virDomain) -> tuple[domainxml.DomainInfo, bool]:
    failpoints.hit("doctor-read", dom.name())  # the tests' stand-in for a definition libvirt will not give
    return domainxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)), bool(dom.isActive())


def _look_at(dom: libvirt.virDomain, domains: _Domains, root: Path, fix: bool) -> list[Finding]:
    """One domain: noted in ``domains``; a finding when it is ours and half-made, or unreadable."""
    uuid = dom.UUIDString()
    domains.uuids.add(uuid)
    try:
        info, active = _read(dom)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return []  # undefined while we looked (its folder and socket wait for the next run)
        reason = exc.get_error_message() or str(exc)
    except Exception as exc:  # an injected failure, a definition we cannot parse: the same doubt
        log.warning("doctor: cannot read domain %s", uuid, exc_info=exc)
        reason = getattr(exc, "message", "") or str(exc)
    else:
        return _look_at_readable(dom, info, active, domains, root, fix)
    name = domain_name(dom, uuid)
    domains.unreadable.append(name)
    return [Finding("domain", name, f"its definition cannot be read ({reason}): every folder and "
                    "socket that might be its is kept")]


def _look_at_readable(dom: libvirt.virDomain, info: domainxml.DomainInfo, active: bool,
                      domains: _Domains, root: Path, fix: bool) -> list[Finding]:
    """Only a domain whose files are under this student root is doctor's to act on: the root's
    lock keeps provisioning runs there away, not runs under another root."""
    files = [d for d in info.disks if d.source and d.source_type == "file"]
    ours = [d for d in files if inside(d.source, [root])]
    findings: list[Finding] = []
    if info.meta.created and active:
        findings += _left_paused(dom, info.name, {Path(d.source).parent for d in ours}, fix)
    missing = [d.source for d in ours if d.device == "disk" and not os.path.exists(d.source)]
    if info.meta.created and missing and not active:
        finding = Finding("domain", info.name, f"its disk {missing[0]} is gone")
        if fix:
            finding = _undefine(dom, finding)
        findings.append(finding)
        if finding.fixed:  # its folder and socket, if any, are leftovers now too
            domains.uuids.discard(info.uuid)
            return findings
    domains.files |= {os.path.normpath(d.source) for d in files}
    return findings


def _folders(root: Path, domains: _Domains, fix: bool) -> list[Finding]:
    findings = []
    work = work_folders(root)
    for folder in [*vm_folders(root), *work]:
        used = any(inside(path, [folder]) for path in domains.files)
        owner = folder_domain(folder)
        if owner is None and folder in work and not used and _holds_nothing(folder):
            finding = Finding("folder", str(folder), "a folder a killed run was making or removing, "
                              "with nothing in it")
            if fix and not domains.unreadable and remove_if_empty(folder):
                finding = replace(finding, fixed="removed")
            findings.append(finding)
            continue
        if owner is None:
            if not used:
                findings.append(Finding("folder", str(folder), "no VM uses it, and it has no mark of "
                                        "vm-manager's: not ours, left alone", advisory=True))
            continue
        if owner in domains.uuids:
            continue
        if used:
            findings.append(Finding("folder", str(folder), "its VM is gone, but another VM uses files "
                                    "in it: left alone", advisory=True))
            continue
        finding = Finding("folder", str(folder), "its VM is gone")
        if domains.unreadable:
            finding = replace(finding, problem=f"{finding.problem}; kept while the definition of "
                              f"{', '.join(domains.unreadable)} cannot be read")
        elif fix:
            done = remove_vm_folder(folder)
            finding = replace(finding, fixed="removed") if done else replace(
                finding, problem=f"{finding.problem}; some of its files would not go")
        findings.append(finding)
    return findings


def _holds_nothing(folder: Path) -> bool:
    """Whether a folder holds nothing but, perhaps, a marker (a whole one or one cut short)."""
    try:
        return set(os.listdir(folder)) <= {MARKER}
    except OSError:
        return False


def _sockets(socket_dir: Path, domains: _Domains, fix: bool) -> list[Finding]:
    findings = []
    for uuid, path in sorted(vnc_sockets(socket_dir).items()):
        if uuid in domains.uuids:
            continue  # a shut-off VM's: QEMU makes it anew at the next start
        finding = Finding("socket", str(path), "its VM is gone")
        if domains.unreadable:
            finding = replace(finding, problem=f"{finding.problem}; kept while the definition of "
                              f"{', '.join(domains.unreadable)} cannot be read")
        elif fix:
            try:
                remove_vnc_socket(path)
                finding = replace(finding, fixed="removed")
            except OSError as exc:
                finding = replace(finding, problem=f"{finding.problem}; cannot remove it: {exc.strerror}")
        findings.append(finding)
    return findings


def _left_paused(dom: libvirt.virDomain, name: str, folders: set[Path], fix: bool) -> list[Finding]:
    """A VM a killed run started paused and never resumed (its folder still has the STARTING mark).

    A mark beside a VM that runs (killed between the resume and the mark's removal) is only
    removed; a VM paused without a mark was paused by someone, and is left alone.
    """
    marks = [folder / STARTING for folder in folders if (folder / STARTING).exists()]
    if not marks:
        return []
    try:
        paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    except libvirt.libvirtError:
        return []
    finding = Finding("domain", name, "left paused by a provisioning run that was killed")
    if fix:
        try:
            if paused:
                dom.resume()
        except libvirt.libvirtError as exc:
            return [Finding(finding.what, finding.where, f"{finding.problem}; resume failed: "
                            f"{exc.get_error_message()}")]
        for mark in marks:
            mark.unlink(missing_ok=True)
        finding = Finding(finding.what, finding.where, finding.problem, "resumed")
    return [finding] if paused else []


def _undefine(dom: libvirt.virDomain, finding: Finding) -> Finding:
    try:
        undefine(dom)
    except libvirt.libvirtError as exc:
        return Finding(finding.what, finding.where, f"{finding.problem}; undefine failed: "
                       f"{exc.get_error_message()}")
    return Finding(finding.what, finding.where, finding.problem, "undefined")
