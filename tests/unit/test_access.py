"""Whether QEMU's user can pass a folder, POSIX ACLs included, and letting it pass with setfacl.

Real folders, real ACLs (Debian's acl package), and the kernel's own answer: each verdict of
:mod:`core.storage.permissions` is checked against what a process of that user can actually do.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.asuser import python_as

from core.errors import ActionFailed
from core.storage.permissions import QEMU_USER, blocked_folders, enterable_by, grant_command, grant_passage


def kernel_lets(user: str, group: str, path: Path) -> bool:
    """Whether a process of ``user`` can stat ``path`` (so pass every folder above it)."""
    out = python_as("import os, sys", f"os.stat({str(path)!r})", user=user, group=group, timeout=30)
    return out.returncode == 0


def getfacl(path: Path) -> list[str]:
    out = subprocess.run(["getfacl", "--omit-header", "--absolute-names", str(path)], capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


@pytest.fixture
def closed(world_dir: Path) -> Path:
    """A folder only its owner may enter (as /root is), with a file inside."""
    folder = world_dir / "closed"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    (folder / "disk.qcow2").write_bytes(b"x")
    return folder


def test_a_closed_folder_is_in_the_way_and_the_command_names_it(closed: Path) -> None:
    assert blocked_folders(closed / "sub", QEMU_USER) == [closed]
    assert enterable_by(closed) == f"{QEMU_USER} cannot enter {closed}"
    assert grant_command([closed]) == f"setfacl -m u:{QEMU_USER}:x {closed}"
    assert not kernel_lets(QEMU_USER, QEMU_USER, closed / "disk.qcow2")


def test_granting_passage_is_an_acl_for_that_user_only(closed: Path) -> None:
    mode = os.stat(closed).st_mode & 0o7707  # everything but the group bits, which show the ACL mask
    grant_passage([closed])
    assert blocked_folders(closed) == []
    assert kernel_lets(QEMU_USER, QEMU_USER, closed / "disk.qcow2")  # the kernel agrees
    assert not kernel_lets("nobody", "nogroup", closed / "disk.qcow2")  # nobody else got anything
    acl = getfacl(closed)
    assert f"user:{QEMU_USER}:--x" in acl
    assert "group::---" in acl  # no broad chmod
    assert "other::---" in acl
    assert os.stat(closed).st_mode & 0o7707 == mode
    listing = python_as("import os", f"os.listdir({str(closed)!r})", user=QEMU_USER, group=QEMU_USER,
                        timeout=30)
    assert listing.returncode != 0  # pass, not list
    assert "PermissionError" in listing.stderr


def test_an_entry_the_mask_takes_away_does_not_count(closed: Path) -> None:
    subprocess.run(["setfacl", "-m", f"u:{QEMU_USER}:x,m::---", str(closed)], check=True)
    assert blocked_folders(closed) == [closed]
    assert not kernel_lets(QEMU_USER, QEMU_USER, closed / "disk.qcow2")


def test_a_group_entry_of_qemus_group_lets_it_pass(closed: Path) -> None:
    subprocess.run(["setfacl", "-m", f"g:{QEMU_USER}:x", str(closed)], check=True)
    assert blocked_folders(closed) == []
    assert kernel_lets(QEMU_USER, QEMU_USER, closed / "disk.qcow2")


def test_a_grant_keeps_what_the_users_entry_had(closed: Path) -> None:
    subprocess.run(["setfacl", "-m", f"u:{QEMU_USER}:r", str(closed)], check=True)
    assert blocked_folders(closed) == [closed]  # it may list, not pass
    grant_passage([closed])
    assert f"user:{QEMU_USER}:r-x" in getfacl(closed)


def test_without_setfacl_the_grant_says_which_package(closed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(closed))
    with pytest.raises(ActionFailed, match=r"setfacl is not installed \(Debian's package acl\)"):
        grant_passage([closed])
    monkeypatch.undo()
    assert not any(line.startswith(f"user:{QEMU_USER}") for line in getfacl(closed))
