"""VNC sockets on a real libvirtd + QEMU: their folder is QEMU's own group's (not ``kvm``, which
people join), QEMU makes its socket there, and a deleted VM's socket goes with it."""

from __future__ import annotations

import asyncio
import grp
import socket
import subprocess
import time
import uuid as uuidlib
from pathlib import Path

import pytest
from support.livelab import Outside, domain_type

from core.metadata import LabMeta
from core.model import VMState
from core.provision.domainbuild import VMFiles, provisioned_domain
from core.provision.templates import Template
from core.settings import ConsoleSettings, ProvisionSettings, Settings
from core.storage.folders import prepare

pytestmark = pytest.mark.integration


def _answers_vnc(path: Path, within: float = 15.0) -> bytes:
    """The first bytes QEMU's VNC server sends on ``path``, once it listens."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                return sock.recv(12)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def test_the_socket_folder_is_qemus_and_delete_takes_the_vms_socket(
        outside: Outside, open_lab, disk_dir: Path, tmp_path: Path) -> None:
    root, sockets = disk_dir / "students", disk_dir / "consoles"
    settings = Settings(
        data_dir=tmp_path / "data",
        provision=ProvisionSettings(student_vms_dir=root),
        consoles=ConsoleSettings(socket_dir=sockets),
    )
    prepare(settings)

    made = sockets.stat()
    assert made.st_gid == grp.getgrnam("libvirt-qemu").gr_gid
    assert made.st_mode & 0o777 == 0o770
    kvm = grp.getgrnam("kvm").gr_gid
    person = await asyncio.create_subprocess_exec(
        "setpriv", "--reuid=65534", f"--regid={kvm}", "--clear-groups", "ls", sockets,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, said = await asyncio.wait_for(person.communicate(), 30)
    assert person.returncode != 0, "a user whose group is kvm can look into the socket folder"
    assert b"Permission denied" in said

    # A VM as provisioning defines it (VNC on a Unix socket only), diskless: SeaBIOS waits.
    uuid = str(uuidlib.uuid4())
    vnc = sockets / f"{uuid}.vnc"
    files = VMFiles(disk=None, seed=None, serial_log=disk_dir / "console.log", vnc_socket=vnc)
    xml = provisioned_domain(outside.name("sock"), uuid, Template("t", memory_mib=64), files,
                             domain_type=domain_type(), meta=LabMeta(owner="alice"))
    outside.uuids.append(uuid)
    outside.conn.defineXML(xml).create()
    lab, watch = await open_lab(
        provision=ProvisionSettings(student_vms_dir=root), consoles=ConsoleSettings(socket_dir=sockets)
    )
    target = await watch.vm_in(uuid, VMState.RUNNING)
    greeting = await asyncio.to_thread(_answers_vnc, vnc)
    assert greeting == b"RFB 003.008\n", "QEMU made its socket in the folder and serves on it"

    [result] = await lab.act("delete", [target])

    assert (result.ok, result.message) == (True, "deleted, 0 disks removed")
    assert not outside.exists(uuid)
    assert not vnc.exists(), "QEMU leaves its socket behind: delete removes it"
