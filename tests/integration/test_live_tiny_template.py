"""The tiny template boots on real QEMU and reads its NoCloud seed.

The ``tiny_template`` fixture (conftest) builds the template once per session; each test
boots it by direct kernel boot (``core.provision.domainbuild.kernel_domain``) and reads what the guest
prints on its serial port, which libvirt writes to a file. A template that cannot be built fails
the tests, never skips them.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from support.livelab import Outside, domain_type

from core.metadata import LabMeta
from core.provision.domainbuild import kernel_domain
from core.provision.guests.linux import LinuxSeed, SeedUser, write_seed_iso

pytestmark = pytest.mark.integration

BOOT_WITHIN = 60.0


def genisoimage_seed(directory: Path, hostname: str, user: str) -> Path:
    """A NoCloud seed ISO (label ``cidata``) made by hand with genisoimage."""
    src = directory / "seed"
    src.mkdir()
    (src / "meta-data").write_text(f"instance-id: iid-{hostname}\nlocal-hostname: {hostname}\n")
    (src / "user-data").write_text(
        "#cloud-config\n"
        "users:\n"
        "  - default\n"
        f"  - name: {user}\n"
        "    shell: /bin/bash\n"
        "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
    )
    iso = directory / "seed.iso"
    subprocess.run(["genisoimage", "-quiet", "-V", "cidata", "-J", "-r", "-o", iso,
                    src / "meta-data", src / "user-data"], check=True, capture_output=True, timeout=60)
    iso.chmod(0o644)
    return iso


def core_seed(directory: Path, hostname: str, user: str) -> Path:
    """The seed provisioning writes (``core.provision.guests.linux``: PyYAML cloud-config, pycdlib ISO)."""
    iso = directory / "seed.iso"
    write_seed_iso(iso, LinuxSeed(hostname, f"iid-{hostname}", SeedUser(user, "Alice Martin")))
    return iso


def boot(outside: Outside, template: Path, label: str, seed: Path | None) -> Path:
    """Define and start a tiny-template domain; return its serial log file."""
    directory = outside.shared_dir()
    log = directory / "serial.log"
    xml = kernel_domain(outside.name(label), template / "vmlinuz", template / "initrd.img",
                        "console=tty0 console=ttyS0", seed, log, domain_type=domain_type(),
                        meta=LabMeta(owner="alice", template="tiny"))
    dom = outside.conn.defineXML(xml)
    outside.uuids.append(dom.UUIDString())
    dom.create()
    return log


def wait_for(log: Path, *lines: str, within: float = BOOT_WITHIN) -> float:
    """Seconds until every line shows in the serial log; fails with the log's tail after ``within``."""
    start = time.monotonic()
    text = ""
    while time.monotonic() - start < within:
        text = log.read_text(errors="replace") if log.exists() else ""
        if all(line in text.splitlines() for line in lines):
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"no {lines} on the serial console after {within:g} s; it shows:\n{text[-3000:]}")


@pytest.mark.parametrize("make_seed", [genisoimage_seed, core_seed], ids=["genisoimage", "core-seed"])
def test_tiny_template_reads_its_seed(outside: Outside, tiny_template: Path, make_seed) -> None:
    seed = make_seed(outside.shared_dir(), "tiny-alice", "alice")
    log = boot(outside, tiny_template, "tiny-seed", seed)
    wait_for(log, "vmm-tiny: hostname=tiny-alice", "vmm-tiny: user=alice")
    assert "vmm-tiny: no seed" not in log.read_text(errors="replace")


def test_tiny_template_without_seed(outside: Outside, tiny_template: Path) -> None:
    log = boot(outside, tiny_template, "tiny-noseed", None)
    wait_for(log, "vmm-tiny: no seed")
    assert "vmm-tiny: hostname=" not in log.read_text(errors="replace")
