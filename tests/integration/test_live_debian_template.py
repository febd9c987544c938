"""The proof that seeds work: a real Debian 12 VM, provisioned through the CLI, sets itself up.

``scripts/build_template_debian.sh`` builds the template (mmdebstrap, cloud-init, the guest
agent) once per session into a temp dir QEMU can read; a template that cannot be built fails the
test, never skips it. ``VMM_TEST_DEBIAN_TEMPLATE=/some/dir/debian`` builds into (or reuses, while
it is current) that folder instead, for working by hand (add ``VMM_DEBIAN_FORCE=1`` to rebuild it
after the script changed).

The test runs ``vm-manager provision --start`` as an operator would, then checks from outside,
through the guest agent (:mod:`core.testing.guest`), what cloud-init made of the seed: the student's
account with the roster's password (SHA-512 crypt), the host name, the French keyboard and
locale. Then ``vm-manager delete --class`` removes it all. Under TCG a first boot takes one to
two minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from support.cli import CHECKOUT
from support.livelab import RUN_PREFIX, URI, Outside, system_answers, unavailable

from core.storage import images
from core.testing import guest
from core.testing.domains import remove_domain
from core.virt import stats

pytestmark = pytest.mark.integration

SCRIPT = CHECKOUT / "scripts" / "build_template_debian.sh"
BUILD_WITHIN = 1200.0
GUEST_MEMORY_WITHIN = 60.0  # the balloon driver's first report: one period after it loaded
BOOT_WITHIN = 600.0  # start -> cloud-init done; about 50-120 s on a 2-core TCG host
PASSWORD = "Tr0ub4dor & 3 été"  # spaces, a shell metacharacter, non-ASCII: all data
TEMPLATES_TOML = """\
[templates.debian]
image = "debian/base.qcow2"
kernel = "debian/vmlinuz"
initrd = "debian/initrd.img"
cmdline = "root=/dev/vda rw console=ttyS0"
domain_type = "qemu"
vcpus = 2
memory_mib = 1024
disk_bus = "virtio"
"""


@pytest.fixture(scope="session")
def debian_template() -> Iterator[Path]:
    """The template root (``VMM_TEMPLATE_DIR``) holding ``debian/{base.qcow2,vmlinuz,initrd.img}``."""
    if not system_answers():
        unavailable("qemu:///system is unreachable; run `make test`")
    kept = os.environ.get("VMM_TEST_DEBIAN_TEMPLATE")
    if kept:
        out = Path(kept).absolute()
        root = out.parent
    else:
        root = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}template-", dir="/var/tmp"))
        root.chmod(0o755)
        out = root / "debian"
    try:
        proc = subprocess.run([SCRIPT, out], capture_output=True, text=True, timeout=BUILD_WITHIN)
        if proc.returncode != 0:
            pytest.fail(f"{SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                        f"{proc.stderr[-3000:]}", pytrace=False)
        print(proc.stderr.strip().splitlines()[-1])  # elapsed time and size
        yield root
    finally:
        if not kept:
            shutil.rmtree(root, ignore_errors=True)


def vm_manager(*args: str | os.PathLike[str], env: dict[str, str],
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed ``vm-manager`` command (the venv's), as an operator runs it."""
    exe = Path(sys.executable).with_name("vm-manager")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tui.cli"]
    return subprocess.run([*command, "-c", URI, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=CHECKOUT)


def run(dom: libvirt.virDomain, *argv: str, timeout: float = 60) -> str:
    """Run ``argv`` in the guest; its standard output, or a failure naming what it said."""
    result = guest.guest_exec(dom, list(argv), timeout=timeout)
    said = result.stderr or result.stdout
    assert result.exit_code == 0, f"{' '.join(argv)} exited {result.exit_code}: {said}"
    return result.stdout


def shell_value(text: str, key: str) -> str | None:
    """``KEY=value`` or ``KEY="value"`` of a /etc/default file."""
    match = re.search(rf"^{re.escape(key)}=\"?([^\"\n]*)\"?$", text, re.MULTILINE)
    return match.group(1) if match else None


def wait_for_cloud_init(dom: libvirt.virDomain, deadline: float) -> str:
    """What ``cloud-init status --wait`` says once cloud-init is done (the agent itself starts
    late: after cloud-init's network stage)."""
    guest.wait_for_agent(dom, max(1.0, deadline - time.monotonic()))
    waited = guest.guest_exec(dom, ["cloud-init", "status", "--wait"],
                              timeout=max(1.0, deadline - time.monotonic()))
    return waited.stdout.replace(".", "").strip()


def test_provisioned_debian_vm_applies_its_seed(outside: Outside, debian_template: Path,
                                                tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text(TEMPLATES_TOML)
    data = tmp_path / "data"
    data.mkdir()
    roster = data / "users.csv"
    roster.write_text(f"username,full_name,password,ssh_key\nalice,Alice Martin,{PASSWORD},\n")
    shared = outside.shared_dir()
    students = shared / "student_vms"
    env = {**os.environ, "VMM_CONFIG_DIR": str(config), "VMM_DATA_DIR": str(data),
           "VMM_STUDENT_VMS_DIR": str(students), "VMM_TEMPLATE_DIR": str(debian_template),
           "VMM_CONSOLE_SOCKET_DIR": str(shared / "consoles")}
    env.pop("VMM_FAILPOINT", None)
    lab_class = outside.name("deb")
    name = f"{lab_class}-alice"
    base = debian_template / "debian" / "base.qcow2"
    try:
        began = time.monotonic()
        made = vm_manager("provision", "--template", "debian", "--class", lab_class, "--users", roster,
                          "--start", env=env)
        assert made.returncode == 0, made.stderr
        dom = outside.conn.lookupByName(name)
        outside.uuids.append(dom.UUIDString())
        assert dom.isActive()
        disk = students / "alice" / name / "disk.qcow2"
        assert images.backing_chain(str(disk)) == [str(base)]  # booted an overlay, never the base

        status = wait_for_cloud_init(dom, began + BOOT_WITHIN)
        booted = time.monotonic() - began
        assert "status: done" in status, run(dom, "cloud-init", "status", "--long")
        result = json.loads(run(dom, "cat", "/run/cloud-init/result.json"))
        assert result["v1"]["errors"] == [], result
        print(f"provision --start -> cloud-init done: {booted:.1f} s")

        # its balloon driver says what it uses (the table's "used/allocated"), far under QEMU's RSS
        used = None
        waited = time.monotonic()
        while used is None and time.monotonic() - waited < GUEST_MEMORY_WITHIN:
            [(_, raw)] = outside.conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_BALLOON)
            used = stats.guest_memory_used_kib(raw)
            time.sleep(0.5)
        assert used is not None, f"no guest memory figures in {GUEST_MEMORY_WITHIN:g} s: {raw}"
        assert 0 < used < raw["balloon.current"] == 1024 * 1024
        assert used < raw["balloon.rss"]
        print(f"guest memory: {used // 1024} MiB used of 1024, QEMU RSS {raw['balloon.rss'] // 1024} MiB")

        # the account, with the roster's password as a SHA-512 crypt hash
        shadow = run(dom, "getent", "shadow", "alice").strip().split(":")
        assert shadow[0] == "alice"
        stored = shadow[1]
        assert stored.startswith("$6$"), f"not a SHA-512 crypt hash: {stored[:3]}..."
        salt = stored.split("$")[2]
        expected = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=PASSWORD + "\n",
                                  capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        assert stored == expected, "the hash in /etc/shadow does not verify against the roster's password"
        passwd = run(dom, "getent", "passwd", "alice").strip().split(":")
        assert passwd[4].split(",")[0] == "Alice Martin"
        assert passwd[6] == "/bin/bash"

        assert guest.host_name(dom) == name
        assert run(dom, "hostname").strip() == name
        assert shell_value(run(dom, "cat", "/etc/default/keyboard"), "XKBLAYOUT") == "fr"
        assert shell_value(run(dom, "cat", "/etc/default/locale"), "LANG") == "fr_FR.UTF-8"
        assert "fr_FR.utf8" in run(dom, "locale", "-a").split()

        deleted = vm_manager("delete", "--class", lab_class, "--yes", env=env)
        assert deleted.returncode == 0, deleted.stderr
        with pytest.raises(libvirt.libvirtError) as gone:
            outside.conn.lookupByName(name)
        assert gone.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        assert not disk.exists()
        assert base.is_file()  # a template is never deleted with a VM
    finally:
        for dom in outside.conn.listAllDomains(0):
            if dom.name().startswith(lab_class + "-"):
                remove_domain(dom)
        shutil.rmtree(students, ignore_errors=True)
