"""Whether QEMU's user can reach a file: every folder above it must let that user pass.

libvirt runs QEMU as an unprivileged user (Debian: ``libvirt-qemu``) and relabels the disks it
is given at start (``dynamic_ownership``), but not the folders above them: a template or a
student's overlay under a folder that user cannot enter fails at start with "Permission denied".
These checks say so before anything is made.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

QEMU_USER = "libvirt-qemu"  # what Debian's libvirt runs QEMU as (qemu.conf `user`)
QEMU_GROUP = "libvirt-qemu"  # and its group (qemu.conf `group`): QEMU's own, no person's


def _account(user: str) -> tuple[int, set[int]] | None:
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return None
    return account.pw_uid, {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def enterable_by(directory: Path, user: str = QEMU_USER) -> str:
    """Why ``user`` cannot pass through ``directory`` and every folder above it, or "" when it can."""
    found = _account(user)
    if found is None:
        return f"no user {user} on this host (is libvirt installed?)"
    uid, groups = found
    absolute = directory.absolute()
    for folder in [*reversed(absolute.parents), absolute]:
        if folder.exists() and not _allowed(folder.stat(), uid, groups, stat.S_IXUSR, stat.S_IXGRP,
                                            stat.S_IXOTH):
            return f"{user} cannot enter {folder}"
    return ""


def readable_by(path: Path, user: str = QEMU_USER) -> str:
    """Why ``user`` cannot read ``path`` (every parent must let it pass), or "" when it can."""
    found = _account(user)
    if found is None:
        return f"no user {user} on this host (is libvirt installed?)"
    if not path.exists():
        return "missing"
    problem = enterable_by(path.absolute().parent, user)
    if problem:
        return problem
    if not path.is_file():
        return "not a file"
    uid, groups = found
    if not _allowed(path.stat(), uid, groups, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
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


def _allowed(st: os.stat_result, uid: int, groups: set[int], usr: int, grp_bit: int,
             oth: int) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & usr)
    if st.st_gid in groups:
        return bool(st.st_mode & grp_bit)
    return bool(st.st_mode & oth)
