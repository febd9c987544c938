"""The Windows answer file (passwords in clear) leaves the VM's CD drive at its first halt.

Windows cannot boot here; the VM is a Windows-family domain that boots the tiny template's
kernel instead, which is all the CD's life cycle needs: defined with the answer file, started,
stopped -- and the running core ejects it, in the definition, on the STOPPED event, or when it
next connects if none was running then.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt
import pytest
from support.livelab import OpenLab, Outside, qemu_img

from core.metadata import NAMESPACE, PREFIX, LabMeta
from core.model import VMState
from core.provision.domainbuild import VMFiles, provisioned_domain
from core.provision.guests.windows import WindowsSeed, write_windows_seed_iso
from core.provision.templates import Template
from core.storage import images

pytestmark = pytest.mark.integration


def cd_sources(dom: libvirt.virDomain) -> list[str | None]:
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return [None if (s := d.find("source")) is None else s.get("file")
            for d in root.findall("devices/disk[@device='cdrom']")]


async def wait_for(check: Callable[[], bool], within: float = 15.0) -> bool:
    for _ in range(int(within * 10)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()


async def test_answer_file_cd_is_ejected_at_first_halt(open_lab: OpenLab, outside: Outside,
                                                       tiny_template: Path) -> None:
    lab, watch = await open_lab()
    folder = outside.shared_dir()
    sockets = outside.consoles_dir(folder)
    iso = folder / "autounattend.iso"
    write_windows_seed_iso(iso, WindowsSeed(computer_name="W-ALICE", username="alice", full_name="Alice",
                                            password="Secret123", admin_password="Adm1nistrat0r"))
    template = Template(name="win", os="windows", kernel=tiny_template / "vmlinuz",
                        initrd=tiny_template / "initrd.img", cmdline="console=ttyS0", memory_mib=96)
    uuid = str(uuidlib.uuid4())
    files = VMFiles(disk=None, seed=iso, serial_log=folder / "console.log", vnc_socket=sockets / "w.vnc")
    dom = outside.conn.defineXML(provisioned_domain(
        outside.name("win"), uuid, template, files, domain_type="qemu",
        meta=LabMeta(owner="alice", template="win", created="2026-11-24T06:00:00Z")))
    outside.uuids.append(uuid)
    assert cd_sources(dom) == [str(iso)]

    dom.create()
    await watch.vm_in(uuid, VMState.RUNNING)
    dom.destroy()
    await watch.vm_in(uuid, VMState.SHUTOFF)
    # the eject follows the STOPPED event by one worker call
    assert await wait_for(lambda: cd_sources(dom) == [None], 10.0)
    assert iso.is_file()  # kept (mode 0600) for a reset, out of the VM's reach


async def test_a_halt_no_vm_manager_saw_is_caught_when_one_connects(
        open_lab: OpenLab, outside: Outside, tiny_template: Path) -> None:
    """Started and halted while no VM Manager ran: the next one to connect ejects the CD -- from a
    VM that has run since the CD went in, and from no other.

    libvirtd is shared: a VM Manager connected to it sees the STOPPED events, and one that connects
    meanwhile acts as this test's Lab does. So the VMs carry provisioning's mark (``created``) only
    from right before this test's Lab connects, their CDs still in.
    """
    folder = outside.shared_dir()
    sockets = outside.consoles_dir(folder)
    base = folder / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "64M")
    base.chmod(0o644)
    kernel = {"kernel": tiny_template / "vmlinuz", "initrd": tiny_template / "initrd.img",
              "cmdline": "console=ttyS0", "memory_mib": 96}

    def windows_vm(label: str, *, overlay: bool) -> libvirt.virDomain:
        vm_dir = folder / label
        vm_dir.mkdir(mode=0o755)
        iso = vm_dir / "autounattend.iso"
        write_windows_seed_iso(iso, WindowsSeed(computer_name="W-ALICE", username="alice", full_name="Alice",
                                                password="Secret123", admin_password="Adm1nistrat0r"))
        disk = vm_dir / "disk.qcow2"
        if overlay:
            images.create_overlay(disk, base, 64 << 20)
        template = Template(name="win", os="windows", image=base if overlay else None, **kernel)
        uuid = str(uuidlib.uuid4())
        files = VMFiles(disk=disk if overlay else None, seed=iso, serial_log=vm_dir / "console.log",
                        vnc_socket=sockets / f"{label}.vnc")
        dom = outside.conn.defineXML(provisioned_domain(
            outside.name(label), uuid, template, files, domain_type="qemu",
            meta=LabMeta(owner="alice", template="win")))
        outside.uuids.append(uuid)
        assert cd_sources(dom) == [str(iso)]
        return dom

    def provisioned(doms: list[libvirt.virDomain], created: str) -> None:
        meta = LabMeta(owner="alice", template="win", created=created)
        for dom in doms:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, meta.to_xml(), PREFIX, NAMESPACE,
                            libvirt.VIR_DOMAIN_AFFECT_CONFIG)

    ran = windows_vm("ran", overlay=False)  # libvirt's own record: shut off, reason "destroyed"
    never = windows_vm("never", overlay=False)  # shut off, reason "unknown": never started
    fresh = windows_vm("fresh", overlay=True)  # ran, but its overlay is as made (as after a reset)
    for dom in (ran, fresh):
        dom.create()
        dom.destroy()
    assert ran.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert never.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN]
    assert [cd_sources(dom) != [None] for dom in (ran, never, fresh)] == [True] * 3

    provisioned([ran, never, fresh], "2026-11-24T06:00:00Z")
    assert cd_sources(ran) != [None]
    lab, _watch = await open_lab()
    assert await wait_for(lambda: cd_sources(ran) == [None], within=5)  # a worker job, at connect
    await lab.close()  # waits for the worker job that looked at all three
    assert cd_sources(never) != [None]
    assert cd_sources(fresh) != [None]  # its overlay says the answer file was never read

    # what Windows Setup does first: partition the disk. The overlay has data of its own now.
    provisioned([fresh], "")
    overlay = ET.fromstring(fresh.XMLDesc(0)).find("devices/disk[@device='disk']/source")
    assert overlay is not None
    await asyncio.to_thread(subprocess.run, ["qemu-io", "-f", "qcow2", "-c", "write -P 0x55 0 64k",
                                             overlay.get("file", "")], check=True, capture_output=True)
    provisioned([fresh], "2026-11-24T06:00:00Z")
    assert cd_sources(fresh) != [None]
    lab, _watch = await open_lab()
    assert await wait_for(lambda: cd_sources(fresh) == [None], within=5)
    await lab.close()
    assert cd_sources(never) != [None]
