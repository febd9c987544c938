"""Sign-ins under VMM_SIGNIN_CONCURRENCY: a class signing in at once checks only that many
passwords at a time (each argon2 check holds 64 MiB while it runs), and every one still gets in."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from support.portalweb import Student
from support.webtest import StartConsole

from core.auth import accounts as accounts_module
from core.auth.accounts import Accounts
from core.lab import Lab
from core.settings import Settings
from core.testing import testdriver

BOUND = 2
STUDENTS = 8  # more than BOUND, and more than the default executor's threads on two cores (6)


class CountingHasher(PasswordHasher):
    """argon2id, slowed by its time cost (about 0.1 s a check here), counting the checks under way."""

    lock = threading.Lock()
    running = 0
    most = 0

    def __init__(self) -> None:
        super().__init__(time_cost=5)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 -- argon2's name
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most = max(cls.most, cls.running)
        try:
            return super().verify(hash, password)
        finally:
            with cls.lock:
                cls.running -= 1


@pytest.fixture
async def lab(web_settings: Settings, tmp_path: Path) -> AsyncIterator[Lab]:
    lab = await Lab.open(web_settings, testdriver.write(tmp_path / "empty.xml", []))
    yield lab
    await lab.close()


async def test_a_class_signing_in_at_once_checks_at_most_the_bound_of_passwords(
        console: StartConsole, lab: Lab, web_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "PasswordHasher", CountingHasher)
    settings = dataclasses.replace(web_settings, web=dataclasses.replace(web_settings.web,
                                                                         signin_concurrency=BOUND))
    names = [f"s{index:02d}" for index in range(STUDENTS)]
    accounts = Accounts(settings.database_path)
    try:
        for name in names:
            accounts.add(name, f"{name}-password")
    finally:
        accounts.close()
    server = await console(lab, settings)
    students = [Student(server, f"192.0.2.{index + 1}") for index in range(STUDENTS)]
    forms = await asyncio.gather(*(student.get("/login") for student in students))
    CountingHasher.most = 0
    pages = await asyncio.gather(*(student.post("/login", {"csrf": form.form("/login").fields["csrf"],
                                                           "username": name, "password": f"{name}-password"})
                                   for student, form, name in zip(students, forms, names, strict=True)))
    assert [(page.status, page.location) for page in pages] == [(303, "/")] * STUDENTS
    assert 0 < CountingHasher.most <= BOUND, f"{CountingHasher.most} passwords checked at once"
