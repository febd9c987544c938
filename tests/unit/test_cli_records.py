"""``vm-manager audit`` and ``vm-manager requests``, run as processes against a test-driver file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.cli import vm_manager

from core.metadata import LabMeta
from core.model import VMState
from core.records.requests import Kind, RequestStore, Status
from core.settings import Settings
from core.testing import testdriver
from core.testing.testdriver import Spec


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", [
        Spec("stu-1", VMState.SHUTOFF, 2, 1024, LabMeta("alice", "net101")),
        Spec("stu-2", VMState.RUNNING, 1, 512, LabMeta("bob", "net101")),
    ])


def run(data_dir: Path, *args: str, user: str = "teacher") -> subprocess.CompletedProcess[str]:
    return vm_manager(*args, VMM_DATA_DIR=str(data_dir), SUDO_USER=user)


def test_cli_actions_are_in_the_audit_log_and_filtered(data_dir: Path, uri: str) -> None:
    assert run(data_dir, "-c", uri, "start", "stu-1").returncode == 0
    suspended = run(data_dir, "-c", uri, "suspend", "stu-1", "stu-2", user="other")
    assert suspended.returncode == 1  # stu-1 is off in this process's copy of the file
    out = run(data_dir, "audit", "--json")
    assert out.returncode == 0, out.stderr
    rows = [(r["user"], r["source"], r["action"], r["vm"], r["outcome"]) for r in json.loads(out.stdout)]
    # each run of the CLI sees the file as it is on disk (the test driver keeps no state between processes)
    assert rows == [("teacher", "cli", "start", "stu-1", "ok"),
                    ("other", "cli", "suspend", "stu-1", "failed"),
                    ("other", "cli", "suspend", "stu-2", "ok")]
    by_user = run(data_dir, "audit", "--user", "teacher")
    assert by_user.stdout.count("\n") == 1
    assert "teacher (cli local)  start stu-1  ok" in by_user.stdout
    by_vm = json.loads(run(data_dir, "audit", "--vm", "stu-2", "--json").stdout)
    assert [r["action"] for r in by_vm] == ["suspend"]
    assert json.loads(run(data_dir, "audit", "--since", "1h", "--json").stdout) != []
    assert json.loads(run(data_dir, "audit", "--since", "2999-01-01", "--json").stdout) == []
    bad = run(data_dir, "audit", "--since", "yesterday")
    assert bad.returncode == 2
    assert "neither a duration" in bad.stderr


def test_collapsed_repeats_show_their_count(data_dir: Path) -> None:
    from core.records.audit import Actor, AuditLog

    log = AuditLog(data_dir / "vm-manager.sqlite3")
    for _ in range(3):
        log.record(Actor("?", "web", "203.0.113.5"), "signin", outcome="refused",
                   detail="too many failed sign-ins", collapse=True)
    log.close()
    line = run(data_dir, "audit").stdout.strip()
    assert "signin  refused  too many failed sign-ins  ×3 until " in line
    [entry] = json.loads(run(data_dir, "audit", "--json").stdout)
    assert entry["repeats"] == 3
    assert entry["last"] is not None


def test_requests_are_listed_and_answered_once(data_dir: Path, uri: str) -> None:
    store = RequestStore(Settings(data_dir=data_dir).database_path)
    try:
        vm_uuid = testdriver.Spec("stu-1").domain_uuid
        asked = store.create("alice", Kind.MEMORY, vm_uuid=vm_uuid, vm_name="stu-1", amount=2048,
                             reason="a database")
        other = store.create("bob", Kind.NEW_VM, reason="a router")
        listed = run(data_dir, "requests")
        assert listed.returncode == 0
        assert f"#{asked.id}  pending   alice  2048 MiB of memory for stu-1" in listed.stdout
        no_word = run(data_dir, "-c", uri, "requests", "reject", str(other.id))
        assert no_word.returncode == 2  # a rejection needs a word
        assert store.get(other.id).status is Status.PENDING  # type: ignore[union-attr]
        rejected = run(data_dir, "-c", uri, "requests", "reject", str(other.id), "--word", "not now")
        assert rejected.returncode == 0, rejected.stderr
        approved = run(data_dir, "-c", uri, "requests", "approve", str(asked.id))
        assert approved.returncode == 0, approved.stderr
        assert "approved: 2048 MiB of memory for stu-1 for alice" in approved.stdout
        again = run(data_dir, "-c", uri, "requests", "approve", str(asked.id))
        assert again.returncode == 1
        assert "approved already" in again.stderr
        assert (store.get(asked.id).status, store.get(asked.id).answered_by) == (  # type: ignore[union-attr]
            Status.APPROVED, "teacher")
        assert store.get(other.id).answer == "not now"  # type: ignore[union-attr]
        every = json.loads(run(data_dir, "requests", "--all", "--json").stdout)
        assert {(r["id"], r["status"]) for r in every} == {(asked.id, "approved"), (other.id, "rejected")}
        assert run(data_dir, "requests").stderr.strip() == "no pending requests"
        audit = [(r["action"], r["vm"]) for r in json.loads(run(data_dir, "audit", "--json").stdout)]
        assert audit == [("request-reject", ""), ("request-memory", "stu-1"), ("request-approve", "stu-1")]
    finally:
        store.close()
