"""The two commands from any checkout: the tests that put files where QEMU or another user must
reach them pass from a copy of the repository in a fresh folder of mode 0700, as a clone under
/root is (libvirt-qemu and nobody may not even pass it).

The copy holds what a clone's work tree holds (every file git tracks or would track, as it is in
this working tree, so that uncommitted work is what gets tested), and the noVNC release ``make``
installed. It runs with this session's Python, which imports the copy's ``core`` and ``tui``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import CHECKOUT

pytestmark = pytest.mark.integration

# The tests that failed from a clone under /root before these were fixed, and those of the fix.
REACH_TESTS = (
    "tests/integration/test_live_provision.py::test_a_class_of_five_made_booted_reset_and_deleted",
    "tests/integration/test_live_provision.py::test_a_class_behind_a_folder_qemu_cannot_pass_boots_once_let_through",
    "tests/unit/test_settings.py::test_an_unreadable_env_file_is_a_clear_error",
    "tests/web/test_live_consoles.py::test_no_listening_socket_gives_vnc_without_a_token",
    "tests/unit/test_access.py",
    "tests/unit/test_provision_run.py",
)


@pytest.fixture
def closed_clone(outside: object) -> Iterator[Path]:
    """``<fresh 0700 folder>/vm-manager``: the checkout's files, copied. (``outside``: libvirtd first.)"""
    home = Path(tempfile.mkdtemp(prefix="vmm-clone-", dir="/var/tmp"))
    home.chmod(0o700)
    clone = home / "vm-manager"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=CHECKOUT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = CHECKOUT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    if (CHECKOUT / "noVNC" / "vendor").is_dir():
        shutil.copytree(CHECKOUT / "noVNC" / "vendor", clone / "noVNC" / "vendor", symlinks=True)
    try:
        yield clone
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_reach_tests_pass_from_a_clone_in_a_closed_folder(closed_clone: Path) -> None:
    assert os.stat(closed_clone.parent).st_mode & 0o777 == 0o700
    where = subprocess.run([sys.executable, "-c", "import core, tui; print(core.__file__, tui.__file__)"],
                           cwd=closed_clone, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(path).is_relative_to(closed_clone) for path in where), where  # the copy's code
    env = {**os.environ, "VMM_REQUIRE_INTEGRATION": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *REACH_TESTS],
                         cwd=closed_clone, env=env, capture_output=True, text=True, timeout=900)
    summary = run.stdout.strip().splitlines()[-1:] or ["(no output)"]
    assert run.returncode == 0, f"{summary[0]}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert " passed" in summary[0]
    assert "skipped" not in summary[0]
