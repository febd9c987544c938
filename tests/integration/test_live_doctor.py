"""``doctor`` on a real libvirtd: only folders marked as made by vm-manager for a domain that is
gone are leftovers, and VNC sockets of domains that are gone; a domain it cannot read keeps every
file that might be its."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest
from support.livelab import Outside
from support.unixsock import leave_socket

from core.provision.doctor import Checkup
from core.settings import ConsoleSettings, ProvisionSettings
from core.storage.folders import make_vm_folder

pytestmark = pytest.mark.integration


def _seen(checkup: Checkup) -> dict[str, tuple[str, str, bool]]:
    return {f.where: (f.problem, f.fixed, f.advisory) for f in checkup.findings}


@pytest.fixture
def places(disk_dir: Path) -> tuple[Path, Path]:
    root, sockets = disk_dir / "students", disk_dir / "consoles"
    root.mkdir()
    sockets.mkdir()
    return root, sockets


async def test_doctor_removes_marked_leftovers_and_stale_sockets_only(outside: Outside, open_lab,
                                                                     places: tuple[Path, Path]) -> None:
    root, sockets = places
    live = outside.define("live").UUIDString()
    live_folder = root / "alice" / "net-live"
    make_vm_folder(live_folder, live)
    gone = str(uuidlib.uuid4())
    leftover = root / "bob" / "net-gone"
    make_vm_folder(leftover, gone)
    (leftover / "disk.qcow2").write_bytes(b"half-made")
    thesis = root / "alice" / "Documents" / "thesis.txt"
    thesis.parent.mkdir()
    thesis.write_text("years of work")
    # work folders a kill left: one marked (made, not yet renamed into place), one with a marker
    # cut short (killed while writing it); and one of a name like theirs, unmarked, with a file
    (root / "carol").mkdir(mode=0o711)
    marked_work, cut_work, foreign = (root / "carol" / name for name in (
        ".net-c.vmm-ab12cd34", ".net-d.vmm-ef56gh78", ".net-e.vmm-ij90kl12"))
    for work in (marked_work, cut_work, foreign):
        work.mkdir(mode=0o700)
    (marked_work / ".vm-manager-domain").write_text(f"{gone}\n")
    (cut_work / ".vm-manager-domain").write_text(gone[:9])
    (foreign / "notes.txt").write_text("mine")
    stale, kept = leave_socket(sockets / f"{gone}.vnc"), leave_socket(sockets / f"{live}.vnc")
    not_a_socket = sockets / f"{uuidlib.uuid4()}.vnc"
    not_a_socket.write_text("a file")
    lab, _ = await open_lab(
        provision=ProvisionSettings(student_vms_dir=root), consoles=ConsoleSettings(socket_dir=sockets)
    )

    looked = await lab.doctor()

    left_alone = ("no VM uses it, and it has no mark of vm-manager's: not ours, left alone", "", True)
    assert _seen(looked) == {
        str(leftover): ("its VM is gone", "", False),
        str(marked_work): ("its VM is gone", "", False),
        str(cut_work): ("a folder a killed run was making or removing, with nothing in it", "", False),
        str(stale): ("its VM is gone", "", False),
        str(thesis.parent): left_alone,
        str(foreign): left_alone,
    }
    assert {f.where for f in looked.unfixed} == {str(leftover), str(marked_work), str(cut_work), str(stale)}
    assert leftover.exists()
    assert stale.exists()

    fixed = await lab.doctor(fix=True)

    assert {where: done for where, (_, done, _) in _seen(fixed).items()} == {
        str(leftover): "removed", str(marked_work): "removed", str(cut_work): "removed",
        str(stale): "removed", str(thesis.parent): "", str(foreign): ""}
    assert fixed.unfixed == []
    assert not (root / "bob").exists()
    assert sorted(p.name for p in (root / "carol").iterdir()) == [foreign.name]
    assert (foreign / "notes.txt").read_text() == "mine"
    assert not stale.exists()
    assert thesis.read_text() == "years of work", "a folder without our mark is never removed"
    assert live_folder.is_dir()
    assert kept.is_socket()
    assert not_a_socket.read_text() == "a file"
    again = await lab.doctor(fix=True)
    assert sorted(f.where for f in again.findings) == sorted([str(thesis.parent), str(foreign)])


async def test_a_domain_doctor_cannot_read_keeps_every_file_that_might_be_its(
        outside: Outside, open_lab, places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt refusing one domain's definition (the failpoint stands in) must not make that VM's
    folder look unused: nothing is removed, and doctor says why."""
    root, sockets = places
    unreadable = outside.define("unreadable")
    gone = str(uuidlib.uuid4())
    leftover = root / "bob" / "net-gone"
    make_vm_folder(leftover, gone)
    stale = leave_socket(sockets / f"{gone}.vnc")
    lab, _ = await open_lab(
        provision=ProvisionSettings(student_vms_dir=root), consoles=ConsoleSettings(socket_dir=sockets)
    )
    monkeypatch.setenv("VMM_FAILPOINT", f"fail:doctor-read:{unreadable.name()}")

    fixed = await lab.doctor(fix=True)

    seen = _seen(fixed)
    problem, done, advisory = seen[unreadable.name()]
    assert problem.startswith("its definition cannot be read (injected failure")
    assert (done, advisory) == ("", False)
    kept = f"its VM is gone; kept while the definition of {unreadable.name()} cannot be read"
    assert seen[str(leftover)] == (kept, "", False)
    assert seen[str(stale)] == (kept, "", False)
    assert leftover.is_dir()
    assert stale.is_socket()
    assert {f.where for f in fixed.unfixed} == {unreadable.name(), str(leftover), str(stale)}
