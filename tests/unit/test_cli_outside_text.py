"""Text from outside reaches the operator's terminal only through the one rule (``core.text``).

Every command that prints a VM's name, an owner, a reason, a full name, a user or its own
arguments, run as a process: its output holds no control character but its own line feeds, and
no bidi override; what was there reads escaped. Names in a test-driver file cannot hold C0 (XML
forbids it) but can hold C1 (U+009B is CSI, ESC [, to a terminal) and the bidi controls, as can a
request's reason and an account's full name; the command line and the audit log's user
(``SUDO_USER``) can hold ESC itself.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from support.cli import vm_manager

from core.metadata import LabMeta
from core.model import VMState
from core.records.requests import Kind, RequestStore
from core.settings import Settings
from core.testing import testdriver
from core.testing.testdriver import Spec

SPOOF = "rtl\u202egpj.exe"  # reads "rtlexe.jpg" where the override acts
CSI = "csi\x9b2J"  # clears the screen on a terminal that takes C1 controls
OWNER = "mal\u2066lory"
ESCAPES = "\x1b[2J\x1b]0;PWNED\x07"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""What may not reach the terminal as it is: controls but the line feed, DEL, bidi controls."""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", [
        Spec(SPOOF, VMState.RUNNING, 1, 512, LabMeta(OWNER, "net101")),
        Spec(CSI, VMState.SHUTOFF, 1, 512, LabMeta("bob", "net\x85101")),
    ])


def run(data_dir: Path, *args: str, user: str = "teacher",
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    out = vm_manager(*args, VMM_DATA_DIR=str(data_dir), SUDO_USER=user, stdin=stdin)
    assert "Traceback" not in out.stderr
    return out


def shown(out: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr, once it is certain neither puts a control or a bidi override on screen."""
    for stream in (out.stdout, out.stderr):
        raw = sorted({f"U+{ord(m[0]):04X}" for m in RAW.finditer(stream)})
        assert not raw, f"raw {raw} in {stream!r}"
    return out.stdout + out.stderr


def test_list_shows_names_owners_and_classes_escaped(data_dir: Path, uri: str) -> None:
    out = run(data_dir, "-c", uri, "list")
    assert out.returncode == 0, out.stderr
    text = shown(out)
    assert "rtl\\u202egpj.exe" in text
    assert "csi\\x9b2J" in text
    assert "mal\\u2066lory" in text
    assert "net\\x85101" in text
    assert len(out.stdout.splitlines()) == 3  # the header and one row a VM: U+0085 made no line


def test_list_json_escapes_c1_and_bidi_and_reads_back_exactly(data_dir: Path, uri: str) -> None:
    out = run(data_dir, "-c", uri, "list", "--json")
    assert out.returncode == 0, out.stderr
    shown(out)
    assert "\\u202e" in out.stdout
    assert "\\u009b" in out.stdout
    rows = json.loads(out.stdout)
    assert {(r["name"], r["owner"], r["class"]) for r in rows} == {(SPOOF, OWNER, "net101"),
                                                                   (CSI, "bob", "net\x85101")}


def test_action_reports_name_vms_escaped(data_dir: Path, uri: str) -> None:
    out = run(data_dir, "-c", uri, "start", CSI, SPOOF)
    assert out.returncode == 0, out.stderr
    shown(out)
    assert out.stdout.splitlines() == ["csi\\x9b2J: started", "rtl\\u202egpj.exe: already running"]


def test_no_such_vm_echoes_the_argument_escaped(data_dir: Path, uri: str) -> None:
    out = run(data_dir, "-c", uri, "start", f"ghost{ESCAPES}", "10.1.1.1\nFAKEROW running root")
    assert out.returncode == 1
    shown(out)
    assert out.stderr.splitlines() == ["ghost\\x1b[2J\\x1b]0;PWNED\\x07: no such VM",
                                       "10.1.1.1\\nFAKEROW running root: no such VM"]


def test_argparse_errors_quote_the_command_line_escaped(data_dir: Path, uri: str) -> None:
    out = run(data_dir, "-c", uri, "list", ESCAPES)  # "unrecognized arguments: ..."
    assert out.returncode == 2
    assert "\\x1b[2J" in shown(out)
    out = run(data_dir, "-c", uri, "list", "--json", f"--clas{SPOOF}")
    assert out.returncode == 2
    assert "\\u202e" in shown(out)


def test_audit_shows_users_and_vms_escaped(data_dir: Path, uri: str) -> None:
    assert run(data_dir, "-c", uri, "start", CSI, user=f"op{ESCAPES}").returncode == 0
    out = run(data_dir, "audit")
    assert out.returncode == 0, out.stderr
    assert "op\\x1b[2J\\x1b]0;PWNED\\x07 (cli local)  start csi\\x9b2J  ok" in shown(out)
    out = run(data_dir, "audit", "--json")
    shown(out)
    assert [(e["user"], e["vm"]) for e in json.loads(out.stdout)] == [(f"op{ESCAPES}", CSI)]


def test_requests_show_reasons_and_names_escaped(data_dir: Path, uri: str) -> None:
    store = RequestStore(Settings(data_dir=data_dir).database_path)
    try:
        store.create("alice", Kind.MEMORY, vm_uuid=Spec(SPOOF).domain_uuid, vm_name=SPOOF, amount=2048,
                     reason="for \u202eevil\x9b2J")
    finally:
        store.close()
    out = run(data_dir, "requests")
    assert out.returncode == 0, out.stderr
    text = shown(out)
    assert "2048 MiB of memory for rtl\\u202egpj.exe" in text
    assert "for \\u202eevil\\x9b2J" in text
    out = run(data_dir, "requests", "--json")
    shown(out)
    assert json.loads(out.stdout)[0]["reason"] == "for \u202eevil\x9b2J"


def test_accounts_show_full_names_escaped(data_dir: Path) -> None:
    added = run(data_dir, "user", "add", "carol", "--name", f"Carol {SPOOF}", "--password-stdin",
                stdin="a long enough password\n")
    assert added.returncode == 0, added.stderr
    out = run(data_dir, "user", "list")
    assert "Carol rtl\\u202egpj.exe" in shown(out)
    out = run(data_dir, "user", "list", "--json")
    shown(out)
    assert json.loads(out.stdout)[0]["display_name"] == f"Carol {SPOOF}"
