"""Passwords made for students and administrators, and the rule Windows puts on them."""

from __future__ import annotations

import secrets
import string

from core.errors import InvalidInput

# No look-alikes (0/O, 1/l/I): generated passwords are read off paper in a classroom.
_LOWER = "abcdefghijkmnopqrstuvwxyz"
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_DIGITS = "23456789"
WINDOWS_RULE = "at least 8 characters with an uppercase letter, a lowercase letter and a digit"
WINDOWS_MAX = 127  # the longest logon password Microsoft documents for Windows


def generate_password(length: int = 14) -> str:
    """A random password that also meets Windows' complexity rule."""
    alphabet = _LOWER + _UPPER + _DIGITS
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if windows_password_problem(password) is None:
            return password


def windows_password_problem(password: str) -> str | None:
    """Why Windows would refuse ``password``, or None."""
    if (len(password) < 8 or not any(c in string.ascii_uppercase for c in password)
            or not any(c in string.ascii_lowercase for c in password)
            or not any(c in string.digits for c in password)):
        return f"a Windows password needs {WINDOWS_RULE}"
    if len(password) > WINDOWS_MAX:
        return f"a Windows password has at most {WINDOWS_MAX} characters, not {len(password)}"
    return None


def check_windows_password(password: str) -> str:
    problem = windows_password_problem(password)
    if problem is not None:
        raise InvalidInput(problem)
    return password
