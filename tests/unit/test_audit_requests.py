"""The audit log, resource requests and their mail, on the shared SQLite file and the test driver.

Mail goes to a real SMTP server (aiosmtpd) on a loopback port.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator

import pytest
from aiohttp.test_utils import unused_port
from support.smtp import Inbox, smtp_inbox

from core.errors import InvalidInput, NotFound
from core.lab import Lab
from core.model import LabMeta, VMState
from core.records import audit as audit_module
from core.records import mail
from core.records.audit import COLLAPSE_WINDOW, Actor, AuditLog
from core.records.requests import Kind, NewRequests, RequestStore, Status
from core.settings import Settings, SmtpSettings
from core.testing.testdriver import Spec

WEB = Actor("alice", "web", "192.0.2.7")


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as made:
        yield made


@pytest.fixture
def store(settings: Settings) -> Iterator[RequestStore]:
    made = RequestStore(settings.database_path)
    yield made
    made.close()


# -- audit --
def test_audit_records_and_filters(settings: Settings) -> None:
    now = [1000.0]
    log = AuditLog(settings.database_path, clock=lambda: now[0])
    try:
        log.record(WEB, "signin")
        now[0] = 2000.0
        log.record(Actor("root", "tui", "local"), "halt", vm_name="net101-bob", vm_uuid="u-bob",
                   outcome="failed", detail="timeout")
        log.record(WEB, "start", vm_name="net101-alice", vm_uuid="u-alice")
        assert [e.action for e in log.entries()] == ["signin", "halt", "start"]
        assert [e.action for e in log.entries(user="alice")] == ["signin", "start"]
        assert [e.action for e in log.entries(vm="net101-bob")] == ["halt"]
        assert [e.action for e in log.entries(vm="U-BOB")] == ["halt"]  # a UUID, any case
        assert [e.action for e in log.entries(since=1500.0)] == ["halt", "start"]
        assert [e.action for e in log.entries(limit=1)] == ["start"]  # the newest
        halt = log.entries(vm="net101-bob")[0]
        assert (halt.user, halt.source, halt.address, halt.outcome, halt.detail) == (
            "root", "tui", "local", "failed", "timeout")
        with pytest.raises(ValueError, match="outcome"):
            log.record(WEB, "x", outcome="maybe")
        assert log.last_id() == 3
    finally:
        log.close()


def test_repeats_of_a_collapsed_entry_are_counted_in_one(settings: Settings) -> None:
    """What anyone can cause without signing in is one entry per who/where/what within the
    window, with a count and the last time; other entries, and other callers', stay apart."""
    now = [1000.0]
    log = AuditLog(settings.database_path, clock=lambda: now[0])
    guesser = Actor("?", "web", "203.0.113.5")
    try:
        for _ in range(1000):
            now[0] += 0.005
            log.record(guesser, "signin", outcome="refused", detail="too many failed sign-ins", collapse=True)
        log.record(Actor("?", "web", "203.0.113.6"), "signin", outcome="refused",
                   detail="too many failed sign-ins", collapse=True)  # from elsewhere: its own
        log.record(guesser, "signin", outcome="refused", detail="wrong user name or password", collapse=True)
        log.record(WEB, "start", vm_name="a", vm_uuid="u-a")
        log.record(WEB, "start", vm_name="a", vm_uuid="u-a")  # not collapsed: an entry each
        entries = log.entries()
        assert [(e.address, e.detail, e.repeats) for e in entries] == [
            ("203.0.113.5", "too many failed sign-ins", 1000), ("203.0.113.6", "too many failed sign-ins", 1),
            ("203.0.113.5", "wrong user name or password", 1), ("192.0.2.7", "", 1), ("192.0.2.7", "", 1)]
        first = entries[0]
        assert (first.at, first.last) == (pytest.approx(1000.005), pytest.approx(1005.0))
        assert first.times.startswith("×1000 until ")
        assert first.as_json()["repeats"] == 1000
        assert entries[1].times == ""
        assert entries[1].last is None
        assert log.last_change() == (5, pytest.approx(1005.0))
        # Past the window (from the entry's first time), a repeat starts a new entry.
        now[0] = 1000.005 + COLLAPSE_WINDOW + 1
        log.record(guesser, "signin", outcome="refused", detail="too many failed sign-ins", collapse=True)
        assert [e.repeats for e in log.entries()][-1] == 1
        assert len(log.entries()) == 6
    finally:
        log.close()


def test_purge_keeps_what_happened_within_the_days(settings: Settings) -> None:
    day = 86400.0
    now = [100 * day]
    log = AuditLog(settings.database_path, clock=lambda: now[0])
    try:
        log.record(WEB, "old")
        now[0] += 0.5 * day
        log.record(WEB, "repeated", collapse=True)
        now[0] += 600
        log.record(WEB, "repeated", collapse=True)  # first more than 40 days ago, last less
        now[0] = 140.5 * day + 300
        log.record(WEB, "new")
        assert log.purge(40) == 1
        assert [e.action for e in log.entries()] == ["repeated", "new"]
        now[0] = 200 * day
        assert log.purge(40) == 2
        assert log.entries() == []
    finally:
        log.close()


