"""The tiny template boots on real QEMU and reads its NoCloud seed.

``scripts/build_template_tiny.sh`` builds the template (a Debian cloud kernel and a busybox
initramfs, from packages it downloads) once per session into a temp dir QEMU can read; each test
boots it by direct kernel boot (``core.domainbuild.kernel_domain``) and reads what the guest
prints on its serial port, which libvirt writes to a file. A template that cannot be built fails
the tests, never skips them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from livelab import RUN_PREFIX, Outside, domain_type, system_answers, unavailable

from core.domainbuild import kernel_domain
from core.metadata import LabMeta
from core.seed import LinuxSeed, SeedUser, write_seed_iso

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_template_tiny.sh"
BOOT_WITHIN = 60.0


@pytest.fixture(scope="session")
def tiny_template() -> Iterator[Path]:
    """The built template (``vmlinuz``, ``initrd.img``), in a temp dir libvirt-qemu can read."""
    if not system_answers():
        unavailable("qemu:///system is unreachable; run `make test`")
    root = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}template-", dir="/var/tmp"))
    root.chmod(0o755)
    out = root / "tiny"
    try:
        proc = subprocess.run([SCRIPT, out], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"{SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                        f"{proc.stderr[-3000:]}", pytrace=False)
        yield out
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
    """The seed provisioning writes (``core.seed``: PyYAML cloud-config, pycdlib ISO)."""
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
