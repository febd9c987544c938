"""Delete removes the disks a VM owns, and nothing else: no template, no shared or backing file."""

from __future__ import annotations

from pathlib import Path

import pytest
from livelab import Disk, Outside, qemu_img

from core.model import VMState

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