def test_an_audit_log_of_the_first_schema_is_migrated(settings: Settings) -> None:
    """A database written before entries had repeats: opened, it gains them, its entries intact."""
    settings.database_path.parent.mkdir(parents=True)
    with sqlite3.connect(settings.database_path) as db:
        db.executescript(f"""{audit_module._MIGRATIONS[0]};
            CREATE TABLE schema_versions (store TEXT PRIMARY KEY, version INTEGER NOT NULL);
            INSERT INTO schema_versions VALUES ('audit', 1);
            INSERT INTO audit (at, user, source, address, action, vm_name, vm_uuid, outcome, detail)
            VALUES (1000, 'alice', 'web', '192.0.2.7', 'signin', '', '', 'ok', 'local');""")
    db.close()
    log = AuditLog(settings.database_path, clock=lambda: 2000.0)
    try:
        [old] = log.entries()
        assert (old.user, old.action, old.repeats, old.last) == ("alice", "signin", 1, None)
        log.record(WEB, "signin", outcome="refused", collapse=True)
        log.record(WEB, "signin", outcome="refused", collapse=True)
        assert [e.repeats for e in log.entries()] == [1, 2]
    finally:
        log.close()


def test_local_actor_names_the_sudo_user_and_ssh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "teacher")
    monkeypatch.setenv("SSH_CLIENT", "198.51.100.4 52100 22")
    assert Actor.local("tui") == Actor("teacher", "tui", "198.51.100.4")
    monkeypatch.delenv("SSH_CLIENT")
    assert Actor.local("cli").address == "local"


async def test_lab_actions_are_audited_per_vm(settings: Settings,
                                              lab_file: Callable[[list[Spec]], str]) -> None:
    uri = lab_file([Spec("a", VMState.RUNNING), Spec("b", VMState.SHUTOFF)])
    lab = await Lab.open(settings, uri)
    try:
        vms = {vm.name: vm for vm in lab.vms()}
        await lab.act("suspend", [vms["a"], vms["b"]], actor=WEB)  # b is off: that one fails
        lab.actor = Actor("root", "tui", "local")
        await lab.act("start", [vms["b"]])
        entries = lab.audit.entries()
        got = sorted((e.user, e.action, e.vm_name, e.outcome) for e in entries)
        assert got == [("alice", "suspend", "a", "ok"), ("alice", "suspend", "b", "failed"),
                       ("root", "start", "b", "ok")]
        assert {e.vm_uuid for e in entries if e.vm_name == "a"} == {vms["a"].uuid}
    finally:
        await lab.close()


async def test_an_unwritable_audit_log_does_not_fail_the_action(
        settings: Settings, lab_file: Callable[[list[Spec]], str], caplog: pytest.LogCaptureFixture) -> None:
    lab = await Lab.open(settings, lab_file([Spec("a", VMState.SHUTOFF)]))
    try:
        lab.audit.close()  # every write now fails
        results = await lab.act("start", lab.vms(), actor=WEB)
        assert [r.ok for r in results] == [True]
        assert "audit log not written" in caplog.text
    finally:
        await lab.close()


# -- requests --
def test_a_request_is_made_listed_and_answered_once(store: RequestStore) -> None:
    made = store.create("alice", Kind.VCPUS, vm_uuid="u-a", vm_name="net101-alice", amount=4,
                        reason="  compiling\nthe kernel  ", email="alice@lab.test")
    assert (made.status, made.reason, made.summary()) == (Status.PENDING, "compiling the kernel",
                                                          "4 vCPUs for net101-alice")
    other = store.create("bob", "new_vm", reason="a second VM for the router lab", vm_name="ignored")
    assert (other.kind, other.vm_name, other.amount) == (Kind.NEW_VM, None, None)
    assert [r.id for r in store.list()] == [other.id, made.id]
    assert [r.id for r in store.list(username="alice")] == [made.id]
    before = store.version()
    answered = store.answer(made.id, approve=True, by="teacher", word="ok for this week")
    assert (answered.status, answered.answered_by, answered.answer) == (Status.APPROVED, "teacher",
                                                                        "ok for this week")
    assert store.version() != before
    assert store.list(status=Status.PENDING) == [store.get(other.id)]
    with pytest.raises(InvalidInput, match="approved already"):
        store.answer(made.id, approve=False, by="other")
    with pytest.raises(NotFound):
        store.answer(9999, approve=True, by="teacher")


@pytest.mark.parametrize(("kind", "fields", "problem"), [
    ("vcpus", {"amount": 17}, "1 to 16"),
    ("vcpus", {"amount": 0}, "1 to 16"),
    ("memory", {"amount": 100}, "256 to 65536"),
    ("memory", {"amount": None}, "256 to 65536"),
    ("vcpus", {"amount": 2, "vm_uuid": None}, "choose the VM"),
    ("vcpus", {"amount": 2, "reason": "   "}, "reason is empty"),
    ("vcpus", {"amount": 2, "reason": "x" * 501}, "longer than 500"),
    ("vcpus", {"amount": 2, "reason": "bell\x07"}, "control characters"),
    ("disk", {"amount": 2}, "unknown request kind"),
])
def test_a_bad_request_is_refused_and_nothing_stored(store: RequestStore, kind: str,
                                                     fields: dict[str, object], problem: str) -> None:
    args: dict[str, object] = {"vm_uuid": "u-a", "vm_name": "a", "reason": "why not"} | fields
    with pytest.raises(InvalidInput, match=problem):
        store.create("alice", kind, **args)  # type: ignore[arg-type]
    assert store.list() == []


