"""The server the web properties share: the portal and the admin API in-process (aiohttp's test
server on loopback) on a test-driver lab, with alice signed in. One per test, shared by its examples."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import leftovers
from support.portalweb import Student, add_accounts
from support.webtest import Console, start_console, uuid_of

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.testing import testdriver


@dataclass
class Portal:
    server: Console
    lab: Lab
    alice: Student
    """Signed in (a student): her VMs are alice-on and alice-off."""
    uuids: dict[str, str]
    """The lab's VMs by name."""

    @property
    def database(self) -> Path:
        return self.server.settings.database_path

    def rows(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table of the database, sorted: what "nothing changed" compares."""
        with sqlite3.connect(self.database) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {table: sorted(db.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
                    for table in tables}


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[Portal]:
    run_dir = leftovers.run_dir()
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", runtime_dir=run_dir)
    alice, bob = LabMeta("alice", "net101"), LabMeta("bob", "net101")
    uri = testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec("alice-on", VMState.RUNNING, meta=alice),
        testdriver.Spec("alice-off", VMState.SHUTOFF, meta=alice),
        testdriver.Spec("bob-on", VMState.RUNNING, meta=bob),
    ])
    add_accounts(settings)
    lab = await Lab.open(settings, uri)
    server = await start_console(settings, lab)
    try:
        student = Student(server)
        page = await student.sign_in("alice")
        assert (page.status, page.location) == (303, "/"), page.text
        yield Portal(server, lab, student, {vm.name: uuid_of(lab, vm.name) for vm in lab.vms()})
    finally:
        await server.close()
        await lab.close()
        shutil.rmtree(run_dir, ignore_errors=True)
