"""Passwords made for students and administrators, the rule Windows puts on them, and the file
a provisioning run writes the generated ones to (:class:`PasswordFile`)."""

from __future__ import annotations

import csv
import os
import secrets
import string
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from core.errors import InvalidInput
from core.settings import Settings

if TYPE_CHECKING:
    from core.provision.planning import VMPlan

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


class PasswordFile:
    """Generated passwords: one CSV per run, mode 0600, a row for each VM that exists.

    The file is made with its first row (a run with no password to write makes none). A row is
    written when its VM is defined, not at the end of the run, so that a run killed half-way still
    leaves the passwords of the VMs it did make; a VM undone afterwards (a failed start) takes its
    row out again, and the last row out takes the file. Nothing else ever prints the passwords.
    """

    HEADER = ("vm", "username", "password", "admin_password")

    def __init__(self, settings: Settings, lab_class: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self._target = settings.passwords_dir / f"{lab_class}-{stamp}-{os.getpid()}.csv"
        self.path: Path | None = None  # once made
        self._file: IO[str] | None = None
        self._rows: dict[str, list[str]] = {}
        self._lock = threading.Lock()  # VMs add and remove rows from worker threads

    def add(self, vm: VMPlan) -> None:
        if not (vm.generated or vm.admin_password):
            return
        with self._lock:
            self._add(vm)

    def _add(self, vm: VMPlan) -> None:
        row = [vm.name, vm.student.username, vm.password if vm.generated else "", vm.admin_password]
        self._rows[vm.name] = row
        if self._file is None:
            self._open()
        assert self._file is not None
        csv.writer(self._file).writerow(row)
        self._sync()

    def remove(self, vm: VMPlan) -> None:
        """Take a VM's row out: it was undone. Rewrites the file whole (a rare event)."""
        with self._lock:
            self._remove(vm)

    def _remove(self, vm: VMPlan) -> None:
        if self._rows.pop(vm.name, None) is None or self.path is None:
            return
        self.close()
        if not self._rows:
            self.path.unlink(missing_ok=True)
            self.path = None
            return
        fresh = self.path.with_name(f".{self.path.name}.new")
        fresh.unlink(missing_ok=True)
        with os.fdopen(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", newline="",
                       encoding="utf-8") as out:
            csv.writer(out).writerows([self.HEADER, *self._rows.values()])
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, self.path)  # the old rows or the new ones, never half of them
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def _open(self) -> None:
        folder = self._target.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        fd = os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.path = self._target
        self._file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        csv.writer(self._file).writerow(self.HEADER)

    def _sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PasswordFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
