"""Whether QEMU's user can reach a file: every folder above it must let that user pass.

libvirt runs QEMU as an unprivileged user (Debian: ``libvirt-qemu``) and relabels the disks it
is given at start (``dynamic_ownership``), but not the folders above them: a template or a
student's overlay under a folder that user cannot enter fails at start with "Permission denied".
These checks say so before anything is made.

The checks read what the kernel reads: the mode bits and, where a folder has one, its POSIX
access ACL (the ``system.posix_acl_access`` attribute). :func:`grant_passage` is what
virt-manager does for a disk image QEMU cannot reach: it gives that one user search permission
(``x``) on the folders in the way with an ACL entry (``setfacl``), never a broad chmod.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

from core.errors import ActionFailed

QEMU_USER = "libvirt-qemu"  # what Debian's libvirt runs QEMU as (qemu.conf `user`)
QEMU_GROUP = "libvirt-qemu"  # and its group (qemu.conf `group`): QEMU's own, no person's
SETFACL = "setfacl"  # Debian's package acl

# linux/posix_acl_xattr.h: a little-endian header (version 2), then (tag u16, perm u16, id u32).
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_ACL_ENTRY = struct.Struct("<HHI")
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_R, _X = 4, 1


def _account(user: str) -> tuple[int, set[int]] | None:
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return None
    return account.pw_uid, {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def _no_user(user: str) -> str:
    return f"no user {user} on this host (is libvirt installed?)"


def blocked_folders(directory: Path, user: str = QEMU_USER) -> list[Path]:
    """The existing folders from ``/`` down to ``directory`` that ``user`` may not pass.

    Folders that do not exist yet are not in the way: they are made open enough when made.
    Raises ActionFailed when there is no such user.
    """
    found = _account(user)
    if found is None:
        raise ActionFailed(_no_user(user))
    uid, groups = found
    absolute = Path(os.path.abspath(directory))
    return [folder for folder in [*reversed(absolute.parents), absolute]
            if folder.exists() and not _allowed(folder, uid, groups, _X)]


def enterable_by(directory: Path, user: str = QEMU_USER) -> str:
    """Why ``user`` cannot pass through ``directory`` and every folder above it, or "" when it can."""
    try:
        blocked = blocked_folders(directory, user)
    except ActionFailed as exc:
        return exc.message
    return f"{user} cannot enter {blocked[0]}" if blocked else ""


def readable_by(path: Path, user: str = QEMU_USER) -> str:
    """Why ``user`` cannot read ``path`` (every parent must let it pass), or "" when it can."""
    found = _account(user)
    if found is None:
        return _no_user(user)
    if not path.exists():
        return "missing"
    return enterable_by(Path(os.path.abspath(path)).parent, user) or _file_problem(path, user, *found)


def file_problem(path: Path, user: str = QEMU_USER) -> str:
    """Why ``user`` cannot read the file itself (its folders aside), or ""."""
    found = _account(user)
    if found is None:
        return _no_user(user)
    if not path.exists():
        return "missing"
    return _file_problem(path, user, *found)


def _file_problem(path: Path, user: str, uid: int, groups: set[int]) -> str:
    if not path.is_file():
        return "not a file"
    if not _allowed(path, uid, groups, _R):
        return f"{user} cannot read it (unless libvirt's dynamic_ownership relabels it at start)"
    return ""


def group_id(group: str = QEMU_GROUP) -> int | None:
    """The id of ``group`` (by default the group QEMU runs as), or None when there is none.

    Not the primary group of QEMU's user: on Debian that is ``kvm``, which people are put in to
    use /dev/kvm. libvirt starts QEMU with ``libvirt-qemu`` as its group (``kvm`` only a
    supplementary one), so a folder of that group is QEMU's and nobody else's.
    """
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def grant_command(folders: Sequence[Path], user: str = QEMU_USER) -> str:
    """The command that lets ``user`` pass ``folders`` (and only pass: no listing, no reading)."""
    return shlex.join([SETFACL, "-m", f"u:{user}:x", *map(str, folders)])


def grant_passage(folders: Sequence[Path], user: str = QEMU_USER) -> None:
    """Give ``user`` search permission on each folder with a POSIX ACL entry (``setfacl``).

    An entry the user has already keeps its other permissions. Raises ActionFailed, naming the
    folder, when setfacl is missing or refuses (not the owner, a file system without ACLs).
    """
    found = _account(user)
    if found is None:
        raise ActionFailed(_no_user(user))
    if shutil.which(SETFACL) is None:
        raise ActionFailed(f"{SETFACL} is not installed (Debian's package acl): cannot let {user} "
                           f"pass {', '.join(map(str, folders))}")
    for folder in folders:
        perms = _named_user_perms(folder, found[0]) | _X
        spec = "".join(flag if perms & bit else "-" for flag, bit in (("r", 4), ("w", 2), ("x", 1)))
        done = subprocess.run([SETFACL, "-m", f"u:{user}:{spec}", str(folder)], capture_output=True,
                              text=True, timeout=30, check=False)
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise ActionFailed(f"could not let {user} pass {folder}: {why[0]}")


def _acl(path: Path) -> list[tuple[int, int, int]]:
    """The entries of ``path``'s access ACL, or [] when it has none beyond its mode bits."""
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError:
        return []
    if len(raw) < 4 or struct.unpack_from("<I", raw)[0] != _ACL_VERSION:
        return []
    return [_ACL_ENTRY.unpack_from(raw, offset) for offset in range(4, len(raw) - 7, _ACL_ENTRY.size)]


def _named_user_perms(path: Path, uid: int) -> int:
    return next((perm for tag, perm, who in _acl(path) if tag == _USER and who == uid), 0)


def _allowed(path: Path, uid: int, groups: set[int], want: int) -> bool:
    """The kernel's access check for ``want`` (4 read, 1 search), ACL included (acl(5))."""
    if uid == 0:
        return True
    st = path.stat()
    entries = _acl(path)
    if not entries:
        bits = (st.st_mode >> 6 if st.st_uid == uid else st.st_mode >> 3 if st.st_gid in groups
                else st.st_mode) & 0o7
        return bool(bits & want)
    if st.st_uid == uid:
        return bool(stat.S_IMODE(st.st_mode) >> 6 & want)
    mask = next((perm for tag, perm, _who in entries if tag == _MASK), 0o7)
    named = [perm for tag, perm, who in entries if tag == _USER and who == uid]
    if named:
        return bool(named[0] & mask & want)
    matching = [perm for tag, perm, who in entries
                if (tag == _GROUP_OBJ and st.st_gid in groups) or (tag == _GROUP and who in groups)]
    if matching:
        return any(perm & mask & want for perm in matching)
    return bool(next((perm for tag, perm, _who in entries if tag == _OTHER), 0) & want)
