"""Provisioning a class from a template: plan (every check, nothing made), then make it.

:mod:`planning` checks a request and fixes every name and path; :mod:`execution` makes the VMs,
each all-or-nothing; :mod:`templates` reads templates.toml; :mod:`roster` reads CSV rosters;
:mod:`domainbuild` writes the domain XML; :mod:`kvmprobe` decides domain type ``auto``;
:mod:`doctor` finds what killed runs left; :mod:`passwords` makes and files passwords;
``guests/`` holds what the guest reads at first boot (cloud-init seeds, Windows answer files and
their CD).

The names below load their module on first use (PEP 562): the lab imports the templates and the
answer CD at start-up, and the TUI and ``vm-manager list`` should not pay for planning and making.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.provision.doctor import Checkup, Finding
    from core.provision.execution import Outcome, Progress, Report, execute
    from core.provision.kvmprobe import DEADLINE as KVM_PROBE_DEADLINE
    from core.provision.planning import AUTO, QEMU_USER, Plan, Unreachable, plan
    from core.provision.roster import RosterError, read_roster
    from core.provision.templates import FileCheck, Template, check_files, load_templates

_HOMES = {  # name -> (module, its name there)
    "Checkup": ("doctor", "Checkup"), "Finding": ("doctor", "Finding"),
    "Outcome": ("execution", "Outcome"), "Progress": ("execution", "Progress"),
    "Report": ("execution", "Report"), "execute": ("execution", "execute"),
    "KVM_PROBE_DEADLINE": ("kvmprobe", "DEADLINE"),
    "AUTO": ("planning", "AUTO"), "QEMU_USER": ("planning", "QEMU_USER"), "Plan": ("planning", "Plan"),
    "Unreachable": ("planning", "Unreachable"), "plan": ("planning", "plan"),
    "RosterError": ("roster", "RosterError"), "read_roster": ("roster", "read_roster"),
    "FileCheck": ("templates", "FileCheck"), "Template": ("templates", "Template"),
    "check_files": ("templates", "check_files"), "load_templates": ("templates", "load_templates"),
}
__all__ = ["AUTO", "KVM_PROBE_DEADLINE", "QEMU_USER", "Checkup", "FileCheck", "Finding", "Outcome", "Plan",
           "Progress", "Report", "RosterError", "Template", "Unreachable", "check_files", "execute",
           "load_templates", "plan", "read_roster"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _HOMES[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value  # later lookups are plain attribute reads
    return value
