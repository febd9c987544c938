"""Who is in a class, from the directory: the members of an LDAP group, as roster Students.

A group is a ``groupOfNames``/``groupOfUniqueNames`` (``member``/``uniqueMember`` DNs) or a
``posixGroup`` (``memberUid``, looked up under ``LDAP_BASE_DN``). Every member must have one ``uid``
that is a valid username: a group with a bad member is refused, with every problem listed, never
trimmed silently. Connections (TLS checked against LDAP_CA_FILE) are made in :mod:`core.auth.ldap`.
"""

from __future__ import annotations

import re
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPNoSuchObjectResult
from ldap3.utils.conv import escape_filter_chars

from core.auth import ldap as ldapconn
from core.auth.ldap import check_dn, required, values
from core.errors import InvalidInput, NotFound
from core.model import Student
from core.names import check_username
from core.settings import Settings
from core.text import CONTROL

_GROUP_CLASSES = {"groupofnames", "groupofuniquenames", "posixgroup"}
_UNIQUE_MEMBER_UID = re.compile(r"#'[01]*'B$")  # uniqueMember's optional "#'0101'B" suffix


def group_members(settings: Settings, group_dn: str) -> list[Student]:
    """The members of the group ``group_dn``, by username (passwords None: generated later)."""
    dn = check_dn(group_dn, "group DN")
    _, _, _, base = required(settings.ldap, "host", "bind_user_dn", "bind_user_password", "base_dn")
    with ldapconn.connect(settings.ldap) as conn:
        group = _read(conn, dn, ["objectClass", "member", "uniqueMember", "memberUid"])
        if group is None:
            raise NotFound(f"no LDAP group {dn!r} (or the bind account may not read it)")
        classes = {c.lower() for c in values(group, "objectClass")}
        if not classes & _GROUP_CLASSES:
            raise InvalidInput(f"{dn!r} is not a group (groupOfNames, groupOfUniqueNames or posixGroup)")
        problems: list[str] = []
        found: list[Student] = []
        for member in values(group, "member") + values(group, "uniqueMember"):
            member = _UNIQUE_MEMBER_UID.sub("", member)
            entry = _read(conn, member, ["uid", "cn"])
            if entry is None:
                problems.append(f"member {member!r} does not exist (or may not be read)")
            else:
                found += _student(entry, f"member {member!r}", problems)
        for uid in values(group, "memberUid"):
            try:
                check_username(uid)
            except InvalidInput as exc:
                problems.append(f"memberUid: {exc.message}")
                continue
            conn.search(base, f"(uid={escape_filter_chars(uid)})", ldap3.SUBTREE, attributes=["uid", "cn"])
            entries = _entries(conn)
            if len(entries) != 1:
                problems.append(f"memberUid {uid!r}: {len(entries) or 'no'} entries with that uid "
                                f"under {base!r}")
            else:
                found += _student(entries[0], f"memberUid {uid!r}", problems)
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise InvalidInput(f"the LDAP group {dn!r} can't be used as it is:\n{listed}")
    return sorted({s.username: s for s in reversed(found)}.values(), key=lambda s: s.username)


def _read(conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict[str, Any] | None:
    """The entry ``dn`` (its ``attributes``), or None when there is none."""
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
    except LDAPNoSuchObjectResult:
        return None
    entries = _entries(conn)
    return entries[0] if entries else None


def _entries(conn: ldap3.Connection) -> list[dict[str, Any]]:
    return [r for r in conn.response or [] if r.get("type") == "searchResEntry"]


def _student(entry: dict[str, Any], what: str, problems: list[str]) -> list[Student]:
    """The Student of a person entry (a list of 0 or 1), or its problem appended to ``problems``."""
    uids = values(entry, "uid")
    if len(uids) != 1:
        problems.append(f"{what} has {len(uids) or 'no'} uid values, not one")
        return []
    try:
        check_username(uids[0])
    except InvalidInput as exc:
        problems.append(f"{what}: {exc.message}")
        return []
    names = values(entry, "cn")
    full_name = names[0].strip() if names else ""
    if CONTROL.search(full_name):
        problems.append(f"{what}: the cn contains a control character")
        return []
    return [Student(uids[0], full_name)]
