"""Provisioning a class from a template: plan (every check, nothing made), then make it.

:mod:`planning` checks a request and fixes every name and path; :mod:`execution` makes the VMs,
each all-or-nothing; :mod:`templates` reads templates.toml; :mod:`roster` reads CSV rosters;
:mod:`domainbuild` writes the domain XML; :mod:`kvmprobe` decides domain type ``auto``;
:mod:`doctor` finds what killed runs left; :mod:`passwords` makes and files passwords;
``guests/`` holds what the guest reads at first boot (cloud-init seeds, Windows answer files and
their CD).
"""

from core.provision.doctor import Checkup, Finding
from core.provision.execution import Outcome, Progress, Report, execute
from core.provision.kvmprobe import DEADLINE as KVM_PROBE_DEADLINE
from core.provision.planning import AUTO, QEMU_USER, Plan, Unreachable, plan
from core.provision.roster import RosterError, read_roster
from core.provision.templates import FileCheck, Template, check_files, load_templates

__all__ = ["AUTO", "KVM_PROBE_DEADLINE", "QEMU_USER", "Checkup", "FileCheck", "Finding", "Outcome", "Plan",
           "Progress", "Report", "RosterError", "Template", "Unreachable", "check_files", "execute",
           "load_templates", "plan", "read_roster"]
