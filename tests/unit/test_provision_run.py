"""Provisioning a class for real on libvirt's test driver: checks before anything is made, a step that
breaks, the passwords file, the dry run with domain type ``auto`` -- through core and through the CLI.

The overlays (qemu-img), seed ISOs (pycdlib, openssl) and folders are real, under a /var/tmp folder
QEMU's user can pass; the domains are defined on the test driver.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import libvirt
import pytest
from support.cli import settings_env, vm_manager, vm_manager_on_a_terminal

from core import failpoints
from core.errors import InvalidInput
from core.lab import Lab
from core.metadata import LabMeta
from core.model import Student, VMState
from core.provision import kvmprobe
from core.provision.planning import Plan
from core.provision.templates import load_templates
from core.records.audit import AuditLog
from core.settings import ConsoleSettings, ProvisionSettings, Settings
from core.testing import testdriver

HEADER = "username,full_name,password,ssh_key\n"


@pytest.fixture
def settings(tmp_path: Path, world_dir: Path) -> Settings:
    image = world_dir / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(image), "16M"], check=True, capture_output=True)
    image.chmod(0o644)
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text(
        f'[templates.mini]\nimage = "{image}"\ndomain_type = "qemu"\nmemory_mib = 64\ndisk_size_gib = 1\n'
        f'[templates.winmini]\nos = "windows"\nimage = "{image}"\ndomain_type = "qemu"\nmemory_mib = 64\n'
        'disk_size_gib = 1\n'
        f'[templates.automini]\nimage = "{image}"\nmemory_mib = 64\ndisk_size_gib = 1\n')
    return Settings(
        config_dir=config,
        data_dir=tmp_path / "data",
        template_dir=tmp_path / "no-templates",
        provision=ProvisionSettings(domain_type="auto", student_vms_dir=world_dir / "students"),
        consoles=ConsoleSettings(socket_dir=world_dir / "consoles"),
    )


@pytest.fixture
async def lab(settings: Settings, tmp_path: Path) -> AsyncIterator[Lab]:
    opened = await Lab.open(settings, testdriver.write(tmp_path / "lab.xml", []))
    yield opened
    await opened.close()


def template(settings: Settings, name: str):  # noqa: ANN201
    return load_templates(settings.templates_file, settings.templates_path)[name]


def made_folders(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.provision.student_vms_dir.glob("*/*"))


def domain_names(lab: Lab) -> list[str]:
    conn = lab._local_host().connection()
    return sorted(d.name() for d in conn.listAllDomains(0))


def password_rows(path: Path | None) -> list[list[str]]:
    assert path is not None
    with path.open(newline="") as f:
        return list(csv.reader(f))


# -- checked before anything is made --
async def test_windows_account_rules_are_checked_when_planning(lab: Lab, settings: Settings) -> None:
    """Students from an LDAP group are no roster: the plan applies the same rules."""
    win = template(settings, "winmini")
    students = [Student("guest", password="Secret123"), Student("a" * 21, password="Secret123"),
                Student("zoe", "Z" * 257, password="Secret123"), Student("ok", "Fine", "Secret123")]
    with pytest.raises(InvalidInput) as info:
        await lab.plan_provision(win, "w1", students)
    message = info.value.message
    assert "guest: invalid username 'guest': a built-in Windows account" in message
    assert f"{'a' * 21}: invalid username" in message and "at most 20" in message  # noqa: PT018
    assert "zoe: full name too long for Windows" in message
    assert "ok:" not in message
    # a user named like the computer: the VM name (and so the computer name) is the username
    lab.settings = dataclasses.replace(
        settings, provision=dataclasses.replace(settings.provision, vm_name_scheme="{username}")
    )
    with pytest.raises(InvalidInput, match="Windows refuses a user named like the computer"):
        await lab.plan_provision(win, "w1", [Student("lab7", password="Secret123")])
    assert made_folders(settings) == []
    assert not settings.passwords_dir.exists()


async def test_a_full_name_useradd_refuses_is_checked_when_planning(lab: Lab, settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="jean: the full name contains ':'"):
        await lab.plan_provision(template(settings, "mini"), "c1",
                                 [Student("alice", "Alice"), Student("jean", "Dupont: Jean")])
    assert made_folders(settings) == []


async def test_a_plan_with_domain_type_auto_boots_nothing(lab: Lab, settings: Settings) -> None:
    auto = template(settings, "automini")
    plan = await lab.plan_provision(auto, "a1", [Student("alice")])
    assert plan.domain_type == "auto"  # provision.AUTO: decided when the VMs are made
    assert "domain type decided when the VMs are made" in plan.describe()[0]
    assert not kvmprobe.cache_file(settings).exists()  # no probe: nothing written
    # a cached answer is used as it is
    kvmprobe.cache_file(settings).parent.mkdir(parents=True)
    kvmprobe.cache_file(settings).write_text(json.dumps({kvmprobe.host_key(): "qemu"}))
    assert (await lab.plan_provision(auto, "a1", [Student("alice")])).domain_type == "qemu"
    # without one, the run decides it first (the test driver offers no KVM: qemu, cached)
    kvmprobe.cache_file(settings).unlink()
    report = await lab.provision(plan)
    assert [o.ok for o in report.outcomes] == [True]
    assert json.loads(kvmprobe.cache_file(settings).read_text()) == {kvmprobe.host_key(): "qemu"}
    dom = lab._local_host().connection().lookupByName("a1-alice")
    assert "<domain type='qemu'" in dom.XMLDesc(0)


# -- making --
async def test_an_unexpected_error_in_a_step_undoes_that_vm_only(lab: Lab, settings: Settings,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    plan = await lab.plan_provision(template(settings, "mini"), "c2",
                                    [Student("alice"), Student("bob"), Student("carol")])
    # bob's password cannot be handed to openssl (not encodable): the seed step raises a
    # UnicodeEncodeError, which is none of the errors a step is expected to raise
    vms = tuple(dataclasses.replace(vm, password="Bad\udc80pass") if vm.name == "c2-bob" else vm
                for vm in plan.vms)
    broken: Plan = dataclasses.replace(plan, vms=vms)
    with caplog.at_level(logging.ERROR, logger="core.provision"):
        report = await lab.provision(broken)
    assert [(o.name, o.ok) for o in report.outcomes] == [("c2-alice", True), ("c2-bob", False),
                                                         ("c2-carol", True)]
    assert report.outcomes[1].message.startswith("failed at seed: unexpected UnicodeEncodeError")
    assert domain_names(lab) == ["c2-alice", "c2-carol"]
    assert made_folders(settings) == ["c2-alice", "c2-carol"]
    assert not (settings.provision.student_vms_dir / "bob").exists()
    logged = [r for r in caplog.records if "c2-bob" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # noqa: PT018 (the traceback, in the log)
    # the passwords file: the two VMs that exist
    rows = password_rows(report.passwords_file)
    assert rows[0] == ["vm", "username", "password", "admin_password"]
    assert sorted(row[0] for row in rows[1:]) == ["c2-alice", "c2-carol"]


async def test_no_passwords_file_when_no_vm_was_made(lab: Lab, settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A Windows class: every VM has a row to write (its Administrator password), none is made.
    (A class where some VMs are made and one is undone after its row: tests/integration.)"""
    for failing, cls in (("define", "c4"), ("start", "c5")):  # before its row is written, and after
        monkeypatch.setenv(failpoints.VARIABLE, f"fail:{failing}")
        plan = await lab.plan_provision(template(settings, "winmini"), cls,
                                        [Student("alice", password="Secret123"), Student("bob")], start=True)
        report = await lab.provision(plan)
        assert [o.message.split(":")[0] for o in report.outcomes] == [f"failed at {failing}"] * 2
        assert report.passwords_file is None
        assert not settings.passwords_dir.exists() or list(settings.passwords_dir.iterdir()) == []
    assert domain_names(lab) == []
    assert made_folders(settings) == []


