"""Local accounts (core.auth.accounts) in a real SQLite file, local sign-in, and ``vm-manager user``."""

from __future__ import annotations

import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from support.cli import CHECKOUT, vm_manager

from core.auth.accounts import MIN_PASSWORD, Account, AccountExists, Accounts
from core.auth.signin import REFUSED, Identity, Role, SigninRefused, authenticate
from core.errors import InvalidInput, NotFound
from core.settings import Settings

# Real argon2id, with small parameters: the default ones take a third of a second per hash here.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
SECRET = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "vm-manager.sqlite3"


@pytest.fixture
def accounts(db: Path) -> Iterator[Accounts]:
    store = Accounts(db, hasher=FAST)
    yield store
    store.close()


def stored_hash(db: Path, username: str) -> str:
    with sqlite3.connect(db) as raw:
        row = raw.execute("SELECT password_hash FROM accounts WHERE username = ?", (username,)).fetchone()
    assert row is not None
    return str(row[0])


def test_add_then_verify(accounts: Accounts) -> None:
    made = accounts.add("alice", SECRET, display_name=" Alice Liddell ", email="alice@example.org")
    assert made.username == "alice"
    assert made.role is Role.STUDENT
    assert made.display_name == "Alice Liddell"
    assert abs(made.created - time.time()) < 60
    assert accounts.verify("alice", SECRET) == made
    assert accounts.get("alice") == made


def test_a_wrong_password_an_unknown_name_and_an_empty_password_verify_to_none(accounts: Accounts) -> None:
    accounts.add("alice", SECRET)
    assert accounts.verify("alice", SECRET + "x") is None
    assert accounts.verify("alice", SECRET.upper()) is None
    assert accounts.verify("alice", "") is None
    assert accounts.verify("bob", SECRET) is None
    assert accounts.verify("Alice", SECRET) is None  # names are exact here; sign-in lowercases
    assert accounts.get("bob") is None


def test_the_database_holds_an_argon2id_hash_never_the_password(accounts: Accounts, db: Path) -> None:
    accounts.add("alice", SECRET)
    digest = stored_hash(db, "alice")
    assert digest.startswith("$argon2id$")
    assert SECRET not in digest
    assert FAST.verify(digest, SECRET)
    for path in db.parent.iterdir():  # the WAL file too
        assert SECRET.encode() not in path.read_bytes()
    assert db.stat().st_mode & 0o077 == 0
    assert digest not in repr(accounts.get("alice"))


def test_a_name_that_exists_is_refused(accounts: Accounts) -> None:
    accounts.add("alice", SECRET, role=Role.OPERATOR)
    with pytest.raises(AccountExists, match="exists already"):
        accounts.add("alice", "another password", role=Role.STUDENT)
    assert issubclass(AccountExists, InvalidInput)
    assert accounts.get("alice").role is Role.OPERATOR  # type: ignore[union-attr]
    assert accounts.verify("alice", SECRET) is not None


