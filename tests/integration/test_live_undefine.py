"""Every path that undefines a domain takes what libvirt keeps beside its definition with it.

A domain with snapshot metadata or a managed save image cannot be undefined plainly ("cannot
delete inactive domain with 1 snapshots"). Delete, provisioning's undo and doctor all undefine
through ``core.virt.domains.undefine`` (managed save, snapshot and checkpoint metadata, NVRAM):
each path is run here on a real domain that has both a snapshot's metadata and a managed save.
"""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest
from support.livelab import Disk, OpenLab, Outside, domain_xml, qemu_img

from core.lifecycle import Action
from core.metadata import LabMeta
from core.model import Student
from core.provision.domainbuild import VMFiles
from core.provision.execution import _undo
from core.provision.planning import VMPlan
from core.settings import ConsoleSettings, ProvisionSettings

pytestmark = pytest.mark.integration
SAVE_DIR = Path("/var/lib/libvirt/qemu/save")


def burdened(outside: Outside, root: Path, label: str) -> libvirt.virDomain:
    """A domain of ours (provisioning's metadata, its disk in a student folder) with a snapshot's
    metadata and a managed save image: all that a plain undefine refuses."""
    name = outside.name(label)
    folder = root / "alice" / name
    folder.mkdir(parents=True)
    qemu_img("create", "-q", "-f", "qcow2", folder / "disk.qcow2", "16M")
    meta = LabMeta(owner="alice", lab_class="undef", template="tiny", created="2026-12-07T09:00:00Z")
    dom = outside.conn.defineXML(domain_xml(name, disks=[Disk(str(folder / "disk.qcow2"))], meta=meta))
    outside.uuids.append(dom.UUIDString())
    snapshot = (f"<domainsnapshot><name>before</name><state>shutoff</state><creationTime>{int(time.time())}"
                f"</creationTime>{dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)}</domainsnapshot>")
    dom.snapshotCreateXML(snapshot, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    dom.create()
    dom.managedSave(0)
    assert dom.snapshotNum(0) == 1
    assert dom.hasManagedSaveImage(0)
    with pytest.raises(libvirt.libvirtError, match="snapshot"):  # what the flags are for
        dom.undefine()
    return dom


def gone(outside: Outside, dom_uuid: str, name: str) -> bool:
    return not outside.exists(dom_uuid) and not (SAVE_DIR / f"{name}.save").exists()


def lab_settings(outside: Outside, root: Path) -> dict[str, object]:
    return {"provision": ProvisionSettings(student_vms_dir=root),
            "consoles": ConsoleSettings(socket_dir=outside.consoles_dir())}


async def test_delete_undefines_a_domain_with_snapshots_and_a_managed_save(
        open_lab: OpenLab, outside: Outside) -> None:
    root = outside.shared_dir() / "student_vms"
    dom = burdened(outside, root, "del")
    uuid, name = dom.UUIDString(), dom.name()
    lab, watch = await open_lab(**lab_settings(outside, root))
    vm = await watch.until(lambda: watch.vm(uuid), what="the VM in the inventory")
    (result,) = await lab.act(Action.DELETE, [vm])
    assert result.ok, result.message
    assert gone(outside, uuid, name)


async def test_provisionings_undo_undefines_a_domain_with_snapshots_and_a_managed_save(
        open_lab: OpenLab, outside: Outside) -> None:
    root = outside.shared_dir() / "student_vms"
    dom = burdened(outside, root, "undo")
    uuid, name = dom.UUIDString(), dom.name()
    lab, _ = await open_lab()
    (host,) = lab.hosts.values()
    folder = root / "alice" / name
    plan = VMPlan(name, uuid, Student("alice"), "pw", False, folder,
                  VMFiles(disk=folder / "disk.qcow2", seed=None, serial_log=folder / "console.log",
                          vnc_socket=root / f"{uuid}.vnc"))
    await host.call(_undo, host, plan, ["define"], "start")  # the undo of a start that failed
    assert gone(outside, uuid, name)


async def test_doctor_undefines_a_domain_with_snapshots_and_a_managed_save(
        open_lab: OpenLab, outside: Outside) -> None:
    root = outside.shared_dir() / "student_vms"
    dom = burdened(outside, root, "doc")
    uuid, name = dom.UUIDString(), dom.name()
    (root / "alice" / name / "disk.qcow2").unlink()  # a domain of ours whose disk is gone
    lab, _ = await open_lab(**lab_settings(outside, root))
    checkup = await lab.doctor(fix=True)
    fixed = [f for f in checkup.findings if f.what == "domain" and f.where == name]
    assert [f.fixed for f in fixed] == ["undefined"], checkup.findings
    assert gone(outside, uuid, name)
