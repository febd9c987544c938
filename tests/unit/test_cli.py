"""The ``vm-manager`` command, run as a process against test-driver files."""

import json
import subprocess
from pathlib import Path

import pytest
from support.cli import vm_manager, vm_manager_on_a_terminal

from core.metadata import LabMeta
from core.model import VMState
from core.testing import testdriver
from core.testing.testdriver import Spec

STATES = {"running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended", "nostate"}


def run(*args: str, env_file: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return vm_manager(*args, VMM_ENV_FILE=str(env_file or "/nonexistent"), VMM_DATA_DIR="/tmp/vmm-cli-test",
                      **extra)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", [
        Spec("stu-1", VMState.RUNNING, 2, 1024, LabMeta("alice", "net101", "debian12")),
        Spec("stu-2", VMState.SHUTOFF, 1, 512, LabMeta("bob", "net101", "debian12")),
        Spec("[b]bold", VMState.PAUSED),
    ])


def test_list_json_rows(uri: str) -> None:
    out = run("-c", uri, "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {"stu-1", "stu-2", "[b]bold"}
    row = rows["stu-1"]
    for key in ("name", "uuid", "state", "owner", "class", "template", "vcpus", "memory_mib", "ips"):
        assert key in row
    assert (row["state"], row["owner"], row["class"], row["vcpus"], row["memory_mib"]) == (
        "running", "alice", "net101", 2, 1024)
    assert {r["state"] for r in rows.values()} <= STATES


def test_list_table_shows_names_literally(uri: str) -> None:
    out = run("-c", uri, "list")
    assert out.returncode == 0
    assert "[b]bold" in out.stdout
    assert "NAME" in out.stdout


def test_actions_on_glob_and_class(uri: str) -> None:
    out = run("-c", uri, "destroy", "--yes", "stu-*")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["stu-1: destroyed", "stu-2: already shut off"]
    out = run("-c", uri, "start", "--class", "net101")
    assert out.returncode == 0
    assert "stu-2: started" in out.stdout


def test_some_targets_failed_exits_1_with_a_line_each(uri: str) -> None:
    out = run("-c", uri, "reboot", "--yes", "stu-1", "stu-2", "ghost")
    assert out.returncode == 1
    assert "stu-1: rebooting" in out.stdout
    errors = out.stderr.splitlines()
    assert "ghost: no such VM" in errors
    assert any(line.startswith("stu-2: ") and "not running" in line for line in errors)
    assert "Traceback" not in out.stderr


def test_unreachable_hypervisor_exits_2_without_traceback() -> None:
    out = run("-c", "test:///no/such/lab.xml", "list")
    assert out.returncode == 2
    assert "cannot connect to test:///no/such/lab.xml" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_usage_exits_2(uri: str) -> None:
    assert run("-c", uri, "start").returncode == 2  # no target
    assert run("-c", uri, "frobnicate").returncode == 2
    out = run("-c", uri, "halt", "stu-1")  # destructive, no terminal, no --yes
    assert out.returncode == 2
    assert "--yes" in out.stderr


@pytest.mark.parametrize("timeout", ["-5", "0", "nan", "inf", "soon"])
def test_halt_timeout_must_be_a_positive_number(uri: str, timeout: str) -> None:
    out = run("-c", uri, "halt", "--yes", "--timeout", timeout, "stu-1")
    assert out.returncode == 2
    assert "not a positive number of seconds" in out.stderr


def test_an_unwritable_log_file_is_a_clear_error(uri: str) -> None:
    out = run("-c", uri, "list", VMM_LOG_FILE="/proc/no-such-dir/vmm.log")
    assert out.returncode == 2
    assert out.stderr.startswith("vm-manager: cannot write the log file /proc/no-such-dir/vmm.log")
    assert "Traceback" not in out.stderr


def test_assign_refuses_a_hostile_owner(uri: str) -> None:
    out = run("-c", uri, "assign", "stu-1", "--owner", "a)(uid=*")
    assert out.returncode == 2
    assert "invalid username" in out.stderr
    out = run("-c", uri, "assign", "stu-1", "--owner", "carol", "--class", "net102")
    assert out.returncode == 0
    assert "owner carol, class net102" in out.stdout


def test_connect_uri_from_dotenv(uri: str, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"LIBVIRT_DEFAULT_URI={uri}\n")
    out = run("list", "--json", env_file=env)
    assert out.returncode == 0
    assert len(json.loads(out.stdout)) == 3


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("vm-manager ")


def test_list_waits_for_the_addresses_read_at_connect() -> None:
    """Addresses are looked up after the rows are read: a slow guest agent still shows in ``list``."""
    out = run("-c", "test:///default", "list", "--json", VMM_FAILPOINT="slow:ip-lookup")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["ips"] == ["192.168.122.3"]  # what libvirt's test driver gives its running VM


@pytest.mark.parametrize(("answer", "deleted"), [(b"y", False), (b"2", False), (b"net101", True)])
def test_deleting_a_whole_class_on_a_terminal_asks_for_its_name(uri: str, answer: bytes,
                                                                 deleted: bool) -> None:
    code, seen = vm_manager_on_a_terminal("-c", uri, "delete", "--class", "net101", answer=answer,
                                          asked=b"to go ahead:", VMM_DATA_DIR="/tmp/vmm-cli-test")
    assert "type the class's name (net101)" in seen
    assert ("stu-1: deleted" in seen) is deleted
    assert code == (0 if deleted else 1), seen
    if not deleted:
        assert "nothing done" in seen


def test_yes_still_deletes_a_whole_class_from_a_script(uri: str) -> None:
    out = run("-c", uri, "delete", "--class", "net101", "--yes")
    assert out.returncode == 0, out.stderr
    assert "stu-1: deleted" in out.stdout


def test_list_asks_no_address_of_a_vm_nobody_can_tell(tmp_path: Path) -> None:
    """A running VM without an interface or a guest-agent channel has no address to look up: ``list``
    asks nothing for it (an address look-up kills the process: the failpoint), and does not wait."""
    quiet = testdriver.write(tmp_path / "quiet.xml", [
        Spec(f"quiet-{i}", VMState.RUNNING, meta=LabMeta("alice", "net101")) for i in range(3)])
    out = run("-c", quiet, "list", "--json", VMM_FAILPOINT="kill:ip-lookup")
    assert out.returncode == 0, out.stderr
    assert [row["ips"] for row in json.loads(out.stdout)] == [[], [], []]
