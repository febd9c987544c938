"""CSV rosters: good files read, bad files refused as a whole with every bad line's number."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.model import Student
from core.provision.roster import RosterError, parse_roster, read_roster, ssh_key_problem

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDgs7h3ctcKVWqQqKBGvX+UxCbDsN/+Rtc2ot+voUYgt alice@lab"
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAjq7+w38oAe7dyyaKDD"
         "HHWZuHPsK4ni6Z2k3furHh9nXMJitUCzqpUyH5EeV/OZ7yIefeZSE/bhmIp4czOgbIw=")
HEADER = "username,full_name,password,ssh_key\n"


def problems(text: str, **kwargs: str) -> list[tuple[int, str]]:
    with pytest.raises(RosterError) as info:
        parse_roster(text, **kwargs)
    return info.value.problems


def lines(text: str, **kwargs: str) -> list[int]:
    return [line for line, _ in problems(text, **kwargs)]


def test_a_good_roster() -> None:
    text = (HEADER
            + "alice,Alice Liddell,,\n"
            + f'bob,"Bob, the Builder",S3cret-pass,{ED25519}\n'
            + f"carol,  Carol  ,, {ECDSA} \n")
    assert parse_roster(text) == [
        Student("alice", "Alice Liddell"),
        Student("bob", "Bob, the Builder", "S3cret-pass", (ED25519,)),
        Student("carol", "Carol", None, (ECDSA,)),
    ]


def test_columns_in_any_order_and_case_crlf_and_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "class.csv"
    path.write_bytes(b"SSH_Key, Password ,username,full_name\r\n\r\n,,,\r\n,,alice,Alice\r\n")
    assert read_roster(path) == [Student("alice", "Alice")]


def test_a_utf8_bom_and_non_ascii_names(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff".encode() + (HEADER + "zoe,Zoé Ñúñez-Łukasz,,\n").encode())
    assert read_roster(path) == [Student("zoe", "Zoé Ñúñez-Łukasz")]


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "alice,Alice,,\nzoe,Zoé,,\n").encode("latin-1"))
    with pytest.raises(RosterError) as info:
        read_roster(path)
    assert info.value.problems[0][0] == 3
    assert "UTF-8" in info.value.message
    assert str(path) in info.value.message


def test_a_missing_file_a_huge_file_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="cannot read"):
        read_roster(tmp_path / "nope.csv")
    huge = tmp_path / "disk.img"
    huge.write_bytes(b"\0" * (1024 * 1024 + 1))
    with pytest.raises(RosterError, match="not a roster"):
        read_roster(huge)
    assert "empty" in problems("")[0][1]
    assert "empty" in problems("\n \n")[0][1]
    assert "no students" in problems(HEADER + ",,,\n")[0][1]


def test_the_error_is_invalid_input_and_lists_every_line() -> None:
    text = HEADER + "alice,,,\nBad Name,,,\nbob,,,\n,Nobody,,\nalice,Again,,\n"
    with pytest.raises(InvalidInput) as info:
        parse_roster(text, source="info1.csv")
    error = info.value
    assert isinstance(error, RosterError)
    assert [line for line, _ in error.problems] == [3, 5, 6]
    assert error.message.startswith("info1.csv: 3 problems:")
    assert "line 3: invalid username 'Bad Name'" in error.message
    assert "line 5: blank username" in error.message
    assert "line 6: username 'alice' is already on line 2" in error.message


@pytest.mark.parametrize("header", [
    "username,full_name,password\n",
    "username,full_name,password,ssh_key,email\n",
    "user,full_name,password,ssh_key\n",
    "username,full_name,password,ssh_key,username\n",
    "username,full_name,,password,ssh_key\n",
])
def test_a_bad_header_refuses_the_file(header: str) -> None:
    found = problems(header + "alice,Alice,,\n")
    assert {line for line, _ in found} == {1}
    assert "username,full_name,password,ssh_key" in found[0][1] or "twice" in found[0][1]


def test_a_header_after_blank_lines_keeps_physical_line_numbers() -> None:
    assert lines("\n\n" + HEADER + "alice,,,\nBAD,,,\n") == [5]


def test_wrong_field_counts() -> None:
    found = problems(HEADER + "alice,Alice,\nbob,Bob,,,\ncarol,,,\n")
    assert found == [(2, "3 fields, but the header has 4"), (3, "5 fields, but the header has 4")]


def test_a_quoted_newline_counts_physical_lines() -> None:
    text = HEADER + 'alice,"Alice\nLiddell",,\nbob,,,\nBAD,,,\n'
    found = problems(text)
    assert [line for line, _ in found] == [2, 5]
    assert "full name" in found[0][1]


def test_bad_quoting_is_reported_and_the_rest_still_checked() -> None:
    assert lines(HEADER + 'alice,"Al"ice,,\nbob,,,\nBAD,,,\n') == [2, 4]
    assert lines(HEADER + 'alice,,,\nbob,"unterminated,,\n') == [3]


@pytest.mark.parametrize("username", [
    "../x", "a/b", '"quoted"', "<b>", "*)(uid=*", "alice bob", "Alice", "-rf", "a" * 33, "al;ce",
    "ali\\ce", "$(reboot)", "\u0430lice",  # a Cyrillic 'а'
])
def test_hostile_usernames_are_refused(username: str) -> None:
    field = '"' + username.replace('"', '""') + '"'
    found = problems(HEADER + f"ok,,,\n{field},,,\n")
    assert [line for line, _ in found] == [3]
    assert "invalid username" in found[0][1]


def test_a_username_with_surrounding_spaces_is_trimmed() -> None:
    assert parse_roster(HEADER + "  alice ,,,\n") == [Student("alice")]


@pytest.mark.parametrize("field", ["full_name", "password"])
@pytest.mark.parametrize("bad", ["a\nb", "a\0b", "a\rb", "a\x1bb"])
def test_control_characters_in_names_and_passwords(field: str, bad: str) -> None:
    row = {"username": "alice", "full_name": "", "password": "", "ssh_key": ""}
    row[field] = '"' + bad + '"'
    found = problems(HEADER + ",".join(row.values()) + "\n")
    assert found[0][0] == 2
    assert "control character" in found[0][1]


def test_password_with_surrounding_spaces_is_refused_blank_is_none() -> None:
    assert "space" in problems(HEADER + "alice,, secret,\n")[0][1]
    assert parse_roster(HEADER + "alice,,   ,\n") == [Student("alice")]


def test_hostile_but_printable_values_are_kept_verbatim() -> None:
    text = HEADER + 'alice,"<b>O\'Brien</b> ""*)(uid=*""",p@ss;w"o"rd\\,\n'
    assert parse_roster(text) == [Student("alice", '<b>O\'Brien</b> "*)(uid=*"', 'p@ss;w"o"rd\\')]