# -- through the CLI --
def cli(settings: Settings, uri: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return vm_manager("-c", uri, "provision", *args, **settings_env(settings))


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", [])


def test_a_windows_roster_with_bad_rows_is_refused_whole_even_in_a_dry_run(
        settings: Settings, uri: str, tmp_path: Path) -> None:
    roster = tmp_path / "win.csv"
    roster.write_text(HEADER + "alice,Alice,Secret123,\nguest,,,\nabcdefghijklmnopqrstu,,,\n"
                      f"bob,{'B' * 257},,\nadministrator,,,\ncarol,Carol,weak,\n")
    for dry in (["--dry-run"], []):
        out = cli(settings, uri, "--template", "winmini", "--class", "w2", "--users", roster, *dry)
        assert out.returncode == 2, out.stdout + out.stderr
        for line in (3, 4, 5, 6, 7):
            assert f"line {line}: " in out.stderr
        assert "line 2" not in out.stderr
        assert "Traceback" not in out.stderr
    assert made_folders(settings) == []
    assert not settings.passwords_dir.exists()


def test_a_broken_templates_file_and_a_bad_roster_are_reported_together(
        settings: Settings, uri: str, tmp_path: Path) -> None:
    settings.templates_file.write_text("[templates.mini\nimage = \n")
    roster = tmp_path / "bad.csv"
    roster.write_text(HEADER + "alice,,,\nBad Name,,,\n")
    out = cli(settings, uri, "--template", "mini", "--class", "c6", "--users", roster)
    assert out.returncode == 2
    assert "line 3: invalid username 'Bad Name'" in out.stderr
    assert str(settings.templates_file) in out.stderr
    assert "Traceback" not in out.stderr


def test_a_dry_run_with_domain_type_auto_makes_nothing(settings: Settings, uri: str, tmp_path: Path) -> None:
    roster = tmp_path / "users.csv"
    roster.write_text(HEADER + "alice,Alice,,\n")
    out = cli(settings, uri, "--template", "automini", "--class", "c7", "--users", roster, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "domain type decided when the VMs are made" in out.stdout
    assert "c7-alice  alice" in out.stdout  # a row of the plan's table
    assert not kvmprobe.cache_file(settings).exists()
    assert not settings.passwords_dir.exists()
    assert not settings.provision.student_vms_dir.exists()


def test_add_makes_only_the_missing_vms_of_a_roster_and_keeps_the_others(
        settings: Settings, tmp_path: Path) -> None:
    """A late student joins: the roster plus one new name. Without --add it is refused whole;
    with it only the new VM is made, the existing one is named as kept and never touched."""
    uri = testdriver.write(tmp_path / "lab.xml", [testdriver.Spec(
        "c8-alice", VMState.RUNNING, 1, 64, LabMeta("alice", "c8", "mini"))])
    roster = tmp_path / "users.csv"
    roster.write_text(HEADER + "alice,Alice,,\nbob,Bob,,\n")
    refused = cli(settings, uri, "--template", "mini", "--class", "c8", "--users", roster, "--dry-run")
    assert refused.returncode == 2
    assert "c8-alice: a VM of that name exists" in refused.stderr
    assert "--add" in refused.stderr
    dry = cli(settings, uri, "--template", "mini", "--class", "c8", "--users", roster, "--dry-run", "--add")
    assert dry.returncode == 0, dry.stderr
    rows = [line.split() for line in dry.stdout.splitlines()]
    header = rows.index(["VM", "owner", "host", "template", "what"])
    assert [row[:2] for row in rows[header + 1:header + 3]] == [["c8-bob", "bob"], ["c8-alice", "alice"]]
    assert rows[header + 1][3] == "mini" and "new," in dry.stdout  # noqa: PT018
    assert "kept: exists, not touched" in dry.stdout
    assert "kept: 1 VM of the roster" in dry.stdout
    made = cli(settings, uri, "--template", "mini", "--class", "c8", "--users", roster, "--add")
    assert made.returncode == 0, made.stderr
    assert "c8-bob: made" in made.stdout
    assert "c8-alice" not in made.stdout
    assert made_folders(settings) == ["c8-bob"]
    # every VM of the roster exists already: nothing to add, said so
    only_alice = tmp_path / "alice.csv"
    only_alice.write_text(HEADER + "alice,Alice,,\n")
    nothing = cli(settings, uri, "--template", "mini", "--class", "c8", "--users", only_alice, "--add")
    assert nothing.returncode == 2
    assert "there is nothing to add" in nothing.stderr


def test_the_test_driver_offers_no_kvm() -> None:
    """What the run above relies on: on the test driver the probe answers at once, booting nothing."""
    conn = libvirt.open("test:///default")
    try:
        with pytest.raises(libvirt.libvirtError):
            conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
    finally:
        conn.close()


async def test_a_vm_provisioned_on_the_test_driver_is_deleted_with_its_folder(lab: Lab,
                                                                              settings: Settings) -> None:
    """The driver's own storage is fictional, but a folder marked as the VM's is real and ours."""
    mini = template(settings, "mini")
    report = await lab.provision(await lab.plan_provision(mini, "c9", [Student("zoe")]))
    assert not report.failed
    folder = settings.provision.student_vms_dir / "zoe" / "c9-zoe"
    assert (folder / "disk.qcow2").is_file()
    (vm,) = [vm for vm in lab.vms() if vm.name == "c9-zoe"]
    (result,) = await lab.act("delete", [vm])
    assert result.ok, result.message
    assert result.message.startswith("deleted, 1 disk removed")
    assert not folder.exists()
    assert mini.image is not None
    assert mini.image.is_file()  # the template's image stays


# -- a student folder root QEMU cannot pass (a checkout under /root) --
@pytest.fixture
def closed_home(settings: Settings, world_dir: Path) -> tuple[Settings, Path]:
    """Settings whose student root is inside a folder only its owner may enter, as /root is."""
    home = world_dir / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    return dataclasses.replace(
        settings,
        provision=dataclasses.replace(
            settings.provision, student_vms_dir=home / "vm-manager" / "student_vms"
        ),
    ), home


def qemu_entry(folder: Path) -> list[str]:
    out = subprocess.run(["getfacl", "--omit-header", "--absolute-names", str(folder)], capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.startswith("user:libvirt-qemu")]


def test_a_root_qemu_cannot_reach_is_refused_with_the_command_and_nothing_made(
        closed_home: tuple[Settings, Path], uri: str, tmp_path: Path) -> None:
    closed, home = closed_home
    roster = tmp_path / "users.csv"
    roster.write_text(HEADER + "alice,Alice,,\n")
    for dry in (["--dry-run"], []):
        out = cli(closed, uri, "--template", "mini", "--class", "c10", "--users", roster, *dry)
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"libvirt-qemu (QEMU) cannot enter {home}," in out.stderr
        assert f"`setfacl -m u:libvirt-qemu:x {home}`" in out.stderr
        assert "--fix-permissions" in out.stderr
        assert "Traceback" not in out.stderr
    assert list(home.iterdir()) == []
    assert qemu_entry(home) == []
    assert not closed.passwords_dir.exists()


def test_fix_permissions_lets_qemu_pass_with_an_acl_then_makes_the_class(
        closed_home: tuple[Settings, Path], uri: str, tmp_path: Path) -> None:
    closed, home = closed_home
    roster = tmp_path / "users.csv"
    roster.write_text(HEADER + "alice,Alice,Secret-pass-1,\n")
    dry = cli(closed, uri, "--template", "mini", "--class", "c11", "--users", roster, "--fix-permissions",
              "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"folders: libvirt-qemu gets search permission (a POSIX ACL) on {home} before" in dry.stdout
    assert qemu_entry(home) == []  # a dry run changes nothing
    out = cli(closed, uri, "--template", "mini", "--class", "c11", "--users", roster, "--fix-permissions")
    assert out.returncode == 0, out.stderr
    assert f"libvirt-qemu may now pass {home} (POSIX ACL)" in out.stderr
    assert qemu_entry(home) == ["user:libvirt-qemu:--x"]
    assert (home.stat().st_mode & 0o707) == 0o700  # no chmod: owner and others as they were
    assert (closed.provision.student_vms_dir / "alice" / "c11-alice" / "disk.qcow2").is_file()
    audit = AuditLog(closed.database_path)
    try:
        granted = [e for e in audit.entries() if e.action == "grant-passage"]
    finally:
        audit.close()
    assert [e.detail for e in granted] == [f"libvirt-qemu may pass {home} (POSIX ACL)"]


def provision_on_a_terminal(settings: Settings, uri: str, answer: bytes,
                            *args: str | Path) -> tuple[int, str]:
    """The CLI's provision with a terminal for stdin, stdout and stderr; ``answer`` typed at its question."""
    return vm_manager_on_a_terminal("-c", uri, "provision", *args, answer=answer, **settings_env(settings))


@pytest.mark.parametrize(("answer", "made"), [(b"n", False), (b"y", True)])
def test_on_a_terminal_provision_asks_to_let_qemu_pass(closed_home: tuple[Settings, Path], uri: str,
                                                        tmp_path: Path, answer: bytes, made: bool) -> None:
    closed, home = closed_home
    roster = tmp_path / "users.csv"
    roster.write_text(HEADER + "alice,Alice,Secret-pass-1,\n")
    code, seen = provision_on_a_terminal(closed, uri, answer, "--template", "mini", "--class", "c12",
                                         "--users", roster)
    assert f"libvirt-qemu (QEMU) cannot enter {home}, on the way to the VMs' files." in seen
    assert f"as `setfacl -m u:libvirt-qemu:x {home}` would? [y/N]" in seen
    assert code == (0 if made else 2), seen
    assert qemu_entry(home) == (["user:libvirt-qemu:--x"] if made else [])
    assert (closed.provision.student_vms_dir / "alice" / "c12-alice").is_dir() is made
