"""Domain type ``auto``: a probe boot of the tiny template under KVM decides, once per host."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import libvirt
import pytest
from support.livelab import Outside

from core.provision import kvmprobe
from core.settings import Settings

pytestmark = pytest.mark.integration


def test_the_probe_decides_and_caches(outside: Outside, tiny_template: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config",
                        template_dir=tiny_template.parent)
    assert kvmprobe.decide(settings, outside.conn) in ("kvm", "qemu")  # boots the probe VM once
    # ...and it is gone (only probe domains are looked at: other runs may share this libvirtd)
    names = [d.name() for d in outside.conn.listAllDomains(0)]
    assert [n for n in names if n.startswith(kvmprobe.PROBE_PREFIX)] == []
    cache = json.loads(kvmprobe.cache_file(settings).read_text())
    assert list(cache) == [kvmprobe.host_key()]
    # the cached answer is the one used from then on: no second probe
    other = "kvm" if cache[kvmprobe.host_key()] == "qemu" else "qemu"
    kvmprobe.cache_file(settings).write_text(json.dumps({kvmprobe.host_key(): other}))
    assert kvmprobe.decide(settings, outside.conn) == other


def test_without_a_tiny_template_tcg_is_used_and_not_cached(outside: Outside, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config",
                        template_dir=tmp_path / "none")
    answer, why = kvmprobe.probe(settings, outside.conn)
    assert answer == "qemu"
    if why == "no tiny template to probe with":  # not an answer about this host: asked again next time
        assert kvmprobe.decide(settings, outside.conn) == "qemu"
        assert not kvmprobe.cache_file(settings).exists()


def test_a_probe_boot_that_never_comes_up_falls_back_to_tcg(outside: Outside, tiny_template: Path,
                                                            tmp_path: Path) -> None:
    """The fallback, proven with a real boot under KVM that hangs -- on any host.

    The tiny template's kernel hangs under KVM on the development machines (nested KVM), but boots
    where KVM works, so the test above accepts either answer. Here the kernel gets an initramfs that
    is not one: it panics and stays so, under KVM as under TCG, and the probe must give up at its
    deadline, answer ``qemu`` and leave no domain behind.
    """
    templates = outside.shared_dir()
    hanging = templates / "tiny"
    hanging.mkdir(mode=0o755)
    shutil.copyfile(tiny_template / "vmlinuz", hanging / "vmlinuz")
    (hanging / "initrd.img").write_bytes(b"not an initramfs\n" * 64)
    for path in hanging.iterdir():
        path.chmod(0o644)
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", template_dir=templates)
    try:
        offers_kvm = "<domain>kvm</domain>" in outside.conn.getDomainCapabilities(None, "x86_64", None, "kvm")
    except libvirt.libvirtError:
        offers_kvm = False
    started = time.monotonic()
    answer, why = kvmprobe.probe(settings, outside.conn, deadline=4)
    assert answer == "qemu"
    if os.path.exists("/dev/kvm") and offers_kvm:  # the probe boot ran, under KVM, and hung
        assert why == "a kernel did not boot under KVM within 4 s (nested KVM?)"
        assert time.monotonic() - started >= 4
    else:
        assert why.startswith(("no /dev/kvm", "libvirt offers no KVM"))
    names = [d.name() for d in outside.conn.listAllDomains(0)]
    assert [n for n in names if n.startswith(kvmprobe.PROBE_PREFIX)] == []