def test_the_windows_password_rule_only_for_windows() -> None:
    text = HEADER + "alice,,short,\nbob,,Str0ngPass,\ncarol,,,\ndave,,alllowercase1,\n"
    assert [s.password for s in parse_roster(text)] == ["short", "Str0ngPass", None, "alllowercase1"]
    found = problems(text, os_family="windows")
    assert [line for line, _ in found] == [2, 5]
    assert all("Windows password" in problem for _, problem in found)


@pytest.mark.parametrize("key", [
    "not a key",
    "ssh-ed25519",
    "ssh-ed25519 ",
    "AAAAC3NzaC1lZDI1NTE5AAAAIDgs7h3ctcKVWqQqKBGvX+UxCbDsN/+Rtc2ot+voUYgt",
    "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDgs7h3ctcKVWqQqKBGvX+UxCbDsN/+Rtc2ot+voUYg",  # cut short
    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDgs7h3ctcKVWqQqKBGvX+UxCbDsN/+Rtc2ot+voUYgt",  # wrong type
    'from="10.0.0.1" ' + ED25519,
    ED25519 + " ; " + ECDSA.replace(" ", "\x00"),
    "-----BEGIN OPENSSH PRIVATE KEY-----",
])
def test_bad_ssh_keys(key: str) -> None:
    assert ssh_key_problem(key) is not None
    field = '"' + key.replace('"', '""') + '"'
    found = problems(HEADER + f"alice,,,{field}\n")
    assert [line for line, _ in found] == [2]


