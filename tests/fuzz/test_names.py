"""Names and sign-in: every name rule accepts exactly its pattern and says why otherwise; any typed
name and password signs in only the account they belong to, else is refused the one way, and the
audit log names only accounts (a password typed as the name stays off the record)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from support.portalweb import PASSWORDS, Student, add_accounts, audit_entries

from core.auth import SigninRefused, authenticate
from core.errors import InvalidInput
from core.names import (
    CLASS_NAME,
    USERNAME,
    VM_NAME,
    check_class_name,
    check_username,
    check_vm_name,
    recorded_username,
)
from core.settings import Settings
from fuzz.conftest import Portal
from fuzz.strategies import SHARED_FIXTURE, hostile_text

names = st.one_of(hostile_text(max_size=4), st.text(max_size=70),
                  st.from_regex(r"[a-z_][a-z0-9_.-]{0,34}", fullmatch=True),
                  st.sampled_from(["alice", "ALICE", " alice ", "alice\n", "alice\x00", "al\u0130ce", "-a",
                                   "a" * 64, "a" * 63, "olga", "bob"]))
passwords = st.one_of(st.sampled_from([*PASSWORDS.values(), "", " ", "x" * 1025]), hostile_text(max_size=3),
                      st.text(max_size=20))


@given(name=names)
def test_each_name_rule_accepts_exactly_its_pattern(name: str) -> None:
    for check, pattern in ((check_vm_name, VM_NAME), (check_username, USERNAME),
                           (check_class_name, CLASS_NAME)):
        try:
            assert check(name) == name
        except InvalidInput as exc:
            assert not pattern.fullmatch(name)
            assert repr(name) in exc.message
        else:
            assert pattern.fullmatch(name)
    assert recorded_username(name) in (name, "?")
    assert recorded_username(name) == "?" or USERNAME.fullmatch(name)


_accounts: dict[str, Settings] = {}


def _settings() -> Settings:
    """One folder with alice, bob and olga for every example (argon2 hashing them takes a while)."""
    if not _accounts:
        folder = Path(tempfile.mkdtemp(prefix="vmm-fuzz-accounts-"))
        _accounts["settings"] = Settings(data_dir=folder, config_dir=folder)
        add_accounts(_accounts["settings"])
    return _accounts["settings"]


@given(name=names, password=passwords)
@example(name=" ALICE ", password=PASSWORDS["alice"])
@example(name="alice", password=PASSWORDS["bob"])
def test_only_the_right_password_signs_in_and_only_its_account(name: str, password: str) -> None:
    try:
        identity = authenticate(_settings(), name, password)
    except SigninRefused as refused:
        assert refused.account in (None, name.strip().lower())
        assert PASSWORDS.get(name.strip().lower()) != password
    else:
        assert PASSWORDS[identity.username] == password
        assert identity.username == name.strip().lower()


@SHARED_FIXTURE
@given(name=names, password=passwords)
@example(name="alice-secret-1", password="x")  # a password typed into the name field
async def test_the_sign_in_form_takes_any_name_and_password(portal: Portal, name: str, password: str) -> None:
    student = Student(portal.server)
    form = (await student.get("/login")).form("/login")
    page = await student.post("/login", {"csrf": form.fields["csrf"], "username": name, "password": password})
    await student.browser.close()
    portal.server.sessions.remove(student.browser)
    right = PASSWORDS.get(name.strip().lower()) == password
    assert page.status in ((303, 429) if right else (401, 429)), page.status  # 429: slowed after failures
    assert {entry.user for entry in audit_entries(portal.server.settings)} <= {*PASSWORDS, "?"}
