"""Who is in a class, from a CSV roster: one student a row, checked as a whole before anything is made.

The header names the columns (any order, any case)::

    username,full_name,password,ssh_key

A blank password means "generate one later"; ``ssh_key`` holds at most one public key. Rows whose
every field is blank (a spreadsheet's empty rows) are skipped. A file with any bad line is refused
as a whole, and the error lists every bad line by its physical line number (the header is line 1).
Names are checked against the rules of the system the VMs run (``os_family``): what useradd takes
as a Linux full name, what Windows takes as a local account.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import io
import re
from pathlib import Path

from core.errors import InvalidInput
from core.model import Student
from core.names import check_username
from core.provision.guests.linux import gecos_problem, linux_username_problem
from core.provision.guests.windows import windows_full_name_problem, windows_username_problem
from core.provision.passwords import windows_password_problem
from core.text import CONTROL, count

COLUMNS = ("username", "full_name", "password", "ssh_key")
MAX_BYTES = 1024 * 1024
"""A roster is a short text file; anything bigger is the wrong file (a disk image, a log)."""
_SHOWN = 50
"""Problems spelled out in the message; ``RosterError.problems`` always has them all."""

_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_SSH_KEY = re.compile(r"(?P<type>[a-z0-9@.-]+) (?P<body>AAAA[A-Za-z0-9+/]+={0,2})(?: [^\x00-\x1f\x7f]*)?")


class RosterError(InvalidInput):
    """A roster refused as a whole; ``problems`` is every ``(line, problem)``, line 0 the whole file."""

    title = "Invalid roster"

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        lines = [f"line {n}: {p}" if n else p for n, p in problems[:_SHOWN]]
        if len(problems) > _SHOWN:
            lines.append(f"... and {len(problems) - _SHOWN} more")
        listed = "\n".join(f"  {line}" for line in lines)
        super().__init__(f"{source}: {count(len(problems), 'problem')}:\n{listed}")
        self.source = source
        self.problems = problems


def read_roster(path: Path, *, os_family: str = "linux") -> list[Student]:
    """The students of a UTF-8 CSV file (a BOM is fine); RosterError lists every bad line."""
    source = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RosterError(source, [(0, f"cannot read the file ({exc.strerror or exc})")]) from None
    if len(data) > MAX_BYTES:
        raise RosterError(source, [(0, f"larger than {MAX_BYTES // 1024} KiB: not a roster")])
    text, undecodable = _decode(data)
    return _parse(text, os_family, source, undecodable)


def _decode(data: bytes) -> tuple[str, dict[int, str]]:
    """The text of ``data`` (a UTF-8 BOM dropped), and why each line that is not UTF-8 is not.

    Line by line, so that every bad line is named rather than the first; a bad line's stray bytes
    become U+FFFD so the lines around it are still read and checked. ``bytes.splitlines`` ends
    lines where the CSV reader does (``\n``, ``\r``, ``\r\n``), so the numbers agree.
    """
    parts: list[str] = []
    undecodable: dict[int, str] = {}
    for number, line in enumerate(data.removeprefix(codecs.BOM_UTF8).splitlines(keepends=True), 1):
        try:
            parts.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            undecodable[number] = (f"not UTF-8 text (byte 0x{line[exc.start]:02x}); "
                                   "save the file as CSV UTF-8")
            parts.append(line.decode("utf-8", errors="replace"))
    return "".join(parts), undecodable


def parse_roster(text: str, *, os_family: str = "linux", source: str = "roster") -> list[Student]:
    """The students of CSV ``text``; ``source`` names it in the error."""
    return _parse(text, os_family, source, {})


def _parse(text: str, os_family: str, source: str, undecodable: dict[int, str]) -> list[Student]:
    """``undecodable``: lines that were not UTF-8; their only problem shown is that one (what
    else seems wrong there comes from the bytes that could not be read)."""
    problems: list[tuple[int, str]] = []
    students: list[Student] = []
    seen: dict[str, int] = {}
    header: list[str] | None = None
    for line, row in _rows(text.removeprefix("\ufeff"), problems):
        if header is None:
            header, bad = _header(row, line)
            problems += bad
            if bad:
                break  # the rows can't be read without a header
            continue
        if len(row) != len(header):
            problems.append((line, f"{len(row)} fields, but the header has {len(header)}"))
            continue
        student = _student(dict(zip(header, row, strict=True)), line, os_family, problems)
        if student is None:
            continue
        if student.username in seen:
            problems.append((line, f"username {student.username!r} is already on line "
                                   f"{seen[student.username]}"))
            continue
        seen[student.username] = line
        students.append(student)
    problems = [p for p in problems if p[0] not in undecodable] + sorted(undecodable.items())
    if header is None:
        problems.append((0, "the file is empty; the first line must be the header " + ",".join(COLUMNS)))
    elif not students and not problems:
        problems.append((0, "no students: the roster has a header but no rows"))
    if problems:
        raise RosterError(source, sorted(problems, key=lambda p: p[0]))
    return students


def _rows(text: str, problems: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """Every non-blank record with the physical line it starts on; bad quoting becomes a problem."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            problems.append((start, f"bad CSV quoting ({exc})"))
            continue
        if any(field.strip() for field in row):
            rows.append((start, row))


