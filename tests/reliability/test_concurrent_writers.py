"""Three programs writing to the shared database at the same moment, through the product's own
stores (:mod:`core.testing.dbload`: as the TUI, a command and the server write, reads that turn
into writes included): nothing lost, and no "database is locked" ever reaches a user.
``scripts/bench_database.py`` prints the same load's figures under other settings.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.records.audit import Actor, AuditLog
from core.testing import dbload

RECORDS = 1000


def test_three_programs_writing_a_thousand_records_each_lose_none(tmp_path: Path) -> None:
    path = tmp_path / "vm-manager.db"  # new: the three make it together, too
    tallies = dbload.together(path, RECORDS)
    assert [(t["role"], t["written"], t["errors"]) for t in tallies] == [
        (role, RECORDS, []) for role in dbload.ROLES]
    assert set(dbload.missing(path, RECORDS).values()) == {0}
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()


def test_a_new_database_opened_while_another_program_holds_it(tmp_path: Path) -> None:
    """The first program to open a new file switches it to WAL; another one holding the file
    meanwhile made that switch fail at once ("database is locked": it takes no busy timeout),
    as when the TUI, the server and a command start together on a new install. It waits now."""
    path = tmp_path / "vm-manager.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other (x)")
    code = ("import sys; from pathlib import Path; from core.records.audit import Actor, AuditLog; "
            "AuditLog(Path(sys.argv[1])).record(Actor('teacher', 'cli', 'local'), 'start'); print('written')")
    writer = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # it has begun to open the file by then (and, before, failed)
    finally:
        holder.execute("COMMIT")
        holder.close()
    out, err = writer.communicate(timeout=30)
    assert (writer.returncode, out, err) == (0, "written\n", "")


def test_two_threads_sharing_one_audit_log(tmp_path: Path) -> None:
    """The audit log is shared by the core's thread and the caller's (:class:`core.lab.Lab`):
    one's BEGIN inside the other's transaction failed ("cannot start a transaction within a
    transaction"), and its entries were lost."""
    log = AuditLog(tmp_path / "vm-manager.db")
    errors: list[str] = []

    def write(thread: int) -> None:
        for n in range(300):
            try:
                log.record(Actor("teacher", "tui", "local"), "start", vm_name=f"vm-{thread}-{n}")
            except sqlite3.Error as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(log.entries(limit=1000)) == 600
    finally:
        log.close()
