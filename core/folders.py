"""Where a provisioned VM's files live, and who may enter there.

``<student_vms>/<username>/<vm>/`` holds a VM's overlay (``disk.qcow2``), its seed and its
console log. Folders are mode 0711 (QEMU passes, no other user can list them), files 0600.
VNC sockets live apart, in a folder only QEMU and this service can enter.

Provisioning runs hold a shared lock on the root for their whole length; ``doctor --fix`` takes
it alone, so it never removes the folder of a VM being made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from core.access import QEMU_USER, enterable_by, group_id
from core.errors import ActionFailed
from core.names import USERNAME, VM_NAME
from core.settings import Settings

DISK, LINUX_SEED, WINDOWS_SEED, CONSOLE_LOG = "disk.qcow2", "seed.iso", "autounattend.iso", "console.log"
LOCK_NAME = ".provisioning.lock"
STARTING = ".starting"
"""In a VM's folder from its paused start until provisioning resumes it: a VM paused with this
file was left so by a run that was killed (``doctor --fix`` resumes it)."""


def vm_folder(root: Path, owner: str, name: str) -> Path | None:
    """An existing VM folder ``<root>/<owner>/<name>``; None for names we could not have made."""
    if not USERNAME.fullmatch(owner) or not VM_NAME.fullmatch(name):
        return None
    folder = root / owner / name
    return folder if folder.is_dir() and not folder.is_symlink() else None


def vm_folders(root: Path) -> list[Path]:
    """Every ``<root>/<username>/<vm>/`` folder (only names we could have made: nothing else is ours)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for owner in os.scandir(root):
            if not (owner.is_dir(follow_symlinks=False) and USERNAME.fullmatch(owner.name)):
                continue
            for vm in os.scandir(owner.path):
                if vm.is_dir(follow_symlinks=False) and VM_NAME.fullmatch(vm.name):
                    found.append(Path(vm.path))
    return sorted(found)


def remove_vm_folder(folder: Path) -> None:
    """Remove a VM's folder, and its owner's folder when that is left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


def prepare(settings: Settings) -> None:
    """The student folder root (QEMU must pass it) and the console socket folder (only QEMU and us).

    The socket folder belongs to the service (the web server's user), group QEMU's, mode 0770:
    QEMU makes the sockets in it, the service connects to them, nobody else can even look in.
    """
    root = settings.student_vms_dir
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    sockets = settings.console_socket_dir
    sockets.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    sockets.mkdir(mode=0o770, exist_ok=True)
    gid = group_id(QEMU_USER)
    if gid is None:
        raise ActionFailed(f"no user {QEMU_USER} on this host (is libvirt installed?)")
    try:
        # The owner stays whoever made it (deploy/ makes it for the web server's user when the
        # operator provisions as root); the group becomes QEMU's so that QEMU can make sockets.
        os.chown(sockets, -1, gid)
        sockets.chmod(0o770)
    except PermissionError:
        raise ActionFailed(f"cannot give {sockets} to group {QEMU_USER}: run as root, or make it "
                           f"yourself (owner: this service, group {QEMU_USER}, mode 0770)") from None
    for folder in (root, sockets):
        if problem := enterable_by(folder):
            raise ActionFailed(f"{problem}: QEMU could not reach {folder}")


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """A shared lock on the student folder root for the length of a run (``doctor`` takes it alone)."""
    with open(root / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


@contextlib.contextmanager
def exclusive_lock(root: Path) -> Iterator[bool]:
    """The lock ``doctor --fix`` holds: yields False when a provisioning run holds it."""
    if not root.exists():
        yield True
        return
    with open(root / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


