"""Resolving what the operator named (names, globs, classes) into VMs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.model import VM
from core.names import check_class_name

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Resolved:
    vms: list[VM]
    unmatched: list[str]  # each pattern or class that named no VM, as the operator wrote it


def resolve(vms: Iterable[VM], patterns: Sequence[str] = (),
            classes: Sequence[str] = ()) -> Resolved:
    """VMs named exactly, matched by a glob (``stu-*``) or in one of ``classes``; no duplicates.

    A pattern counts as a glob only when it holds ``*``, ``?`` or ``[`` *and* no VM bears it as
    its exact name, so a VM called ``[b]bold`` can still be named literally. A class must be a
    valid class name: ``--class ''`` would otherwise pick every VM without a class; InvalidInput
    (bad usage) before anything is matched.
    """
    check_classes(classes)
    pool = sorted(vms, key=lambda vm: (vm.name, vm.host))
    chosen: dict[tuple[str, str], VM] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        hits = [vm for vm in pool if vm.name == pattern]
        if not hits and _GLOB_CHARS & set(pattern):
            hits = [vm for vm in pool if fnmatch.fnmatchcase(vm.name, pattern)]
        if not hits:
            unmatched.append(pattern)
        chosen.update((vm.key, vm) for vm in hits)
    for lab_class in classes:
        hits = [vm for vm in pool if vm.meta.lab_class == lab_class]
        if not hits:
            unmatched.append(f"--class {lab_class}")
        chosen.update((vm.key, vm) for vm in hits)
    return Resolved(sorted(chosen.values(), key=lambda vm: (vm.name, vm.host)), unmatched)


def check_classes(classes: Sequence[str]) -> None:
    """Refuse (InvalidInput) any class that is not a valid class name, the empty one included."""
    for lab_class in classes:
        check_class_name(lab_class)


TYPED_FROM = 5
"""A delete of this many VMs or more asks for their count to be typed, not a single y."""


def confirmation_word(action: str, vms: Sequence[VM], every_vm: Iterable[VM]) -> str:
    """What the operator must type to delete ``vms`` ("" when a y will do), as k9s and GitHub ask
    for a destructive bulk action: the class's name when they are all of a class's VMs (two or
    more), else their count when they are :data:`TYPED_FROM` or more."""
    if action != "delete" or len(vms) < 2:
        return ""
    classes = {vm.meta.lab_class for vm in vms}
    if len(classes) == 1 and (lab_class := classes.pop()):
        chosen = {vm.key for vm in vms}
        if all(vm.key in chosen for vm in every_vm if vm.meta.lab_class == lab_class):
            return lab_class
    return str(len(vms)) if len(vms) >= TYPED_FROM else ""