def test_both_stores_share_one_file_with_their_own_versions(settings: Settings) -> None:
    RequestStore(settings.database_path).close()
    AuditLog(settings.database_path).close()
    with sqlite3.connect(settings.database_path) as db:
        assert dict(db.execute("SELECT store, version FROM schema_versions")) == {"requests": 1, "audit": 2}


async def test_approving_changes_the_definition_for_the_next_boot(
        settings: Settings, lab_file: Callable[[list[Spec]], str], store: RequestStore) -> None:
    lab = await Lab.open(settings, lab_file([Spec("a", VMState.RUNNING, vcpus=2, memory_mib=1024,
                                                  meta=LabMeta("alice"))]))
    try:
        vm = lab.vms()[0]
        more = store.create("alice", Kind.VCPUS, vm_uuid=vm.uuid, vm_name=vm.name, amount=4, reason="builds")
        less = store.create("alice", Kind.MEMORY, vm_uuid=vm.uuid, vm_name=vm.name, amount=512, reason="x")
        assert (await lab.apply_request(more, actor=WEB)).ok
        assert (await lab.apply_request(less, actor=WEB)).ok
        dom = lab.hosts[vm.host].domain(vm.uuid)  # the lab's own connection: a file lab is per connection
        live = dom.info()
        assert (live[3], live[2] // 1024) == (2, 1024)  # running: unchanged until it boots again
        dom.destroy()
        dom.create()
        after = dom.info()
        assert (after[3], after[1] // 1024, after[2] // 1024) == (4, 512, 512)
        assert [e.action for e in lab.audit.entries(vm=vm.name)] == ["request-vcpus", "request-memory"]
        gone = store.create("alice", Kind.VCPUS, vm_uuid="0" * 32, vm_name="gone", amount=2, reason="x")
        with pytest.raises(NotFound, match="gone"):
            await lab.apply_request(gone)
    finally:
        await lab.close()


# -- mail --
async def test_request_mail_reaches_the_operators_and_the_answer_the_student(
        settings: Settings, store: RequestStore, inbox: Inbox) -> None:
    configured = Settings(
        data_dir=settings.data_dir,
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=inbox.port,
            starttls=False,
            sender="vmm@lab.test",
            operator_email="t1@lab.test, t2@lab.test",
        ),
    )
    made = store.create("alice", Kind.MEMORY, vm_uuid="u", vm_name="net101-alice", amount=4096,
                        reason="a database", email="alice@lab.test")
    await mail.notify_new_request(configured, made)
    answered = store.answer(made.id, approve=False, by="teacher", word="not this term")
    await mail.notify_answer(configured, answered)
    first, second = inbox.messages
    assert first["To"] == "t1@lab.test, t2@lab.test"  # type: ignore[index]
    assert "4096 MiB of memory for net101-alice" in first["Subject"]  # type: ignore[index]
    assert "a database" in first.get_payload()  # type: ignore[attr-defined]
    assert second["To"] == "alice@lab.test"  # type: ignore[index]
    assert "rejected" in second["Subject"]  # type: ignore[index]
    assert "not this term" in second.get_payload()  # type: ignore[attr-defined]


async def test_no_smtp_or_a_dead_server_sends_nothing_and_raises_nothing(
        settings: Settings, store: RequestStore, caplog: pytest.LogCaptureFixture) -> None:
    made = store.create("alice", Kind.NEW_VM, reason="router lab", email="alice@lab.test")
    assert not await asyncio.to_thread(mail.send, settings, ["x@lab.test"], "s", "b")  # no SMTP_HOST
    dead = Settings(data_dir=settings.data_dir,  # nothing listens there
                    smtp=SmtpSettings(host="127.0.0.1", port=unused_port(), operator_email="t@lab.test"))
    await mail.notify_new_request(dead, made)
    assert "not sent" in caplog.text


def test_new_requests_are_those_made_since_the_last_look(settings: Settings) -> None:
    watcher = NewRequests(settings.database_path)
    try:
        assert watcher.poll() == []
        assert not settings.database_path.exists()  # looking makes no database
        store = RequestStore(settings.database_path)
        first = store.create("alice", Kind.NEW_VM, reason="one")
        assert [r.id for r in watcher.poll()] == [first.id]  # no database at the first look: all new
        assert watcher.poll() == []
        second = store.create("bob", Kind.NEW_VM, reason="two")
        third = store.create("carol", Kind.NEW_VM, reason="three")
        store.answer(third.id, approve=False, by="t", word="no")  # answered before it was seen
        assert [r.id for r in watcher.poll()] == [second.id]
        store.close()
    finally:
        watcher.close()
