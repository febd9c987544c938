"""Provisioning a class on real libvirtd + QEMU, through the CLI as an operator runs it.

The VMs are made from the tiny template in a student folder root of their own under /var/tmp
(wherever the checkout is: QEMU cannot pass a checkout under /root); a root inside a folder QEMU
may not pass is let through by ``--fix-permissions`` (a POSIX ACL) or refused before anything is
made. Everything is checked from outside: a
plain libvirt connection, the files, the seed ISOs read back without mounting, the guest's own
serial console.
"""

from __future__ import annotations

import csv
import os
import shutil
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
import pytest
import yaml
from support import crashes
from support.cli import vm_manager
from support.livelab import URI, Outside
from support.slapd import GROUPS, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, Slapd, lab_entries

from core.metadata import NAMESPACE
from core.model import VM, VMState
from core.provision.domainbuild import BALLOON_STATS_PERIOD
from core.provision.guests.linux import read_seed_iso
from core.provision.guests.windows import UNATTEND_NS, computer_name, read_answer_file
from core.provision.passwords import windows_password_problem
from core.storage import images
from core.storage.folders import STARTING
from core.storage.permissions import group_id
from core.testing.domains import remove_domain
from core.virt import stats
from tui import format as fmt

pytestmark = pytest.mark.integration

STUDENTS = ("alice", "bob", "carol", "dave", "erin")


