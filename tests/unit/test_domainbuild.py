"""Direct-kernel-boot domain XML: built by ElementTree, accepted by libvirt's test driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from core.domainbuild import kernel_domain
from core.metadata import NAMESPACE, LabMeta


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
