"""Delete (and reset) touch only what is provably theirs: never the host's files for the test
driver, a student folder only when its marker names the VM, never a template's file."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path

import pytest
from support.cli import CHECKOUT, vm_manager
from support.unixsock import leave_socket

from core.lab import Lab
from core.lifecycle.ownership import Protected
from core.metadata import LabMeta
from core.settings import Settings
from core.storage.folders import (
    MARKER,
    folder_domain,
    make_vm_folder,
    remove_vm_folder,
    vm_folder,
    vm_folders,
    work_folders,
)
from core.testing import testdriver
from core.testing.testdriver import Spec
from core.virt.inventory import Inventory

cli = vm_manager


@pytest.fixture
def overlay_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A real qcow2 base image and an overlay backed by it."""
    base, overlay = tmp_path / "base.qcow2", tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "16M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay],
                   check=True)
    return base, overlay


def test_deleting_a_demo_vm_leaves_the_hosts_files_alone(tmp_path: Path) -> None:
    """The audit's repro, and stronger: the real VM of the same name has a marked folder (another
    UUID: the real domain's); it and the socket stay. (A folder marked as the demo VM's own would
    be ours: provisioning on a test-driver lab makes real folders.)"""
    demo = next(s for s in testdriver.demo_specs() if s.name == "net101-alice")
    folder = tmp_path / "sv" / "alice" / "net101-alice"
    folder.mkdir(parents=True)
    (folder / "disk.qcow2").write_bytes(b"a student's work")
    (folder / MARKER).write_text("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n")
    sockets = tmp_path / "consoles"
    sockets.mkdir()
    leave_socket(sockets / f"{demo.domain_uuid}.vnc")

    out = cli("-c", f"test://{CHECKOUT}/core/demo/lab.xml", "delete", "--yes", "net101-alice",
              VMM_DATA_DIR=str(tmp_path / "data"), VMM_STUDENT_VMS_DIR=str(tmp_path / "sv"),
              VMM_CONSOLE_SOCKET_DIR=str(sockets))

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "net101-alice: deleted, 0 disks removed"
    assert (folder / "disk.qcow2").read_bytes() == b"a student's work"
    assert (sockets / f"{demo.domain_uuid}.vnc").is_socket()


async def test_the_test_drivers_disks_are_fictional_even_when_a_file_bears_their_name(
        tmp_path: Path, settings: Settings, overlay_pair: tuple[Path, Path]) -> None:
    base, overlay = overlay_pair
    before = overlay.read_bytes()
    uri = testdriver.write(tmp_path / "lab.xml", [Spec("a", disks=(str(overlay),)),
                                                  Spec("b", disks=(str(base),))])
    lab = await Lab.open(settings, uri)
    try:
        vms = {vm.name: vm for vm in lab.vms()}
        (reset,) = await lab.act("reset", [vms["a"]])
        assert not reset.ok
        assert "not files on this machine" in reset.message
        results = await lab.act("delete", [vms["a"], vms["b"]])
        assert [(r.ok, r.message) for r in results] == [(True, "deleted, 0 disks removed")] * 2
        assert lab.vms() == []
    finally:
        await lab.close()
    assert overlay.read_bytes() == before
    assert base.exists()


def test_a_vm_folder_is_made_marked_with_its_domain(tmp_path: Path) -> None:
    uuid = str(uuidlib.uuid4())
    folder = tmp_path / "alice" / "net101-alice"
    make_vm_folder(folder, uuid)
    assert folder_domain(folder) == uuid
    assert (folder / MARKER).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o711
    assert vm_folder(tmp_path, "alice", "net101-alice", uuid.upper()) == folder
    assert vm_folder(tmp_path, "alice", "net101-alice", str(uuidlib.uuid4())) is None
    with pytest.raises(FileExistsError):
        make_vm_folder(folder, str(uuidlib.uuid4()))  # never over an existing folder
    assert folder_domain(folder) == uuid
    with pytest.raises(ValueError, match="not a UUID"):
        make_vm_folder(tmp_path / "bob" / "net101-bob", "../../etc")
    assert not (tmp_path / "bob" / "net101-bob").exists()


@pytest.mark.parametrize("content", [b"", b"not-a-uuid\n", b"\xff\xfe", b"x" * 4096])
def test_a_folder_without_a_proper_marker_is_nobodys(tmp_path: Path, content: bytes) -> None:
    folder = tmp_path / "alice" / "Documents"
    folder.mkdir(parents=True)
    (folder / MARKER).write_bytes(content)
    assert folder_domain(folder) is None
    assert folder_domain(tmp_path / "alice") is None  # no marker at all


def test_a_marker_that_is_a_symlink_counts_for_nothing(tmp_path: Path) -> None:
    uuid = str(uuidlib.uuid4())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(uuid)
    folder = tmp_path / "alice" / "net101-alice"
    folder.mkdir(parents=True)
    (folder / MARKER).symlink_to(elsewhere)
    assert folder_domain(folder) is None
    assert vm_folder(tmp_path, "alice", "net101-alice", uuid) is None


