"""What delete and reset may remove: only what is provably the VM's own.

Disks no other domain uses (directly or as a backing file), never a template's file or anything
in the template folder (:class:`Protected`), the student folder only when its marker names this
VM (:func:`core.storage.folders.vm_folder`), and nothing on this machine at all for a host whose
files are not ours (``Host.files_local``: a remote host, libvirt's test driver).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import libvirt

from core.errors import domain_name, from_libvirt
from core.model import VM
from core.names import USERNAME, VM_NAME
from core.storage import images
from core.storage.folders import vm_folder
from core.virt import domainxml
from core.virt.connection import Host


@dataclass(frozen=True)
class Protected:
    """What delete never removes: the template folder and every file templates.toml declares.

    Paths are compared resolved (symlinks followed), so no other spelling of a template's path
    gets past. ``problem`` says why the templates could not be read: then no disk can be told
    apart from a template's, and delete refuses, before changing anything, every VM that has a
    disk it would remove.
    """

    dirs: tuple[str, ...] = ()
    files: frozenset[str] = frozenset()
    problem: str = ""

    @classmethod
    def of(cls, dirs: Iterable[Path], files: Iterable[Path] = (), problem: str = "") -> Protected:
        return cls(tuple(os.path.realpath(d) for d in dirs),
                   frozenset(os.path.realpath(f) for f in files), problem)

    def covers(self, path: str) -> bool:
        resolved = os.path.realpath(path)
        return resolved in self.files or any(Path(resolved).is_relative_to(d) for d in self.dirs)


def own_folders(root: Path | None, vm: VM, info: domainxml.DomainInfo) -> tuple[list[Path], list[Path]]:
    """The student folders that may be this VM's: at ``<root>/<owner>/<name>``, or holding its
    disks (after ``assign`` changed its owner). Those marked as its own, and the others that exist."""
    if root is None:
        return [], []
    places = {(vm.meta.owner, vm.name)}
    base = os.path.normpath(os.path.abspath(root))
    for disk in info.disks:
        folder = os.path.dirname(os.path.normpath(disk.source)) if disk.source_type == "file" else ""
        if folder and os.path.dirname(os.path.dirname(folder)) == base:
            places.add((os.path.basename(os.path.dirname(folder)), os.path.basename(folder)))
    marked, unmarked = set(), set()
    for owner, name in places:
        if not (USERNAME.fullmatch(owner) and VM_NAME.fullmatch(name)):
            continue  # no folder of ours can bear that name
        found = vm_folder(root, owner, name, vm.uuid)
        if found is not None:
            marked.add(found)
        elif (root / owner / name).is_dir():
            unmarked.add(root / owner / name)
    return sorted(marked), sorted(unmarked)


def disk_users(host: Host, local: bool) -> tuple[dict[str, set[str]], list[str]]:
    """Every disk path on the host (and, for local files, every backing file below it), with the
    UUIDs that use it.

    Also why some use could not be known: a local image whose chain could not be read, a domain
    whose definition could not be read. While there is any, no disk can be shown to be unused,
    so none is removed.
    """
    users: dict[str, set[str]] = {}
    doubts: list[str] = []
    for dom in host.connection().listAllDomains(0):
        try:
            info = domainxml.parse(dom.XMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # else: undefined while we looked
                why = from_libvirt(exc).message
                doubts.append(f"the definition of {domain_name(dom)} cannot be read: {why}")
            continue
        for disk in info.disks:
            chain = [disk.source, *disk.backing]
            if disk.source and disk.source_type == "file" and local:
                try:
                    chain += images.backing_chain(disk.source)
                except images.UnreadableImage:
                    doubts.append(f"{disk.source} cannot be read")
            for path in chain:
                if path:
                    users.setdefault(os.path.normpath(path), set()).add(info.uuid)
    return users, doubts


def owned_disks(info: domainxml.DomainInfo, uuid: str, users: Mapping[str, set[str]],
                 protected: Protected) -> list[str]:
    """The disks only this VM uses: writable, unshared, not a template's, nobody's backing file."""
    owned = []
    for disk in info.disks:
        if disk.device != "disk" or disk.readonly or disk.shareable or not disk.source:
            continue
        if users.get(os.path.normpath(disk.source), {uuid}) - {uuid}:
            continue  # another domain uses it, directly or as a backing file
        if disk.source.startswith("/") and protected.covers(disk.source):
            continue
        owned.append(disk.source)
    return owned
