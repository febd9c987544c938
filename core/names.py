"""What counts as a valid name, checked before a name touches a path, an XML document or a filter."""

from __future__ import annotations

import re

from core.errors import InvalidInput

# A host name label (RFC 1123): what a VM may be called when we make it.
VM_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# A POSIX-style login: what a student's username may be.
USERNAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidInput(f"invalid {what} {value!r}: {rule}")
    return value


def check_vm_name(name: str) -> str:
    return _check(VM_NAME, name, "VM name", "letters, digits and '-', at most 63, not starting "
                  "or ending with '-'")


def check_username(name: str) -> str:
    return _check(USERNAME, name, "username", "lowercase letters, digits, '_', '.', '-', "
                  "at most 32, starting with a letter or '_'")


def recorded_username(typed: str) -> str:
    """A typed name as an audit entry may keep it: a valid username, else ``?`` (what fails the
    check may be a password typed into the name field, and stays off the record)."""
    return typed if USERNAME.fullmatch(typed) else "?"


def check_class_name(name: str) -> str:
    return _check(CLASS_NAME, name, "class name", "letters, digits, '_', '.', '-', at most 64, "
                  "starting with a letter or digit")
