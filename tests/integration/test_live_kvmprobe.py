"""Domain type ``auto``: a probe boot of the tiny template under KVM decides, once per host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from livelab import Outside

from core import kvmprobe
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
