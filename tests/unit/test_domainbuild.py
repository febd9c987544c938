"""Direct-kernel-boot domain XML: built by ElementTree, accepted by libvirt's test driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import libvirt

from core.metadata import NAMESPACE, LabMeta
from core.provision.domainbuild import (
    BALLOON_STATS_PERIOD,
    GUEST_AGENT_CHANNEL,
    VMFiles,
    kernel_domain,
    provisioned_domain,
)
from core.provision.templates import Template


def test_kernel_domain_has_kernel_seed_serial_and_metadata() -> None:
    xml = kernel_domain("tiny <&> 'one'", "/t/vmlinuz", "/t/initrd.img", "console=tty0 console=ttyS0",
                        "/s/seed.iso", "/s/serial.log", meta=LabMeta(owner="alice", template="tiny"))
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "tiny <&> 'one'"
    assert root.find("memory").text == "128"
    assert root.find("memory").get("unit") == "MiB"
    os_ = root.find("os")
    assert os_.find("type").get("machine") == "pc"
    assert (os_.findtext("kernel"), os_.findtext("initrd"), os_.findtext("cmdline")) == (
        "/t/vmlinuz", "/t/initrd.img", "console=tty0 console=ttyS0")
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == "/s/seed.iso"
    assert cdrom.find("target").attrib == {"dev": "hdc", "bus": "ide"}
    assert cdrom.find("readonly") is not None
    assert root.find("devices/serial[@type='file']/source").get("path") == "/s/serial.log"
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert root.findtext(f"metadata/{{{NAMESPACE}}}vm/{{{NAMESPACE}}}owner") == "alice"


def test_kernel_domain_without_seed_or_log() -> None:
    root = ET.fromstring(kernel_domain("t", "/k", "/i", domain_type="kvm", memory_mib=256))
    assert root.get("type") == "kvm"
    assert root.find("devices/disk") is None
    assert root.find("devices/serial").get("type") == "pty"


def test_test_driver_accepts_it() -> None:
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(kernel_domain("tiny-kb", "/k", "/i", seed_iso="/s.iso", serial_log="/l"))
        desc = ET.fromstring(dom.XMLDesc())
        assert desc.findtext("os/kernel") == "/k"
        dom.undefine()
    finally:
        conn.close()


def _template(**changes: object) -> Template:
    return Template(name="t", image=Path("/t/base.qcow2"), kernel=Path("/t/vmlinuz"),
                    initrd=Path("/t/initrd.img"), cmdline="root=/dev/vda", **changes)  # type: ignore[arg-type]


FILES = VMFiles(disk="/s/alice/vm/disk.qcow2", seed="/s/alice/vm/seed.iso",
                serial_log="/s/alice/vm/console.log", vnc_socket="/run/vmm/consoles/u.vnc")


def test_provisioned_domain_listens_on_its_socket_only_shared() -> None:
    xml = provisioned_domain("net1-alice", "5f0c6a0e-7d43-4c8e-9a53-3c1f1f0a9d11", _template(), FILES,
                             domain_type="qemu", meta=LabMeta(owner="alice", lab_class="net1"))
    root = ET.fromstring(xml)
    assert root.findtext("uuid") == "5f0c6a0e-7d43-4c8e-9a53-3c1f1f0a9d11"
    graphics = root.findall("devices/graphics")
    assert len(graphics) == 1
    assert graphics[0].attrib == {"type": "vnc", "sharePolicy": "force-shared"}
    assert [listen.attrib for listen in graphics[0]] == [{"type": "socket",
                                                          "socket": "/run/vmm/consoles/u.vnc"}]
    disk, cdrom = root.findall("devices/disk")
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert disk.find("driver").get("type") == "qcow2"
    assert cdrom.find("target").attrib == {"dev": "hda", "bus": "ide"}
    assert cdrom.find("readonly") is not None
    assert root.find("devices/channel/target").get("name") == GUEST_AGENT_CHANNEL
    assert root.find("devices/interface") is None
    assert root.findtext(f"metadata/{{{NAMESPACE}}}vm/{{{NAMESPACE}}}class") == "net1"


def test_provisioned_domain_asks_the_guest_for_its_memory_figures() -> None:
    root = ET.fromstring(provisioned_domain("net1-alice", "5f0c6a0e-7d43-4c8e-9a53-3c1f1f0a9d11",
                                            _template(), FILES, domain_type="qemu", meta=LabMeta()))
    [balloon] = root.findall("devices/memballoon")
    assert balloon.get("model") == "virtio"
    assert [stats.attrib for stats in balloon] == [{"period": str(BALLOON_STATS_PERIOD)}]


def test_provisioned_windows_domain_bridge_and_uefi() -> None:
    template = replace(_template(os="windows", disk_bus="sata", cd_bus="sata", network="bridge:br0",
                                 firmware="uefi"), kernel=None, initrd=None)
    root = ET.fromstring(provisioned_domain("w", "5f0c6a0e-7d43-4c8e-9a53-3c1f1f0a9d12", template, FILES,
                                            domain_type="kvm", meta=LabMeta()))
    assert root.find("os").get("firmware") == "efi"
    assert root.find("os/kernel") is None
    assert root.find("os/boot").get("dev") == "hd"
    assert root.find("clock").get("offset") == "localtime"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert [d.find("target").get("dev") for d in root.findall("devices/disk")] == ["sda", "sdb"]
    assert root.find("devices/interface").get("type") == "bridge"
    assert root.find("devices/interface/source").get("bridge") == "br0"
    assert root.find("devices/channel") is None  # no guest agent channel for Windows


def test_test_driver_accepts_a_provisioned_domain() -> None:
    conn = libvirt.open("test:///default")
    try:
        xml = provisioned_domain("prov-1", "5f0c6a0e-7d43-4c8e-9a53-3c1f1f0a9d13",
                                 _template(network="network:default"), FILES, domain_type="qemu",
                                 meta=LabMeta(owner="alice"))
        dom = conn.defineXML(xml)
        assert dom.UUIDString() == "5f0c6a0e-7d43-4c8e-9a53-3c1f1f0a9d13"
        dom.undefine()
    finally:
        conn.close()
