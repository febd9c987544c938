"""Where a provisioned VM's files live, who may enter there, and which folders are ours.

``<student_vms>/<username>/<vm>/`` holds a VM's overlay (``disk.qcow2``), its seed and its
console log. Folders are mode 0711 (QEMU passes, no other user can list them), files 0600.
VNC sockets live apart, ``<console_socket_dir>/<uuid>.vnc``, in a folder only QEMU and this
service can enter (group ``libvirt-qemu``, QEMU's own: not ``kvm``, which people join).

Ours, provably: every VM folder holds a marker file (:data:`MARKER`) naming the UUID of the
domain it is made for. Delete removes a folder only when the marker names the deleted domain;
``doctor`` only when it names a domain that no longer exists. A folder without the marker
(something else under the root, a student's own files) is never removed by either.

No kill leaves a folder of ours unmarked. :func:`make_vm_folder` makes the folder under a hidden
work name (``.<vm>.vmm-XXXXXXXX``), writes the marker in it, then renames it into place: the
folder appears whole and marked, before the domain is defined. :func:`remove_vm_folder` first
renames the folder back to a work name, then empties it, its marker last. A work folder left by a
kill is marked (``doctor`` treats it as any marked folder) or holds nothing but a marker cut
short (``doctor`` removes it: there is nothing to lose).

Storage of a host is touched only when its files are this machine's (``Host.files_local``):
libvirt's test driver (the demo lab) names disks that are no files of ours (test:///default says
``/guest/diskimage1``), and a remote host's files are on another machine. A folder marked as a
VM's own is ours on any host.

Provisioning runs hold a shared lock on the root for their whole length; ``doctor --fix`` takes
it alone, so it never removes the folder of a VM being made.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

from core.errors import ActionFailed
from core.names import USERNAME, VM_NAME
from core.settings import Settings
from core.storage.permissions import QEMU_GROUP, enterable_by, group_id

DISK, LINUX_SEED, WINDOWS_SEED, CONSOLE_LOG = "disk.qcow2", "seed.iso", "autounattend.iso", "console.log"
LOCK_NAME = ".provisioning.lock"
STARTING = ".starting"
"""In a VM's folder from its paused start until provisioning resumes it: a VM paused with this
file was left so by a run that was killed (``doctor --fix`` resumes it)."""
MARKER = ".vm-manager-domain"
"""In every VM folder provisioning makes: the UUID of the domain it is made for (one line)."""
_MARKER_MAX = 100  # bytes read from a marker: a UUID and a newline, with room to spare
_WORK = ".vmm-"  # a work folder is named f".{vm}{_WORK}{8 random characters}" (tempfile's)
_WORK_NAME = re.compile(r"^\.[A-Za-z0-9-]{1,63}" + re.escape(_WORK) + r"[a-z0-9_]{8}$")


def make_vm_folder(folder: Path, uuid: str) -> None:
    """Make ``<root>/<owner>/<vm>/`` (never over an existing one), marked as domain ``uuid``'s.

    Called before the domain is defined, so that whatever a killed run leaves is marked; a
    failure after the folder is made removes it again (the caller's clean-up never sees it).
    """
    marker = _uuid(uuid)
    if marker is None:
        raise ValueError(f"not a UUID: {uuid!r}")
    owner = folder.parent
    owner.mkdir(mode=0o711, exist_ok=True)
    owner.chmod(0o711)  # whatever the umask: QEMU passes, other users cannot list
    if folder.exists() or folder.is_symlink():
        raise FileExistsError(errno.EEXIST, "it exists already (never overwritten)", str(folder))
    work = _work_folder(folder)
    try:
        fd = os.open(work / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(marker + "\n")
        work.chmod(0o711)
        # Fails on anything there now but an empty folder, which it replaces: nothing is lost.
        os.rename(work, folder)
    except BaseException:
        (work / MARKER).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()
        raise


def _work_folder(folder: Path) -> Path:
    """A new, empty, hidden folder beside ``folder`` (mode 0700), named as ours."""
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}{_WORK}", dir=folder.parent))


def folder_domain(folder: Path) -> str | None:
    """The UUID a VM folder's marker names, or None: no marker, or not one we wrote."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as marker:
        if not stat.S_ISREG(os.fstat(marker.fileno()).st_mode):
            return None
        text = marker.read(_MARKER_MAX)
    try:
        return _uuid(text.decode("ascii").strip())
    except UnicodeDecodeError:
        return None


def _uuid(text: str) -> str | None:
    """``text`` as a canonical lowercase UUID, or None when it is not one."""
    try:
        value = uuidlib.UUID(text)
    except ValueError:
        return None
    return str(value) if str(value) == text.lower() else None


def vm_folder(root: Path, owner: str, name: str, uuid: str) -> Path | None:
    """The folder ``<root>/<owner>/<name>`` if it exists and is marked as domain ``uuid``'s, else None."""
    if not USERNAME.fullmatch(owner) or not VM_NAME.fullmatch(name):
        return None
    folder = root / owner / name
    if folder.is_symlink() or not folder.is_dir():
        return None
    wanted = _uuid(uuid)
    return folder if wanted is not None and folder_domain(folder) == wanted else None


def vm_folders(root: Path) -> list[Path]:
    """Every ``<root>/<username>/<vm>/`` folder, marked or not (see :func:`folder_domain`)."""
    return _scan(root, VM_NAME)


def work_folders(root: Path) -> list[Path]:
    """The hidden work folders (``<root>/<username>/.<vm>.vmm-XXXXXXXX``) a kill left behind."""
    return _scan(root, _WORK_NAME)


def _scan(root: Path, names: re.Pattern[str]) -> list[Path]:
    """The folders ``<root>/<username>/<a name matching names>``, symlinks not followed."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for owner in os.scandir(root):
            if not (owner.is_dir(follow_symlinks=False) and USERNAME.fullmatch(owner.name)):
                continue
            found += [Path(entry.path) for entry in os.scandir(owner.path)
                      if entry.is_dir(follow_symlinks=False) and names.fullmatch(entry.name)]
    return sorted(found)


def remove_vm_folder(folder: Path) -> bool:
    """Remove a VM's folder (or a work folder), and its owner's folder when that is left empty.

    The folder leaves its name at once (renamed to a work name), then is emptied, its marker
    last. Returns whether it is gone: one cut short (killed, or a file that would not go) stays a
    marked work folder, which ``doctor`` knows and finishes.
    """
    work = folder
    if not _WORK_NAME.fullmatch(folder.name):
        with contextlib.suppress(FileNotFoundError):
            work = _work_folder(folder)
            try:
                os.rename(folder, work)  # over the empty folder just made for it
            except OSError as exc:
                work.rmdir()
                if exc.errno != errno.ENOENT:
                    return False
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(work):
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    return remove_if_empty(work)


def remove_if_empty(folder: Path) -> bool:
    """Remove a folder that holds nothing but its marker, its marker last, and its owner's folder
    if that is left empty. Whether it is gone (not when anything else is in it)."""
    try:
        if any(entry.name != MARKER for entry in os.scandir(folder)):
            return False
        (folder / MARKER).unlink(missing_ok=True)
        folder.rmdir()  # fails if anything came in meanwhile
    except FileNotFoundError:
        pass
    except OSError:
        return False
    with contextlib.suppress(OSError):
        folder.parent.rmdir()
    return True


def vnc_socket(socket_dir: Path, uuid: str) -> Path:
    """Where provisioning puts a VM's VNC socket."""
    return socket_dir / f"{uuid}.vnc"


def vnc_sockets(socket_dir: Path) -> dict[str, Path]:
    """The sockets ``<uuid>.vnc`` in the socket folder, by UUID (nothing else there is ours)."""
    found: dict[str, Path] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(socket_dir):
            stem, dot, suffix = entry.name.rpartition(".")
            uuid = _uuid(stem) if dot and suffix == "vnc" else None
            if uuid is not None and _is_socket(Path(entry.path)):
                found[uuid] = Path(entry.path)
    return found


def remove_vnc_socket(path: Path) -> bool:
    """Remove a VM's VNC socket (QEMU leaves it behind); only a socket, never another file."""
    if not _is_socket(path):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def prepare(settings: Settings) -> None:
    """The student folder root (QEMU must pass it) and the console socket folder (only QEMU and us).

    The socket folder belongs to the service (the web server's user), group QEMU's own
    (``libvirt-qemu``, not ``kvm``), mode 0770: QEMU makes the sockets in it, the service
    connects to them, nobody else can even look in.
    """
    root = settings.provision.student_vms_dir
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    sockets = settings.consoles.socket_dir
    sockets.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    sockets.mkdir(mode=0o770, exist_ok=True)
    gid = group_id(QEMU_GROUP)
    if gid is None:
        raise ActionFailed(f"no group {QEMU_GROUP} on this host (is libvirt installed?)")
    try:
        # The owner stays whoever made it (deploy/ makes it for the web server's user when the
        # operator provisions as root); the group becomes QEMU's so that QEMU can make sockets.
        os.chown(sockets, -1, gid)
        sockets.chmod(0o770)
    except PermissionError:
        raise ActionFailed(f"cannot give {sockets} to group {QEMU_GROUP}: run as root, or make it "
                           f"yourself (owner: this service, group {QEMU_GROUP}, mode 0770)") from None
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


