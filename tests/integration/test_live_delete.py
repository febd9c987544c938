"""Delete removes the disks a VM owns, and nothing else: no template, no shared or backing file;
the student folder only when it is marked as that VM's; the VM's VNC socket. A bulk action goes
on when one VM fails in a way nobody foresaw."""

from __future__ import annotations

import logging
import uuid as uuidlib
from pathlib import Path

import pytest
from support.livelab import Disk, Outside, qemu_img
from support.unixsock import leave_socket

from core.metadata import LabMeta
from core.model import VMState
from core.settings import ConsoleSettings, ProvisionSettings
from core.storage.folders import make_vm_folder

pytestmark = pytest.mark.integration


def _image(path: Path, backing: Path | None = None, fmt: str = "qcow2") -> Path:
    if backing is None:
        qemu_img("create", "-q", "-f", fmt, path, "16M")
    else:
        qemu_img("create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", path)
    return path


async def test_delete_removes_own_disks_and_keeps_templates(outside: Outside, open_lab,
                                                            disk_dir: Path) -> None:
    templates = disk_dir / "templates"
    templates.mkdir(mode=0o755)
    own = _image(disk_dir / "own.qcow2")
    base = _image(disk_dir / "base.qcow2")
    overlay = _image(disk_dir / "overlay.qcow2", backing=base)
    iso = _image(disk_dir / "tools.img", fmt="raw")
    golden = _image(templates / "golden.qcow2")
    shared = _image(disk_dir / "shared.qcow2")
    lab, watch = await open_lab(template_dir=templates)

    plain = outside.define("own", disks=[Disk(own)]).UUIDString()
    layered = outside.define("layered", disks=[Disk(overlay), Disk(iso, "raw", readonly=True)])
    # The overlay's backing chain only shows in the XML of a running domain: run it.
    layered.create()
    in_templates = outside.define("intpl", disks=[Disk(golden)]).UUIDString()
    sharing = outside.define("share1", disks=[Disk(shared)]).UUIDString()
    other = outside.define("share2", disks=[Disk(shared)]).UUIDString()
    await watch.vm_in(layered.UUIDString(), VMState.RUNNING)
    targets = [await watch.vm_in(u, VMState.SHUTOFF) for u in (plain, in_templates, sharing)]
    targets.insert(1, watch.vm(layered.UUIDString()))

    results = await lab.act("delete", targets)

    assert all(r.ok for r in results), [r.message for r in results]
    assert [r.message for r in results] == [
        "deleted, 1 disk removed", "deleted, 1 disk removed", "deleted, 0 disks removed",
        "deleted, 0 disks removed"]
    for target in targets:
        await watch.gone(target.uuid)
        assert not outside.exists(target.uuid)
    assert not own.exists(), "the VM's own disk is removed"
    assert not overlay.exists(), "the VM's own overlay is removed"
    assert base.exists(), "a backing file (template) is kept"
    assert iso.exists(), "a read-only disk is kept"
    assert golden.exists(), "a disk inside the template dir is kept"
    assert shared.exists(), "a disk another domain uses is kept"
    assert outside.exists(other)


@pytest.mark.parametrize("clone_running", [True, False], ids=["running-clone", "shut-off-clone"])
async def test_delete_keeps_the_backing_file_of_a_clone(outside: Outside, open_lab, disk_dir: Path,
                                                        clone_running: bool) -> None:
    """Deleting a "template VM" must not remove the image a clone is layered on, running or not
    (libvirt reports no backing chain for a shut-off domain: the image header tells)."""
    base = _image(disk_dir / "base.qcow2")
    overlay = _image(disk_dir / "clone.qcow2", backing=base)
    lab, watch = await open_lab()
    template_vm = outside.define("tplvm", disks=[Disk(base)]).UUIDString()
    clone = outside.define("clone", disks=[Disk(overlay)], start=clone_running).UUIDString()
    await watch.vm_in(clone, VMState.RUNNING if clone_running else VMState.SHUTOFF)
    target = await watch.vm_in(template_vm, VMState.SHUTOFF)

    [result] = await lab.act("delete", [target])

    assert result.ok, result.message
    assert result.message == "deleted, 0 disks removed"
    assert base.exists(), "the clone's backing file was deleted with the template VM"