def _header(row: list[str], line: int) -> tuple[list[str], list[tuple[int, str]]]:
    problems: list[tuple[int, str]] = []
    names = [name.strip().lower() for name in row]
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in COLUMNS if name not in names]
    doubled = sorted({name for name in names if names.count(name) > 1})
    expected = f"the header must be {','.join(COLUMNS)} (in any order)"
    if unknown:
        problems.append((line, f"unknown column(s) {', '.join(map(repr, unknown))}; {expected}"))
    if missing:
        problems.append((line, f"missing column(s) {', '.join(missing)}; {expected}"))
    if doubled:
        problems.append((line, f"column(s) {', '.join(doubled)} given twice"))
    return names, problems


def _student(fields: dict[str, str], line: int, os_family: str,
             problems: list[tuple[int, str]]) -> Student | None:
    found: list[str] = []
    username = fields["username"].strip()
    if not username:
        found.append("blank username")
    else:
        try:
            check_username(username)
        except InvalidInput as exc:
            found.append(exc.message)
        else:
            rule = windows_username_problem if os_family == "windows" else linux_username_problem
            if problem := rule(username):
                found.append(problem)
    full_name = fields["full_name"].strip()
    if problem := (windows_full_name_problem if os_family == "windows" else gecos_problem)(full_name):
        found.append(problem)
    typed = fields["password"]
    password: str | None = typed if typed.strip() else None  # blank: generated when the VM is made
    if password is None:
        pass
    elif CONTROL.search(password):
        found.append("the password contains a line break or another control character")
    elif password != password.strip():
        found.append("the password starts or ends with a space")
    elif os_family == "windows" and (problem := windows_password_problem(password)):
        found.append(problem)
    key = fields["ssh_key"].strip()
    if key and (problem := ssh_key_problem(key)):
        found.append(problem)
    problems.extend((line, problem) for problem in found)
    if found:
        return None
    return Student(username, full_name, password, (key,) if key else ())


def ssh_key_problem(key: str) -> str | None:
    """Why ``key`` is not one OpenSSH public key line (``type base64 [comment]``), or None."""
    match = _SSH_KEY.fullmatch(key)
    if match is None:
        return f"not an SSH public key (expected '{_KEY_TYPES[0]} AAAA... comment'): {key[:40]!r}"
    kind = match["type"]
    if kind not in _KEY_TYPES:
        return f"unsupported SSH key type {kind!r} (use one of {', '.join(_KEY_TYPES)})"
    try:
        blob = base64.b64decode(match["body"], validate=True)
    except (binascii.Error, ValueError):
        return "the SSH key's base64 body is damaged"
    # The body starts with its own type, length-prefixed: a key pasted under the wrong type, or cut
    # short, shows here.
    if blob[4:4 + len(kind)] != kind.encode() or int.from_bytes(blob[:4], "big") != len(kind):
        return f"the SSH key's body is not a {kind} key"
    return None
