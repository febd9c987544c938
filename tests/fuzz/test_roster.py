"""Roster CSV: any file is read as students, or refused as a whole with every bad line named."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from core.names import USERNAME
from core.provision.guests.linux import linux_username_problem
from core.provision.roster import COLUMNS, RosterError, parse_roster, read_roster
from core.text import CONTROL
from fuzz.strategies import hostile_text

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDgs7h3ctcKVWqQqKBGvX+UxCbDsN/+Rtc2ot+voUYgt alice@lab"
OS_FAMILIES = st.sampled_from(["linux", "windows"])

usernames = st.one_of(st.from_regex(r"[a-z_][a-z0-9_.-]{0,31}", fullmatch=True), hostile_text(max_size=4))
full_names = st.one_of(st.text(max_size=30), hostile_text(max_size=4))
passwords = st.one_of(st.just(""), st.text(max_size=20), hostile_text(max_size=4))
keys = st.one_of(st.just(""), st.just(ED25519), st.text(max_size=20),
                 st.builds(lambda k, cut: k[:cut], st.just(ED25519), st.integers(0, len(ED25519))))
rows = st.fixed_dictionaries({"username": usernames, "full_name": full_names, "password": passwords,
                              "ssh_key": keys})


def _csv(header: list[str], records: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[record.get(column, "") for column in header] for record in records])
    return out.getvalue()


def _checked(text: str, os_family: str) -> None:
    """The property: students that satisfy the rules, or a RosterError naming real lines."""
    try:
        students = parse_roster(text, os_family=os_family)
    except RosterError as exc:
        assert exc.problems
        last_line = text.count("\n") + text.count("\r") + 1
        assert all(0 <= line <= last_line for line, _ in exc.problems), exc.problems
        assert exc.message.startswith("roster: ")
        return
    assert students
    assert len({s.username for s in students}) == len(students)
    for student in students:
        assert USERNAME.fullmatch(student.username)
        assert not CONTROL.search(student.full_name)
        assert student.password is None or not CONTROL.search(student.password)
        assert all(key == key.strip() and key for key in student.ssh_keys)


@given(header=st.permutations(COLUMNS).map(list), records=st.lists(rows, max_size=6), os_family=OS_FAMILIES)
def test_a_roster_of_any_rows_is_read_or_refused_whole(header: list[str], records: list[dict[str, str]],
                                                        os_family: str) -> None:
    _checked(_csv(header, records), os_family)


@given(header=st.lists(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=8)), max_size=6),
       records=st.lists(rows, max_size=3), os_family=OS_FAMILIES)
def test_any_header_is_read_or_refused(header: list[str], records: list[dict[str, str]],
                                       os_family: str) -> None:
    _checked(_csv(header, records), os_family)


@given(text=st.one_of(st.text(), hostile_text(max_size=30)), os_family=OS_FAMILIES)
def test_any_text_is_read_or_refused(text: str, os_family: str) -> None:
    _checked("username,full_name,password,ssh_key\n" + text, os_family)
    _checked(text, os_family)


@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda head, tail: head + tail,
                                st.just(b"\xef\xbb\xbfusername,full_name,password,ssh_key\r\n"),
                                st.binary(max_size=200))))
def test_any_bytes_in_a_file_are_read_or_refused(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "roster.csv"
        path.write_bytes(data)
        try:
            students = read_roster(path)
        except RosterError as exc:
            assert exc.problems
            assert exc.source == str(path)
        else:
            assert all(USERNAME.fullmatch(s.username) for s in students)



valid_rows = st.lists(
    st.fixed_dictionaries({
        "username": st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
            lambda name: linux_username_problem(name) is None),  # not root, ntp, a system account
        "full_name": st.text(st.characters(categories=["L"]) | st.just(" "), max_size=20).map(str.strip),
        "password": st.one_of(st.just(""), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                                                   min_size=1, max_size=20)),
        "ssh_key": st.sampled_from(["", ED25519]),
    }), min_size=1, max_size=8, unique_by=lambda row: row["username"])


@given(header=st.permutations(COLUMNS).map(list), records=valid_rows)
def test_valid_rows_come_back_as_they_were_written(header: list[str], records: list[dict[str, str]]) -> None:
    students = parse_roster(_csv(header, records))
    assert [(s.username, s.full_name, s.password or "", "".join(s.ssh_keys)) for s in students] == \
        [(r["username"], r["full_name"], r["password"], r["ssh_key"]) for r in records]
