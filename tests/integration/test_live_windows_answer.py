"""The Windows answer file (passwords in clear) leaves the VM's CD drive at its first halt.

Windows cannot boot here; the VM is a Windows-family domain that boots the tiny template's
kernel instead, which is all the CD's life cycle needs: defined with the answer file, started,
stopped -- and the running core ejects it, in the definition, on the STOPPED event.
"""

from __future__ import annotations

import asyncio
import os
import uuid as uuidlib
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from livelab import OpenLab, Outside

from core.access import group_id
from core.domainbuild import VMFiles, provisioned_domain
from core.metadata import LabMeta
from core.model import VMState
from core.templates import Template
from core.unattend import WindowsSeed, write_windows_seed_iso

pytestmark = pytest.mark.integration


def cd_sources(dom: libvirt.virDomain) -> list[str | None]:
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return [None if (s := d.find("source")) is None else s.get("file")
            for d in root.findall("devices/disk[@device='cdrom']")]


async def test_answer_file_cd_is_ejected_at_first_halt(open_lab: OpenLab, outside: Outside,
                                                       tiny_template: Path) -> None:
    lab, watch = await open_lab()
    folder = outside.shared_dir()
    sockets = folder / "consoles"
    sockets.mkdir()
    sockets.chmod(0o770)
    os.chown(sockets, os.getuid(), group_id() or 0)
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
    for _ in range(100):  # the eject follows the STOPPED event by one worker call
        if cd_sources(dom) == [None]:
            break
        await asyncio.sleep(0.1)
    assert cd_sources(dom) == [None]
    assert iso.is_file()  # kept (mode 0600) for a reset, out of the VM's reach