@pytest.mark.parametrize("name", ["Alice", "al ice", "", "*", "a)(b", "x\\y", "al\0ice", "-x", "a" * 33])
def test_invalid_names_are_refused(accounts: Accounts, name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid username"):
        accounts.add(name, SECRET)
    assert accounts.list() == []


def test_a_short_password_is_refused(accounts: Accounts) -> None:
    with pytest.raises(InvalidInput, match=f"at least {MIN_PASSWORD}"):
        accounts.add("alice", "x" * (MIN_PASSWORD - 1))
    assert accounts.get("alice") is None
    accounts.add("alice", "x" * MIN_PASSWORD)
    with pytest.raises(InvalidInput, match="too short"):
        accounts.set_password("alice", "short")


@pytest.mark.parametrize(("field", "value"), [("display_name", "Two\nLines"), ("email", "not-an-address"),
                                              ("email", "a@b.c\n")])
def test_bad_display_names_and_emails_are_refused(accounts: Accounts, field: str, value: str) -> None:
    with pytest.raises(InvalidInput):
        accounts.add("alice", SECRET, **{field: value})  # type: ignore[arg-type]
    assert accounts.list() == []


def test_set_password(accounts: Accounts) -> None:
    accounts.add("alice", SECRET)
    accounts.set_password("alice", "a new secret")
    assert accounts.verify("alice", SECRET) is None
    assert accounts.verify("alice", "a new secret") is not None
    with pytest.raises(NotFound, match="no local account 'bob'"):
        accounts.set_password("bob", "a new secret")


def test_delete(accounts: Accounts) -> None:
    accounts.add("alice", SECRET)
    accounts.add("bob", SECRET)
    accounts.delete("alice")
    assert accounts.get("alice") is None
    assert accounts.verify("alice", SECRET) is None
    assert [a.username for a in accounts.list()] == ["bob"]
    with pytest.raises(NotFound):
        accounts.delete("alice")


def test_list_is_sorted_and_survives_reopening(accounts: Accounts, db: Path) -> None:
    accounts.add("carol", SECRET, role=Role.OPERATOR, email="carol@example.org")
    accounts.add("alice", SECRET)
    accounts.close()
    again = Accounts(db, hasher=FAST)
    try:
        listed = again.list()
        assert [a.username for a in listed] == ["alice", "carol"]
        assert listed[1].role is Role.OPERATOR
        assert listed[1].email == "carol@example.org"
        assert listed[0].email is None
        assert all(isinstance(a, Account) for a in listed)
    finally:
        again.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT version FROM schema_versions WHERE store = 'accounts'").fetchone() == (1,)


def test_a_hash_with_old_parameters_is_upgraded_on_the_next_good_password(db: Path) -> None:
    old = Accounts(db, hasher=FAST)
    old.add("alice", SECRET)
    old.close()
    before = stored_hash(db, "alice")
    assert "m=1024" in before
    newer = Accounts(db, hasher=PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    try:
        assert newer.verify("alice", "wrong password") is None
        assert stored_hash(db, "alice") == before  # a wrong password changes nothing
        assert newer.verify("alice", SECRET) is not None
        after = stored_hash(db, "alice")
        assert after != before
        assert "m=2048,t=2" in after
        assert newer.verify("alice", SECRET) is not None
    finally:
        newer.close()


# -- sign-in with local accounts (no LDAP) --
@pytest.fixture
def lab(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config")
    store = Accounts(settings.database_path)  # the default parameters, as authenticate uses them
    store.add("root", SECRET, role=Role.OPERATOR, display_name="Break Glass", email="root@example.org")
    store.add("alice", "alice password")
    store.close()
    return settings


def test_a_local_operator_signs_in(lab: Settings) -> None:
    assert authenticate(lab, "root", SECRET) == Identity("root", Role.OPERATOR, "Break Glass",
                                                         "root@example.org", "local")
    assert authenticate(lab, "alice", "alice password").role is Role.STUDENT


def test_the_identity_is_the_account_name_not_what_was_typed(lab: Settings) -> None:
    assert authenticate(lab, "  ALICE ", "alice password").username == "alice"


@pytest.mark.parametrize(("name", "password"), [
    ("alice", "wrong password"),
    ("nobody", "alice password"),
    ("alice", ""),
    ("", "alice password"),
    ("al*", "alice password"),
    ("alice\0", "alice password"),
])
def test_refusals_all_say_the_same(lab: Settings, name: str, password: str) -> None:
    with pytest.raises(SigninRefused) as info:
        authenticate(lab, name, password)
    assert info.value.message == REFUSED
    assert info.value.title == "Sign-in refused"


def test_without_ldap_or_a_database_everyone_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "empty")
    with pytest.raises(SigninRefused):
        authenticate(settings, "alice", "alice password")
    assert not settings.database_path.exists()  # a sign-in never makes the file


def test_an_unknown_name_costs_one_argon2_check_like_a_wrong_password(
        lab: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing is not asserted (a loaded machine); the work is: argon2 runs once either way."""
    from argon2 import PasswordHasher

    checked: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, digest: str | bytes, password: str | bytes) -> bool:
        checked.append(str(digest).split("$")[1])
        return real(self, digest, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    for name in ("alice", "nobody"):
        checked.clear()
        with pytest.raises(SigninRefused):
            authenticate(lab, name, "wrong password")
        assert checked == ["argon2id"], name


def test_password_values_stay_out_of_the_log(lab: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    authenticate(lab, "root", SECRET)
    with pytest.raises(SigninRefused):
        authenticate(lab, "alice", "Wr0ng-but-secret")
    assert "sign-in: root (local, operator)" in caplog.text
    assert "sign-in refused for 'alice'" in caplog.text
    assert SECRET not in caplog.text
    assert "Wr0ng-but-secret" not in caplog.text


# -- vm-manager user ... (tui.cli.users, run as a process) --
def user_cmd(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``vm-manager user ARGS``, in a process of its own."""
    return vm_manager("user", *args, stdin=stdin, VMM_DATA_DIR=str(data))


def test_cli_add_list_passwd_del(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = user_cmd(data, "list")
    assert (out.returncode, out.stdout) == (0, "no local accounts: add one with `vm-manager user add NAME`\n")
    assert not (data / "vm-manager.sqlite3").exists()

    out = user_cmd(data, "add", "root", "--operator", "--name", "Break Glass", "--email", "root@example.org",
                   "--password-stdin", stdin=SECRET + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "root: local operator account added\n"
    assert user_cmd(data, "add", "alice", "--password-stdin", stdin="alice password\n").returncode == 0

    out = user_cmd(data, "list", "--json")
    assert out.returncode == 0
    import json

    rows = json.loads(out.stdout)
    assert [(r["username"], r["role"], r["display_name"], r["email"]) for r in rows] == [
        ("alice", "student", "", None), ("root", "operator", "Break Glass", "root@example.org")]
    assert "T" in rows[0]["created"]
    table = user_cmd(data, "list").stdout.splitlines()
    assert table[0].split() == ["USERNAME", "ROLE", "NAME", "EMAIL", "CREATED"]
    assert table[2].startswith("root ")
    assert "Break Glass" in table[2]

    settings = Settings(data_dir=data)
    assert authenticate(settings, "root", SECRET).role is Role.OPERATOR

    out = user_cmd(data, "passwd", "root", "--password-stdin", stdin="brand new secret\r\n")
    assert (out.returncode, out.stdout) == (0, "root: password changed\n")
    with pytest.raises(SigninRefused):
        authenticate(settings, "root", SECRET)
    assert authenticate(settings, "root", "brand new secret").username == "root"

    out = user_cmd(data, "del", "root")  # not a terminal: --yes is needed
    assert out.returncode == 2
    assert "--yes" in out.stderr
    out = user_cmd(data, "del", "root", "--yes")
    assert (out.returncode, out.stdout) == (0, "root: deleted\n")
    assert [r["username"] for r in json.loads(user_cmd(data, "list", "--json").stdout)] == ["alice"]
    for path in data.iterdir():
        assert SECRET.encode() not in path.read_bytes()


@pytest.mark.parametrize(("args", "stdin", "code", "message"), [
    (("add", "alice", "--password-stdin"), "alice password\n", 1, "exists already"),
    (("passwd", "ghost", "--password-stdin"), "alice password\n", 1, "no local account 'ghost'"),
    (("del", "ghost", "--yes"), None, 1, "no local account 'ghost'"),
    (("add", "bob", "--password-stdin"), "short\n", 2, "too short"),
    (("add", "bob", "--password-stdin"), "\n", 2, "no password on stdin"),
    (("add", "Bob*", "--password-stdin"), "bob password\n", 2, "invalid username 'Bob*'"),
    (("add", "bob", "--email", "nope", "--password-stdin"), "bob password\n", 2, "invalid email"),
    (("add", "bob"), None, 2, "--password-stdin"),
])
def test_cli_errors(tmp_path: Path, args: tuple[str, ...], stdin: str | None, code: int,
                    message: str) -> None:
    data = tmp_path / "data"
    assert user_cmd(data, "add", "alice", "--password-stdin", stdin="alice password\n").returncode == 0
    out = user_cmd(data, *args, stdin=stdin)
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
    rows = user_cmd(data, "list", "--json").stdout
    assert '"bob"' not in rows


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    out = user_cmd(tmp_path / "data", "frobnicate")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


PROMPTS = (b"Password for ", b"Again: ", b"[y/N] ")


def on_a_terminal(data: Path, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run ``user ARGS`` on a pseudo-terminal, typing each answer after a prompt; (exit code, screen)."""
    primary, secondary = pty.openpty()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "VMM_ENV_FILE": "/nonexistent", "VMM_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "user", *args], stdin=secondary,
                            stdout=secondary, stderr=secondary, env=env, cwd=CHECKOUT, start_new_session=True)
    os.close(secondary)
    screen = b""
    pending = list(answers)
    answered = 0
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
                # Answer each prompt once it is shown (getpass has turned echo off by then).
                while pending and answered < sum(screen.count(p) for p in PROMPTS):
                    os.write(primary, pending.pop(0).encode() + b"\n")
                    answered += 1
            elif proc.poll() is not None:
                break
        return proc.wait(10), screen.decode(errors="replace")
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_asks_the_password_twice_without_echo(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, screen = on_a_terminal(data, ["add", "dave"], ["dave password", "dave pa55word"])
    assert code == 2, screen
    assert "Password for dave:" in screen
    assert "differ" in screen
    assert "dave pa" not in screen
    code, screen = on_a_terminal(data, ["add", "dave"], ["dave password", "dave password"])
    assert code == 0, screen
    assert "dave: local student account added" in screen
    assert "dave password" not in screen
    assert authenticate(Settings(data_dir=data), "dave", "dave password").username == "dave"
    code, screen = on_a_terminal(data, ["del", "dave"], ["n"])
    assert code == 1, screen
    assert "nothing done" in screen
    code, screen = on_a_terminal(data, ["del", "dave"], ["y"])
    assert code == 0, screen