def test_removing_a_vm_folder_takes_its_marker_and_an_empty_owner_folder(tmp_path: Path) -> None:
    folder = tmp_path / "alice" / "net101-alice"
    make_vm_folder(folder, str(uuidlib.uuid4()))
    (folder / "disk.qcow2").write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "f").write_text("y")
    (folder / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("kept")
    assert remove_vm_folder(folder)
    assert not (tmp_path / "alice").exists()
    assert (tmp_path / "outside").read_text() == "kept"  # a symlink is removed, never followed


def test_protected_sees_through_symlinks_and_other_spellings(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    golden = images / "golden.qcow2"
    golden.write_bytes(b"t")
    (tmp_path / "alias.qcow2").symlink_to(golden)
    folder = tmp_path / "templates"
    (folder / "x").mkdir(parents=True)
    protected = Protected.of([folder], [tmp_path / "images" / ".." / "images" / "golden.qcow2"])
    assert protected.covers(str(golden))
    assert protected.covers(str(tmp_path / "alias.qcow2"))
    assert protected.covers(str(folder / "x" / "y.qcow2"))
    assert not protected.covers(str(images / "other.qcow2"))
    assert not protected.covers(str(tmp_path / "templates-2" / "a.qcow2"))


def test_every_file_templates_toml_declares_is_protected(tmp_path: Path) -> None:
    config, folder = tmp_path / "config", tmp_path / "templates"
    config.mkdir()
    (config / "templates.toml").write_text(
        '[templates.a]\nimage = "/srv/images/a.qcow2"\n'
        '[templates.b]\nkernel = "b/vmlinuz"\ninitrd = "/srv/boot/initrd.img"\n')
    lab = Lab(Settings(config_dir=config, template_dir=folder, data_dir=tmp_path / "data"), [], Inventory())
    protected = lab.protected()
    assert protected.problem == ""
    for path in ("/srv/images/a.qcow2", str(folder / "b" / "vmlinuz"), "/srv/boot/initrd.img",
                 str(folder / "anything.qcow2")):
        assert protected.covers(path), path
    assert not protected.covers("/srv/images/b.qcow2")


@pytest.mark.parametrize("text", ["[templates.a]\nimage = 3\n", "[templates\n", "\xff"])
def test_a_broken_templates_toml_leaves_the_templates_unknown(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_bytes(text.encode("latin-1"))
    lab = Lab(Settings(config_dir=config, data_dir=tmp_path / "data"), [], Inventory())
    problem = lab.protected().problem
    assert problem.startswith("templates.toml is broken")
    assert "\n" not in problem


async def test_a_broken_templates_toml_refuses_deleting_a_disk_on_the_test_driver_neither(
        tmp_path: Path, lab_file) -> None:
    """The test driver removes no disk at all: a broken file does not stand in its way."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text("[templates\n")
    lab = await Lab.open(Settings(config_dir=config, data_dir=tmp_path / "data"),
                         lab_file([Spec("v", disks=("/guest/diskimage1",), meta=LabMeta(owner="alice"))]))
    try:
        (result,) = await lab.act("delete", lab.vms())
        assert (result.ok, result.message) == (True, "deleted, 0 disks removed")
    finally:
        await lab.close()


_CHURN = """
import sys, uuid
from pathlib import Path
from core.storage.folders import make_vm_folder, remove_vm_folder
root = Path(sys.argv[1])
print("ready", flush=True)
for i in range(100000):
    folder = root / f"u{i % 7}" / f"vm-{i}"
    make_vm_folder(folder, str(uuid.uuid4()))
    (folder / "disk.qcow2").write_bytes(b"x")
    if i % 3:
        remove_vm_folder(folder)
"""


@pytest.mark.parametrize("after", [0.05, 0.11, 0.17, 0.23, 0.29])
def test_a_kill_at_any_moment_leaves_no_folder_of_ours_unmarked(tmp_path: Path, after: float) -> None:
    """Folders made and removed in a loop, the process killed outright: every VM folder left is
    marked (doctor can tell it is ours), and every work folder is marked or holds nothing but a
    marker cut short (which doctor removes)."""
    churn = subprocess.Popen([sys.executable, "-c", _CHURN, tmp_path], stdout=subprocess.PIPE, text=True,
                             cwd=CHECKOUT)
    assert churn.stdout is not None
    assert churn.stdout.readline() == "ready\n"
    time.sleep(after)
    churn.kill()
    churn.wait(timeout=30)
    made = vm_folders(tmp_path)
    assert made, "the loop made nothing before it was killed"
    assert [f for f in made if folder_domain(f) is None] == []
    assert [f for f in work_folders(tmp_path)
            if folder_domain(f) is None and {p.name for p in f.iterdir()} - {MARKER}] == []
