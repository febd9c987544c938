"""``vm-manager doctor``: what provisioning runs that were killed left half-made.

Three kinds of leftovers:

- a VM folder (``<student_vms>/<username>/<vm>/``) that no domain uses: the run died before
  ``define``, or a delete died half-way;
- a domain of ours (it carries our metadata with a creation time) whose disk is gone;
- a domain of ours left paused: the run started it paused and died before resuming it (its
  folder keeps the ``STARTING`` mark until the resume).

``fix`` removes the first two and resumes the third, and touches nothing else: domains without
our metadata are never looked at twice, and nothing runs while a provisioning run holds the
student folder root's lock.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from core import domainxml
from core.folders import STARTING, exclusive_lock, remove_vm_folder, vm_folders
from core.host import Host
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    what: str  # "folder" | "domain"
    where: str  # the folder's path, or the domain's name
    problem: str
    fixed: str = ""  # what --fix did, "" when not (yet) fixed


@dataclass
class Checkup:
    findings: list[Finding] = field(default_factory=list)
    busy: bool = False  # a provisioning run was in progress: nothing was fixed

    @property
    def unfixed(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]


def checkup(settings: Settings, host: Host, fix: bool = False) -> Checkup:
    """Look (blocking: libvirt calls and file-system walks); with ``fix``, remove what is found."""
    root = settings.student_vms_dir
    with exclusive_lock(root) as free:
        result = Checkup(busy=not free)
        used: set[Path] = set()
        for dom in host.connection().listAllDomains(0):
            try:
                info = domainxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
                active = dom.isActive()
            except libvirt.libvirtError:
                continue  # undefined while we looked
            files = [d for d in info.disks if d.source and d.source_type == "file"]
            if info.meta.created and active:
                result.findings += _left_paused(dom, info.name, {Path(d.source).parent for d in files},
                                                fix and free)
            missing = [d.source for d in files if d.device == "disk" and not os.path.exists(d.source)]
            if info.meta.created and missing and not active:
                finding = Finding("domain", info.name, f"its disk {missing[0]} is gone")
                if fix and free:
                    finding = _undefine(dom, finding)
                result.findings.append(finding)
                if finding.fixed:
                    continue  # its folder, if any, is now a leftover too
            used |= {Path(d.source).parent for d in files}
        for folder in vm_folders(root):
            if folder not in used:
                finding = Finding("folder", str(folder), "no VM uses it")
                if fix and free:
                    remove_vm_folder(folder)
                    finding = Finding(finding.what, finding.where, finding.problem, "removed")
                result.findings.append(finding)
    for finding in result.findings:
        log.info("doctor: %s %s: %s%s", finding.what, finding.where, finding.problem,
                 f" ({finding.fixed})" if finding.fixed else "")
    return result


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
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    except libvirt.libvirtError as exc:
        return Finding(finding.what, finding.where, f"{finding.problem}; undefine failed: "
                       f"{exc.get_error_message()}")
    return Finding(finding.what, finding.where, finding.problem, "undefined")