async def test_delete_removes_a_student_folder_only_when_marked_as_that_vms(outside: Outside, open_lab,
                                                                            disk_dir: Path) -> None:
    root, sockets = disk_dir / "students", disk_dir / "consoles"
    root.mkdir()
    sockets.mkdir()
    lab, watch = await open_lab(
        provision=ProvisionSettings(student_vms_dir=root), consoles=ConsoleSettings(socket_dir=sockets)
    )
    # alice: a VM as provisioning makes it (its disk in its folder, marked with its UUID), a socket
    mine_folder = root / "alice" / "net-a"
    mine = outside.define("alice", disks=[Disk(mine_folder / "disk.qcow2")], meta=LabMeta(owner="alice"))
    make_vm_folder(mine_folder, mine.UUIDString())
    _image(mine_folder / "disk.qcow2")
    (mine_folder / "console.log").write_text("boot\n")
    mine_socket = leave_socket(sockets / f"{mine.UUIDString()}.vnc")
    # bob: his VM's folder by name, not marked: his own files, never ours
    bob = outside.define("bob", meta=LabMeta(owner="bob"))
    bob_folder = root / "bob" / bob.name()
    bob_folder.mkdir(parents=True)
    (bob_folder / "thesis.txt").write_text("years of work")
    not_a_socket = sockets / f"{bob.UUIDString()}.vnc"
    not_a_socket.write_text("a file, not a socket")
    # carol: the folder by name is marked as another domain's
    carol = outside.define("carol", meta=LabMeta(owner="carol"))
    make_vm_folder(root / "carol" / carol.name(), str(uuidlib.uuid4()))
    # dave: marked as his, but another domain uses a file in it
    dave_folder = root / "dave" / "net-d"
    dave = outside.define("dave", disks=[Disk(dave_folder / "disk.qcow2")], meta=LabMeta(owner="dave"))
    make_vm_folder(dave_folder, dave.UUIDString())
    _image(dave_folder / "disk.qcow2")
    extra = _image(dave_folder / "extra.qcow2")
    other = outside.define("other", disks=[Disk(extra)]).UUIDString()
    targets = [await watch.vm_in(d.UUIDString(), VMState.SHUTOFF) for d in (mine, bob, carol, dave)]

    results = await lab.act("delete", targets)

    assert [(r.ok, r.message) for r in results] == [
        (True, f"deleted, 1 disk removed (removed {mine_folder})"),
        (True, f"deleted, 0 disks removed (kept {bob_folder}: it is not marked as this VM's folder)"),
        (True, f"deleted, 0 disks removed (kept {root / 'carol' / carol.name()}: it is not marked as "
               "this VM's folder)"),
        (True, f"deleted, 1 disk removed (kept {dave_folder}: it holds files that are kept or that "
               "another VM may use)")]
    assert not mine_folder.exists()
    assert not (root / "alice").exists(), "an owner folder left empty goes too"
    assert not mine_socket.exists(), "the VM's VNC socket goes with it"
    assert (bob_folder / "thesis.txt").read_text() == "years of work"
    assert not_a_socket.read_text() == "a file, not a socket"
    assert (root / "carol" / carol.name()).is_dir()
    assert not (dave_folder / "disk.qcow2").exists()
    assert extra.exists()
    assert outside.exists(other)


async def test_delete_never_removes_a_file_templates_toml_declares(outside: Outside, open_lab,
                                                                  disk_dir: Path, tmp_path: Path) -> None:
    images = disk_dir / "images"
    images.mkdir(mode=0o755)
    golden = _image(images / "golden.qcow2")
    kernel = _image(images / "vmlinuz", fmt="raw")
    alias = disk_dir / "alias.qcow2"
    alias.symlink_to(golden)
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text(f'[templates.t]\nimage = "{images}/../images/golden.qcow2"\n'
                                           f'kernel = "{kernel}"\ninitrd = "{images}/initrd.img"\n')
    lab, watch = await open_lab(config_dir=config, template_dir=disk_dir / "templates")
    direct = outside.define("direct", disks=[Disk(golden)]).UUIDString()
    aliased = outside.define("aliased", disks=[Disk(alias)]).UUIDString()
    booted = outside.define("kernel", disks=[Disk(kernel, "raw")]).UUIDString()
    targets = [await watch.vm_in(u, VMState.SHUTOFF) for u in (direct, aliased, booted)]

    results = await lab.act("delete", targets)

    assert [(r.ok, r.message) for r in results] == [(True, "deleted, 0 disks removed")] * 3
    assert golden.exists(), "a template image outside the template folder is kept"
    assert alias.is_symlink(), "another path to it too"
    assert kernel.exists(), "a template's kernel is kept"


async def test_a_broken_templates_toml_refuses_delete_before_anything_changes(
        outside: Outside, open_lab, disk_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text('[templates.t]\nimage = 3\n')
    own = _image(disk_dir / "own.qcow2")
    lab, watch = await open_lab(config_dir=config)
    with_disk = outside.define("disk", disks=[Disk(own)], start=True).UUIDString()
    diskless = outside.define("nodisk").UUIDString()
    targets = [await watch.vm_in(with_disk, VMState.RUNNING), await watch.vm_in(diskless, VMState.SHUTOFF)]

    refused, deleted = await lab.act("delete", targets)

    assert not refused.ok
    assert refused.message.startswith("not deleted: templates.toml is broken (")
    assert "image must be a path" in refused.message
    assert outside.state(with_disk) == VMState.RUNNING, "not even stopped"
    assert own.exists()
    assert (deleted.ok, deleted.message) == (True, "deleted, 0 disks removed")
    assert not outside.exists(diskless)


async def test_a_bulk_action_goes_on_when_one_vm_fails_unexpectedly(
        outside: Outside, open_lab, disk_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reset whose template image has gone raises FileNotFoundError, which no handler foresaw:
    it is that VM's failure, with its reason and its traceback in the log; the other VM is reset."""
    lost_base = _image(disk_dir / "lost-base.qcow2")
    lost_overlay = _image(disk_dir / "lost.qcow2", backing=lost_base)
    lost = outside.define("lost", disks=[Disk(lost_overlay)]).UUIDString()
    base = _image(disk_dir / "base.qcow2")
    fine = outside.define("fine", disks=[Disk(_image(disk_dir / "fine.qcow2", backing=base))]).UUIDString()
    lab, watch = await open_lab()
    targets = [await watch.vm_in(u, VMState.SHUTOFF) for u in (lost, fine)]
    lost_base.unlink()

    with caplog.at_level(logging.ERROR, logger="core.lifecycle.actions"):
        failed, reset = await lab.act("reset", targets)

    assert not failed.ok
    assert failed.message.startswith("unexpected error: FileNotFoundError: ")
    assert str(lost_base) in failed.message
    assert (reset.ok, reset.message) == (True, "reset to its template")
    (record,) = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[0] is FileNotFoundError