def test_good_ssh_keys() -> None:
    assert ssh_key_problem(ED25519) is None
    assert ssh_key_problem(ECDSA) is None
    assert ssh_key_problem(ED25519.rsplit(" ", 1)[0]) is None  # no comment


def test_several_problems_on_one_line_and_many_lines() -> None:
    found = problems(HEADER + '"a b","x\ny",,nokey\n', os_family="windows")
    assert [line for line, _ in found] == [2, 2, 2]
    text = HEADER + "".join(f"BAD{i},,,\n" for i in range(60))
    with pytest.raises(RosterError) as info:
        parse_roster(text)
    assert len(info.value.problems) == 60
    assert "... and 10 more" in info.value.message


def test_a_full_name_useradd_refuses_is_refused_for_linux_only() -> None:
    text = HEADER + "alice,Alice,,\njean,Dupont: Jean,,\nbob,\"Bob, the Builder\",,\n"
    found = problems(text)
    assert [line for line, _ in found] == [3]
    assert "':'" in found[0][1]
    assert "full name" in found[0][1]
    assert [s.full_name for s in parse_roster(text, os_family="windows")] == [
        "Alice", "Dupont: Jean", "Bob, the Builder"]  # a Windows display name may hold ':'


def test_windows_account_rules_are_the_rosters() -> None:
    long_name = "E" * 257
    text = (HEADER + "alice,Alice,,\nguest,,,\nadministrator,,,\n" + "a" * 21 + ",,,\n"
            + f"bob,{long_name},,\nusers,,,\nalice.,,,\ncarol,Carol,,\n")
    # For Linux only "users" is wrong (a group of the guest's: useradd refuses it).
    assert [line for line, _ in problems(text)] == [7]
    found = problems(text, os_family="windows")
    assert [line for line, _ in found] == [3, 4, 5, 6, 7, 8]
    assert "built-in" in found[0][1]
    assert "built-in" in found[1][1]
    assert "at most 20" in found[2][1]
    assert "full name too long" in found[3][1]
    assert "built-in" in found[4][1]
    assert "not ending with '.'" in found[5][1]


def test_every_line_not_utf8_is_named_with_the_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(HEADER.encode() + b"alice,Al\xe9xia,,\n" + b"b\xf6b,Bob,,\n" + b"Bad Name,,,\n"
                     + b"carol,Carol,,\r\n" + b"dave,D\xe4ve,,\r\n")
    with pytest.raises(RosterError) as info:
        read_roster(path)
    found = info.value.problems
    assert [line for line, _ in found] == [2, 3, 4, 6]
    assert "not UTF-8" in found[0][1] and "0xe9" in found[0][1]  # noqa: PT018
    assert "not UTF-8" in found[1][1] and "0xf6" in found[1][1]  # noqa: PT018 (and no "invalid username")
    assert "invalid username 'Bad Name'" in found[2][1]
    assert "not UTF-8" in found[3][1] and "0xe4" in found[3][1]  # noqa: PT018


def test_linux_system_accounts_and_groups_are_not_students() -> None:
    """cloud-init would give an existing account the student's password and keys: root's, say."""
    text = HEADER + "alice,,,\nroot,,,\nsudo,,,\nsystemd-network,,,\nwww-data,,,\nbob,,,\n"
    found = problems(text)
    assert [line for line, _ in found] == [3, 4, 5, 6]
    assert all("system account or group of the guest" in problem for _, problem in found)
    assert [s.username for s in parse_roster(text, os_family="windows")] == [
        "alice", "root", "sudo", "systemd-network", "www-data", "bob"]  # names Windows does not have