@dataclass
class Class:
    """One test's class: its settings (as environment), folders and a way to run the CLI."""

    name: str
    env: dict[str, str]
    root: Path  # the student folder root
    sockets: Path
    data: Path
    template: Path
    conn: libvirt.virConnect
    made: list[str] = field(default_factory=list)

    def cli(self, *args: str | os.PathLike[str], extra_env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return vm_manager("-c", URI, *args, env={**self.env, **(extra_env or {})}, timeout=timeout)

    def roster(self, rows: list[str], name: str = "users.csv") -> Path:
        path = self.data / name
        path.write_text("username,full_name,password,ssh_key\n" + "".join(r + "\n" for r in rows))
        return path

    def provision(self, roster: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.cli("provision", "--template", "tiny", "--class", self.name, "--users", roster, *args,
                        **kwargs)  # type: ignore[arg-type]

    def vm(self, user: str) -> str:
        return f"{self.name}-{user}"

    def domains(self) -> dict[str, libvirt.virDomain]:
        return {d.name(): d for d in self.conn.listAllDomains(0) if d.name().startswith(self.name + "-")}

    def folders(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*/*") if p.is_dir())


@pytest.fixture
def lab_class(outside: Outside, tiny_template: Path, tmp_path: Path) -> Iterator[Class]:
    data = tmp_path / "data"
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text(
        "[templates.tiny]\n"
        f'image = "{tiny_template / "base.qcow2"}"\n'
        f'kernel = "{tiny_template / "vmlinuz"}"\n'
        f'initrd = "{tiny_template / "initrd.img"}"\n'
        'cmdline = "console=tty0 console=ttyS0"\n'
        'domain_type = "qemu"\nmemory_mib = 96\ndisk_size_gib = 1\n')
    data.mkdir()
    shared = outside.shared_dir()
    root = shared / "student_vms"
    sockets = shared / "consoles"
    name = outside.name("c")
    env = {**os.environ, "VMM_CONFIG_DIR": str(config), "VMM_DATA_DIR": str(data),
           "VMM_STUDENT_VMS_DIR": str(root), "VMM_CONSOLE_SOCKET_DIR": str(sockets),
           "VMM_TEMPLATE_DIR": str(tiny_template.parent), "LIBVIRT_DEFAULT_URI": URI}
    env.pop("VMM_FAILPOINT", None)
    made = Class(name, env, root, sockets, data, tiny_template, outside.conn)
    try:
        yield made
    finally:
        for dom in made.domains().values():
            remove_domain(dom)
        shutil.rmtree(root, ignore_errors=True)


def wait_for_line(log: Path, line: str, within: float = 60.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if log.exists() and line in log.read_text(errors="replace").splitlines():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise AssertionError(f"no {line!r} on the console after {within:g} s:\n{tail}")


def test_a_class_behind_a_folder_qemu_cannot_pass_boots_once_let_through(lab_class: Class) -> None:
    """The student root inside a folder of mode 0700 (a checkout under /root): refused with the
    command, nothing made; with --fix-permissions, an ACL lets QEMU pass and the VM boots from it."""
    home = lab_class.root.parent / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    root = home / "vm-manager" / "student_vms"
    env = {"VMM_STUDENT_VMS_DIR": str(root)}
    roster = lab_class.roster(["alice,Alice,Secret123,"])
    refused = lab_class.provision(roster, "--start", extra_env=env)
    assert refused.returncode == 2, refused.stderr
    assert f"`setfacl -m u:libvirt-qemu:x {home}`" in refused.stderr
    assert lab_class.domains() == {}
    assert list(home.iterdir()) == []

    made = lab_class.provision(roster, "--start", "--fix-permissions", extra_env=env)
    assert made.returncode == 0, made.stderr
    assert f"libvirt-qemu may now pass {home} (POSIX ACL)" in made.stderr
    assert stat.S_IMODE(home.stat().st_mode) & 0o707 == 0o700  # an ACL entry, not a chmod
    console = root / "alice" / lab_class.vm("alice") / "console.log"
    wait_for_line(console, f"vmm-tiny: hostname={lab_class.vm('alice')}")


def test_a_class_of_five_made_booted_reset_and_deleted(lab_class: Class) -> None:
    roster = lab_class.roster([f"{u},{u.title()} Étudiant,{'Secret123' if u == 'alice' else ''},"
                               for u in STUDENTS])
    made = lab_class.provision(roster)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [f"{lab_class.vm(u)}: made" for u in STUDENTS]
    with crashes.checked(lab_class.data / "vm-manager.sqlite3") as db:  # each VM reported made is audited
        for user in STUDENTS:
            assert crashes.audited(db, "provision", vm_name=lab_class.vm(user), outcome="ok") == 1

    domains = lab_class.domains()
    assert sorted(domains) == sorted(lab_class.vm(u) for u in STUDENTS)
    base = str(lab_class.template / "base.qcow2")
    for user in STUDENTS:
        folder = lab_class.root / user / lab_class.vm(user)
        root = ET.fromstring(domains[lab_class.vm(user)].XMLDesc(0))
        meta = root.find(f"metadata/{{{NAMESPACE}}}vm")
        assert meta is not None
        assert meta.findtext(f"{{{NAMESPACE}}}owner") == user
        assert meta.findtext(f"{{{NAMESPACE}}}class") == lab_class.name
        assert meta.findtext(f"{{{NAMESPACE}}}template") == "tiny"
        assert meta.findtext(f"{{{NAMESPACE}}}created")
        # a linked clone: an overlay on the template, a few hundred KiB
        disk = folder / "disk.qcow2"
        assert images.backing_chain(str(disk)) == [base]
        assert disk.stat().st_size < 1024 * 1024
        # VNC on a Unix socket only, shared by every viewer
        graphics = root.find("devices/graphics")
        assert graphics is not None
        assert graphics.get("sharePolicy") == "force-shared"
        assert graphics.get("port") is None
        listen = graphics.find("listen")
        assert listen is not None
        assert listen.get("type") == "socket"
        assert Path(listen.get("socket", "")).parent == lab_class.sockets
        # the seed, read back without mounting
        seed = read_seed_iso(folder / "seed.iso")
        assert seed["volume"] == "cidata"
        config = yaml.safe_load(seed["user-data"])
        assert config["hostname"] == lab_class.vm(user)
        assert config["keyboard"] == {"layout": "fr"}
        assert config["locale"] == "fr_FR.UTF-8"
        assert config["users"][0]["name"] == user
        assert config["users"][0]["passwd"].startswith("$6$")
        # students' files: folders QEMU passes but nobody lists, files only their owner reads
        assert stat.S_IMODE(folder.stat().st_mode) == 0o711
        assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o711
        for path in folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    sockets = lab_class.sockets.stat()
    assert stat.S_IMODE(sockets.st_mode) == 0o770
    assert sockets.st_gid == group_id()

    # generated passwords: in one file only the operator reads, never on the screen
    files = list((lab_class.data / "passwords").iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    rows = files[0].read_text().splitlines()
    assert len(rows) == 1 + len(STUDENTS) - 1  # header + everyone but alice, whose password was given
    for row in rows[1:]:
        password = row.split(",")[2]
        assert len(password) >= 12
        assert password not in made.stdout + made.stderr

    # boot one: the guest reads its own seed (its disk holds what an exercise wrote, for the reset)
    alice = lab_class.vm("alice")
    alice_dir = lab_class.root / "alice" / alice
    disk = alice_dir / "disk.qcow2"
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 64k", disk], check=True,
                   capture_output=True)
    assert os.path.getsize(disk) > 196_624
    assert lab_class.cli("start", alice).returncode == 0
    console = alice_dir / "console.log"
    wait_for_line(console, f"vmm-tiny: hostname={alice}")
    wait_for_line(console, "vmm-tiny: user=alice")
    # a balloon asked for the guest's memory figures; the tiny guest has no driver to give them:
    # two report periods on, it has said nothing, so the table shows the allocation alone
    balloon = ET.fromstring(domains[alice].XMLDesc(0)).find("devices/memballoon")
    assert balloon is not None
    assert balloon.get("model") == "virtio"
    assert balloon.find("stats").get("period") == str(BALLOON_STATS_PERIOD)
    time.sleep(2 * BALLOON_STATS_PERIOD + 1)
    [(_, raw)] = domains[alice].connect().domainListGetStats([domains[alice]],
                                                             libvirt.VIR_DOMAIN_STATS_BALLOON)
    assert raw.get("balloon.rss", 0) > 0  # QEMU's own figure is there...
    assert stats.guest_memory_used_kib(raw) is None  # ...but no guest's use
    assert fmt.memory(VM("h", "u", alice, VMState.RUNNING, 1, raw["balloon.current"] // 1024)) == "96M"
    # its disks, as the DISK column reads them from the same bulk stats: the overlay's size on the
    # host (the 64 KiB written above, and qcow2's own tables) and the seed CD's, of the template's
    # 1 GiB (disk_size_gib) and the CD's few KiB
    [(_, raw)] = domains[alice].connect().domainListGetStats([domains[alice]], libvirt.VIR_DOMAIN_STATS_BLOCK)
    figures = stats.figures(stats.sample(raw, 0.0, 1), None)
    assert figures.disk_size_mib is not None
    assert 1024 < figures.disk_size_mib < 1025
    assert figures.disk_used_mib is not None
    assert 0.06 < figures.disk_used_mib < 8

    # reset the running VM: a fresh overlay, and it boots again from it
    first_qemu = Path(f"/run/libvirt/qemu/{alice}.pid").read_text()
    console.unlink()  # the new QEMU writes a new log: the boot below is the one after the reset
    reset = lab_class.cli("reset", alice, "--yes")
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.strip() == f"{alice}: reset to its template and started again"
    assert domains[alice].state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert Path(f"/run/libvirt/qemu/{alice}.pid").read_text() != first_qemu
    wait_for_line(console, f"vmm-tiny: hostname={alice}")
    read = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0 0 64k", disk],
                          capture_output=True, text=True)  # -U: QEMU has it open
    assert "Pattern verification failed" not in read.stdout + read.stderr
    assert read.returncode == 0
    assert images.backing_chain(str(disk)) == [base]

    # delete the class: domains, overlays, folders; never the template
    deleted = lab_class.cli("delete", "--class", lab_class.name, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert lab_class.domains() == {}
    assert lab_class.folders() == []
    assert (lab_class.template / "base.qcow2").is_file()


def test_dry_run_makes_nothing(lab_class: Class) -> None:
    roster = lab_class.roster(["alice,Alice,,", "bob,Bob,,"])
    shown = lab_class.provision(roster, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    # the plan is a table: VM, owner, host, template, what happens to it
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines() if line.strip()}
    assert rows[lab_class.vm("alice")][:3] == ["alice", "localhost", "tiny"]
    assert "dry run: nothing made" in shown.stdout
    assert lab_class.domains() == {}
    assert lab_class.folders() == []
    assert not (lab_class.data / "passwords").exists()


def add_template(lab_class: Class, name: str, settings: str) -> None:
    """Another template of the tiny template's files, in the class's templates.toml."""
    toml = Path(lab_class.env["VMM_CONFIG_DIR"]) / "templates.toml"
    tiny = lab_class.template
    toml.write_text(toml.read_text() + f"[templates.{name}]\n"
                    f'image = "{tiny / "base.qcow2"}"\nkernel = "{tiny / "vmlinuz"}"\n'
                    f'initrd = "{tiny / "initrd.img"}"\ncmdline = "console=ttyS0"\ndomain_type = "qemu"\n'
                    + settings)


def test_capacity_is_checked_and_overcommit_goes_on(lab_class: Class) -> None:
    host_mib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:")) // 1024
    add_template(lab_class, "huge", f"memory_mib = {2 * host_mib}\ndisk_size_gib = 100000\n")
    roster = lab_class.roster(["alice,Alice,,"])
    args = ("provision", "--template", "huge", "--class", lab_class.name, "--users", roster)
    for dry in (["--dry-run"], []):
        refused = lab_class.cli(*args, *dry)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"memory: the VMs need {2 * host_mib} MiB, the host has " in refused.stderr
        assert "disk: the overlays may grow to 100000.0 GiB" in refused.stderr
        assert refused.stderr.count("(--overcommit to go on anyway)") == 2
        assert lab_class.domains() == {}
        assert lab_class.folders() == []
    shown = lab_class.cli(*args, "--overcommit", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert f"capacity: memory {2 * host_mib} MiB of " in shown.stdout
    assert lab_class.domains() == {}
    made = lab_class.cli(*args, "--overcommit")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [f"{lab_class.vm('alice')}: made"]
    disk = lab_class.root / "alice" / lab_class.vm("alice") / "disk.qcow2"
    assert images.virtual_size(disk) == 100000 << 30


def test_a_windows_vm_made_by_provision(lab_class: Class) -> None:
    add_template(lab_class, "win", 'os = "windows"\nmemory_mib = 96\ndisk_size_gib = 1\n')
    roster = lab_class.roster(["alice,Alice Martin,Secret123,", "bob,Bob,,"])
    made = lab_class.cli("provision", "--template", "win", "--class", lab_class.name, "--users", roster)
    assert made.returncode == 0, made.stderr
    assert sorted(made.stdout.splitlines()) == [f"{lab_class.vm(u)}: made" for u in ("alice", "bob")]

    (passwords,) = (lab_class.data / "passwords").iterdir()
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    with passwords.open(newline="") as f:
        rows = {row["vm"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == [lab_class.vm("alice"), lab_class.vm("bob")]
    alice, bob = rows[lab_class.vm("alice")], rows[lab_class.vm("bob")]
    assert alice["password"] == ""  # given in the roster: not written again
    assert windows_password_problem(bob["password"]) is None
    assert alice["admin_password"] != bob["admin_password"]
    for row in (alice, bob):
        assert windows_password_problem(row["admin_password"]) is None
        assert row["admin_password"] not in made.stdout + made.stderr

    for user, password in (("alice", "Secret123"), ("bob", bob["password"])):
        name = lab_class.vm(user)
        iso = lab_class.root / user / name / "autounattend.iso"
        assert stat.S_IMODE(iso.stat().st_mode) == 0o600
        assert not (iso.parent / "seed.iso").exists()
        root = ET.fromstring(lab_class.domains()[name].XMLDesc(0))
        cds = root.findall("devices/disk[@device='cdrom']/source")
        assert [cd.get("file") for cd in cds] == [str(iso)]
        answer = ET.fromstring(read_answer_file(iso))  # made by provisioning, read back by pycdlib
        ns = {"u": UNATTEND_NS}
        oobe = answer.find("u:settings[@pass='oobeSystem']"
                           "/u:component[@name='Microsoft-Windows-Shell-Setup']", ns)
        assert oobe is not None
        assert oobe.findtext("u:UserAccounts/u:AdministratorPassword/u:Value", namespaces=ns) == \
            rows[name]["admin_password"]
        account = oobe.find("u:UserAccounts/u:LocalAccounts/u:LocalAccount", ns)
        assert account is not None
        assert account.findtext("u:Name", namespaces=ns) == user
        assert account.findtext("u:Password/u:Value", namespaces=ns) == password
        assert account.findtext("u:Group", namespaces=ns) == "Administrators"
        assert answer.findtext(".//u:settings[@pass='specialize']//u:ComputerName", namespaces=ns) == \
            computer_name(name)


def test_a_bad_roster_is_refused_whole_with_line_numbers(lab_class: Class) -> None:
    roster = lab_class.roster(["alice,Alice,,", "../etc,Bad,,", "alice,Again,,", "bob,Bob,,"])
    refused = lab_class.cli("provision", "--template", "no-such", "--class", lab_class.name,
                            "--users", roster)
    assert refused.returncode == 2
    assert "line 3" in refused.stderr
    assert "line 4" in refused.stderr
    assert "no template 'no-such'" in refused.stderr  # reported together
    assert lab_class.domains() == {}
    assert lab_class.folders() == []


def test_an_existing_vm_is_never_overwritten(lab_class: Class) -> None:
    first = lab_class.provision(lab_class.roster(["alice,Alice,,"]))
    assert first.returncode == 0, first.stderr
    before = lab_class.domains()[lab_class.vm("alice")].UUIDString()
    again = lab_class.provision(lab_class.roster(["bob,Bob,,", "alice,Alice,,"], "again.csv"))
    assert again.returncode == 2
    assert f"{lab_class.vm('alice')}: a VM of that name exists" in again.stderr
    assert sorted(lab_class.domains()) == [lab_class.vm("alice")]  # bob not made either
    assert lab_class.domains()[lab_class.vm("alice")].UUIDString() == before


@pytest.mark.parametrize("step", ["define", "start"])
def test_a_failed_step_removes_that_vm_only(lab_class: Class, step: str) -> None:
    roster = lab_class.roster(["alice,Alice,,", "bob,Bob,,", "carol,Carol,,"])
    run = lab_class.provision(roster, "--start",
                              extra_env={"VMM_FAILPOINT": f"fail:{step}:{lab_class.vm('bob')}"})
    assert run.returncode == 1
    assert f"{lab_class.vm('bob')}: failed at {step}" in run.stderr
    # generated passwords: the VMs that exist, not bob's (at start, it had been defined)
    (passwords,) = (lab_class.data / "passwords").iterdir()
    assert sorted(row.split(",")[0] for row in passwords.read_text().splitlines()[1:]) == [
        lab_class.vm("alice"), lab_class.vm("carol")]
    assert sorted(lab_class.domains()) == [lab_class.vm("alice"), lab_class.vm("carol")]
    assert [p.name for p in lab_class.folders()] == [lab_class.vm("alice"), lab_class.vm("carol")]
    # started paused, then resumed together: running, not left paused
    assert [d.state()[0] for d in lab_class.domains().values()] == [libvirt.VIR_DOMAIN_RUNNING] * 2
    assert not (lab_class.root / "bob").exists()


@pytest.mark.parametrize("step", ["folder", "disk", "seed", "define", "start", "resume", "acted"])
def test_doctor_cleans_up_after_a_run_killed_at_each_step(lab_class: Class, step: str) -> None:
    """``acted``: every VM made and running, the run killed before it reports them. Each VM made
    is audited as soon as it is (at ``resume`` they may be, or not yet), none before."""
    roster = lab_class.roster(["alice,Alice,,", "bob,Bob,,"])
    killed = lab_class.provision(roster, "--start", extra_env={"VMM_FAILPOINT": f"kill:{step}"})
    assert killed.returncode == -9, killed.stderr
    assert killed.stdout == ""  # no VM reported made
    assert bool(lab_class.folders()) == (step != "folder")
    database = lab_class.data / "vm-manager.sqlite3"
    entries = 0
    if database.exists():  # the audit log is opened when the first VM is made
        with crashes.checked(database) as db:
            entries = crashes.audited(db, "provision", outcome="ok")
    assert entries == 2 if step == "acted" else entries <= 2 if step == "resume" else entries == 0
    checked = lab_class.cli("doctor")
    if step != "start":  # at start, the other VM may be whole or half-made: both are fine
        half_made = step in ("disk", "seed", "define", "resume")
        assert checked.returncode == (1 if half_made else 0), checked.stdout + checked.stderr
    fixed = lab_class.cli("doctor", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert lab_class.cli("doctor").stdout.strip() == "nothing half-made"
    if "->" in fixed.stdout:  # what the doctor fixed is audited
        with crashes.checked(database) as db:
            assert crashes.audited(db, "doctor-fix") == fixed.stdout.count("->")
    if step == "start":  # killed after define: whole VMs, not started, that the doctor keeps
        domains = lab_class.domains()
        assert domains
        assert all(not d.isActive() for d in domains.values())
        assert len(lab_class.folders()) == len(domains)
    elif step == "acted":  # whole, running and audited: nothing for the doctor
        assert checked.stdout.strip() == "nothing half-made"
        domains = lab_class.domains()
        assert sorted(domains) == [lab_class.vm("alice"), lab_class.vm("bob")]
        assert [d.state()[0] for d in domains.values()] == [libvirt.VIR_DOMAIN_RUNNING] * 2
    elif step == "resume":  # both started paused, then killed: the doctor lets them run
        assert "left paused by a provisioning run that was killed" in checked.stdout
        assert "-> resumed" in fixed.stdout
        domains = lab_class.domains()
        assert sorted(domains) == [lab_class.vm("alice"), lab_class.vm("bob")]
        assert [d.state()[0] for d in domains.values()] == [libvirt.VIR_DOMAIN_RUNNING] * 2
        assert not [p for p in lab_class.folders() if (p / STARTING).exists()]
        next(iter(domains.values())).suspend()  # paused by an operator: no mark, none of the doctor's
        assert lab_class.cli("doctor").stdout.strip() == "nothing half-made"
    else:
        assert lab_class.domains() == {}
        assert lab_class.folders() == []


def test_doctor_undefines_our_domain_whose_disk_is_gone(lab_class: Class) -> None:
    assert lab_class.provision(lab_class.roster(["alice,Alice,,"])).returncode == 0
    folder = lab_class.root / "alice" / lab_class.vm("alice")
    (folder / "disk.qcow2").unlink()
    checked = lab_class.cli("doctor")
    assert checked.returncode == 1
    assert f"domain {lab_class.vm('alice')}: its disk" in checked.stdout
    assert lab_class.cli("doctor", "--fix").returncode == 0
    assert lab_class.domains() == {}
    assert lab_class.folders() == []


def test_snapshot_and_revert_a_class(lab_class: Class) -> None:
    assert lab_class.provision(lab_class.roster(["alice,Alice,,"])).returncode == 0
    disk = lab_class.root / "alice" / lab_class.vm("alice") / "disk.qcow2"
    taken = lab_class.cli("snapshot", "before-lab", "--class", lab_class.name)
    assert taken.returncode == 0, taken.stderr
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 0 64k", disk], check=True,
                   capture_output=True)
    again = lab_class.cli("snapshot", "before-lab", "--class", lab_class.name)
    assert again.returncode == 1
    assert "already has a snapshot" in again.stderr
    reverted = lab_class.cli("revert", "before-lab", "--class", lab_class.name, "--yes")
    assert reverted.returncode == 0, reverted.stderr
    read = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0 0 64k", disk], capture_output=True,
                          text=True)
    assert read.returncode == 0
    assert "Pattern verification failed" not in read.stdout + read.stderr
    missing = lab_class.cli("revert", "nope", "--class", lab_class.name, "--yes")
    assert missing.returncode == 1
    assert "has no snapshot 'nope'" in missing.stderr


def test_a_class_from_an_ldap_group(lab_class: Class, tmp_path: Path) -> None:
    with Slapd(tmp_path / "slapd", lab_entries()) as server:
        ldap = {"LDAP_HOST": server.url, "LDAP_BASE_DN": SUFFIX, "LDAP_BIND_USER_DN": SERVICE_DN,
                "LDAP_BIND_USER_PASSWORD": SERVICE_PASSWORD}
        made = lab_class.cli("provision", "--template", "tiny", "--class", lab_class.name,
                             "--ldap-group", f"cn=info1,{GROUPS}", extra_env=ldap)
        refused = lab_class.cli("provision", "--template", "tiny", "--class", lab_class.name,
                                "--ldap-group", f"cn=*)(uid=*,{GROUPS}", extra_env=ldap)
    assert made.returncode == 0, made.stderr
    assert sorted(lab_class.domains()) == [lab_class.vm("alice"), lab_class.vm("bob")]
    assert SERVICE_PASSWORD not in made.stdout + made.stderr
    owners = {ET.fromstring(d.XMLDesc(0)).findtext(f"metadata/{{{NAMESPACE}}}vm/{{{NAMESPACE}}}owner")
              for d in lab_class.domains().values()}
    assert owners == {"alice", "bob"}
    assert refused.returncode == 2
    assert sorted(lab_class.domains()) == [lab_class.vm("alice"), lab_class.vm("bob")]
