"""The pieces provisioning is made of: names, capacity, overlays, snapshots' refusals, fault points."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

from core import failpoints
from core.errors import ActionFailed, InvalidInput
from core.lifecycle import snapshots
from core.provision.planning import Capacity, vm_name
from core.storage import images


def test_vm_names_follow_the_scheme_and_are_host_names() -> None:
    assert vm_name("{class}-{username}", "net1", "alice", "tiny") == "net1-alice"
    assert vm_name("{template}-{username}", "net1", "jean.dupont", "deb") == "deb-jean-dupont"
    with pytest.raises(InvalidInput, match="VM name"):
        vm_name("{class}-{username}", "net_1", "a" * 63, "tiny")


def test_capacity_names_what_is_short() -> None:
    assert Capacity(1024, 2048, 10.0, 50.0).problems() == []
    short = Capacity(4096, 2048, 100.0, 50.0).problems()
    assert short == ["memory: the VMs need 4096 MiB, the host has 2048 MiB free",
                     "disk: the overlays may grow to 100.0 GiB, 50.0 GiB is free"]
    assert Capacity(4096, None, 1.0, None).problems() == []  # unknown is not short


def test_an_overlay_is_small_backed_and_renewed_in_place(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"], check=True)
    overlay = tmp_path / "disk.qcow2"
    images.create_overlay(overlay, base, 1 << 30)
    assert images.backing_chain(str(overlay)) == [str(base)]
    assert images.virtual_size(overlay) == 1 << 30
    assert stat.S_IMODE(overlay.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        images.create_overlay(overlay, base, 1 << 30)  # never over an existing file
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", overlay], check=True,
                   capture_output=True)
    grown = overlay.stat().st_size
    images.renew_overlay(overlay)
    assert overlay.stat().st_size < grown
    assert images.backing_chain(str(overlay)) == [str(base)]
    assert images.virtual_size(overlay) == 1 << 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.qcow2", "disk.qcow2"]


def test_a_failed_overlay_leaves_no_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(b"QFI\xfb" + b"\0" * 100)  # a qcow2 magic and nothing sensible after it
    with pytest.raises(OSError, match="qemu-img"):
        images.create_overlay(tmp_path / "disk.qcow2", broken, 1 << 20)
    assert not (tmp_path / "disk.qcow2").exists()


def test_snapshot_names_are_checked() -> None:
    assert snapshots.check_snapshot_name("before-lab.2") == "before-lab.2"
    for bad in ("", "../x", "a b", "<x>", "-x"):
        with pytest.raises(InvalidInput):
            snapshots.check_snapshot_name(bad)


def test_uefi_vms_are_refused_snapshots_with_the_reason() -> None:
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(
            "<domain type='test'><name>uefi-snap</name><memory>65536</memory><os><type>hvm</type>"
            "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
            "<nvram>/var/tmp/uefi-snap_VARS.fd</nvram></os></domain>")
        try:
            with pytest.raises(ActionFailed, match="UEFI"):
                snapshots.take(dom, "s1")
            assert dom.snapshotNum(0) == 0
        finally:
            dom.undefine()
    finally:
        conn.close()


def test_failpoints_fail_only_where_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    failpoints.hit("define", "vm-a")  # unset: nothing
    monkeypatch.setenv(failpoints.VARIABLE, "fail:define:vm-b")
    failpoints.hit("define", "vm-a")
    failpoints.hit("seed", "vm-b")
    with pytest.raises(ActionFailed, match="injected failure at define"):
        failpoints.hit("define", "vm-b")


def test_a_kill_failpoint_kills_the_process() -> None:
    code = "from core import failpoints; failpoints.hit('seed', 'x'); print('survived')"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, failpoints.VARIABLE: "kill:seed"},
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == -9
    assert "survived" not in run.stdout
