"""The soak: the TUI (in a tmux pane) and ``vm-manager serve`` (a process of its own) run against the
real libvirtd while interleaved workloads go through the product, and their process trees and the
database are sampled as it goes. ``make soak`` (scripts/soak.py) runs the full counts and prints the
slopes; tests/integration/test_soak.py runs a few dozen cycles and checks that what must come back
to its baseline does.

Adding a workload is one class, registered with :func:`workload`::

    @workload
    class Reboots(Workload):
        name, full, short = "reboots", 500, 12

        async def setup(self, rig: Rig) -> None:   # what it needs: VMs, accounts (optional)
            self.vms = await rig.define("reboot", 2, start=True)

        async def step(self, rig: Rig, left: int) -> int:   # some of its work; returns units done
            await rig.cli("reboot", self.vms[0].name, "--yes")
            return 1

``finish`` brings the work to rest (closes what it holds open) before a baseline or a check is
taken; a workload whose units leave nothing open has none. Every process and VM the rig makes
carries its prefix and goes with :meth:`Rig.close`, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import aiohttp
import libvirt

from core.auth.sessions import SessionStore
from core.lab import SYSTEM_URI
from core.links.client import Consoles
from core.links.shares import TokenStore
from core.metadata import LabMeta
from core.model import VM, VMState
from core.storage.permissions import group_id
from core.testing.domains import remove_domains, tiny_domain
from core.testing.forms import forms
from core.testing.processes import Counts, counts
from core.testing.rfb import RfbViewer, open_from_portal, open_through_server
from core.testing.served import VM_MANAGER, Server
from core.testing.terminal import Pane

CLI_TIMEOUT = 180.0  # seconds one vm-manager command may take (provisioning a class included)
KEPT_ROWS = frozenset({"audit"})
"""Tables that keep a row per action by design (the audit log: VMM_AUDIT_DAYS): sampled, never
expected back at their baseline."""


class SoakError(RuntimeError):
    """A workload's unit did not do what it should (a command failed, a page refused)."""


# -- the rig: the TUI and the server on one data directory, against qemu:///system ----------------------
@dataclass
class Rig:
    """What the workloads run against. ``work`` is private (data, config, run dir, logs); ``shared``
    lies under /var/tmp where QEMU may pass (student folders, console sockets)."""

    work: Path
    shared: Path
    template: Path  # the tiny template's folder (vmlinuz, initrd.img, base.qcow2)
    prefix: str  # of every VM (and class) the rig makes
    env: dict[str, str]  # the settings, as variables: the server, the TUI and every CLI run share them
    server: Server
    conn: libvirt.virConnect
    tui: Pane | None = None
    http: aiohttp.ClientSession | None = None
    consoles: Consoles | None = None
    domains: list[str] = field(default_factory=list)  # UUIDs of the VMs defined by :meth:`define`

    @property
    def database(self) -> Path:
        return self.server.settings.database_path

    @property
    def base(self) -> str:
        return self.server.base

    async def cli(self, *args: str | os.PathLike[str], stdin: str | None = None) -> str:
        """``vm-manager -c qemu:///system ARGS`` as an operator runs it; its stdout. SoakError when
        it does not exit 0."""
        proc = await asyncio.create_subprocess_exec(
            VM_MANAGER, "-c", SYSTEM_URI, *map(str, args), env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(None if stdin is None else stdin.encode()),
                                              CLI_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SoakError(f"vm-manager {' '.join(map(str, args))}: no end in {CLI_TIMEOUT:g} s") from None
        if proc.returncode != 0:
            raise SoakError(f"vm-manager {' '.join(map(str, args))} exited {proc.returncode}: "
                            f"{err.decode(errors='replace')[-1500:]}")
        return out.decode(errors="replace")

    async def define(self, label: str, count: int, *, start: bool = False, owner: str = "") -> list[VM]:
        """``count`` tiny SeaBIOS VMs (64 MiB, no disk, VNC on loopback), named ``<prefix><label>-N``."""
        made = []
        for index in range(count):
            name = f"{self.prefix}{label}-{index}"
            xml = tiny_domain(name, meta=LabMeta(owner=owner, lab_class=f"{self.prefix}{label}"))
            dom = await asyncio.to_thread(self.conn.defineXML, xml)
            self.domains.append(dom.UUIDString())
            if start:
                await asyncio.to_thread(dom.create)
            made.append(VM(SYSTEM_URI, dom.UUIDString(), name, VMState.RUNNING if start else VMState.SHUTOFF,
                           1, 64, LabMeta(owner=owner)))
        return made

    async def share(self, vm: VM, ttl: str = "1h") -> tuple[str, str]:
        """A share link to ``vm`` through the server's admin API (what the TUI's ``c`` and ``vm-manager
        share`` do), asked again while the server has not seen the VM yet; returns its id and URL."""
        assert self.consoles is not None
        deadline = time.monotonic() + 20
        while True:
            result = await self.consoles.share([vm], ttl)
            if result.links and result.via_server:
                return result.links[0].id, result.links[0].url
            if time.monotonic() > deadline or any(why != "no such VM" for _, why in result.errors):
                raise SoakError(f"no share link for {vm.name}: {result.errors or 'no server answered'}")
            await asyncio.sleep(0.2)

    async def revoke(self, link_id: str) -> int:
        """Revoke one link through the admin API; the consoles it closed."""
        assert self.consoles is not None
        result = await self.consoles.revoke(ids=[link_id])
        if not result.via_server or [i for i, _ in result.revoked] != [link_id]:
            raise SoakError(f"link {link_id} was not revoked: {result}")
        return result.closed

    def browser(self) -> aiohttp.ClientSession:
        """A new browser: its own cookies (on 127.0.0.1), no connection kept between requests (a kept
        one would count among the server's sockets until its idle timeout)."""
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     connector=aiohttp.TCPConnector(force_close=True),
                                     timeout=aiohttp.ClientTimeout(total=60))

    def close(self) -> None:
        """Remove every VM of the prefix (those made through the product too), and the folders."""
        try:
            remove_domains(self.conn, self.prefix)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.close()
            shutil.rmtree(self.shared, ignore_errors=True)
            shutil.rmtree(self.work, ignore_errors=True)


def qemu_folder(prefix: str) -> Path:
    """A new folder under /var/tmp that QEMU (libvirt-qemu) may pass, with ``consoles`` in it as
    provisioning wants the console socket folder: mode 0770, QEMU's own group."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    sockets = path / "consoles"
    sockets.mkdir()
    sockets.chmod(0o770)
    os.chown(sockets, os.getuid(), group_id() or 0)
    return path


@contextlib.asynccontextmanager
async def open_rig(template: Path, *, prefix: str | None = None) -> AsyncIterator[Rig]:
    """The server and the TUI running on one data directory; everything removed at the end."""
    prefix = prefix or f"vmm-soak-{secrets.token_hex(3)}-"
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: the run dir's sockets
    shared = qemu_folder(prefix)
    (work / "config").mkdir()
    (work / "config" / "templates.toml").write_text(
        "[templates.tiny]\n"
        f'image = "{template / "base.qcow2"}"\n'
        f'kernel = "{template / "vmlinuz"}"\n'
        f'initrd = "{template / "initrd.img"}"\n'
        'cmdline = "console=tty0 console=ttyS0"\n'
        'domain_type = "qemu"\nmemory_mib = 96\ndisk_size_gib = 1\n')
    env = {"VMM_DATA_DIR": str(work / "data"), "VMM_CONFIG_DIR": str(work / "config"),
           "VMM_RUNTIME_DIR": str(work / "run"), "VMM_ENV_FILE": "/nonexistent",
           "VMM_STUDENT_VMS_DIR": str(shared / "student_vms"),
           "VMM_CONSOLE_SOCKET_DIR": str(shared / "consoles"),
           "VMM_TEMPLATE_DIR": str(template.parent), "LIBVIRT_DEFAULT_URI": SYSTEM_URI,
           "SECRET_KEY": secrets.token_urlsafe(48)}
    server = Server(work, uri=SYSTEM_URI, env=env)
    rig = Rig(work, shared, template, prefix, env, server, libvirt.open(SYSTEM_URI))
    try:
        await server.start()
        rig.tui = Pane([str(VM_MANAGER), "-c", SYSTEM_URI], env={**env, "TERM": "xterm-256color"})
        rig.tui.wait(lambda screen: SYSTEM_URI in screen or "VM" in screen, 60, 0.2)
        rig.tui.keys("/")  # the TUI shows the soak's VMs only, and follows them
        rig.tui.keys(prefix, literal=True)
        rig.tui.keys("Enter")
        rig.consoles = Consoles(server.settings, "cli")
        async with rig.browser() as rig.http:
            yield rig
    finally:
        if rig.tui is not None:
            rig.tui.close()
        server.stop()
        rig.close()


# -- workloads ---------------------------------------------------------------------------------------------
class Workload:
    """One kind of work, in units (``name``: what a unit is; ``full``: how many ``make soak`` does,
    ``short``: the short form's)."""

    name: ClassVar[str]
    full: ClassVar[int]
    short: ClassVar[int]

    async def setup(self, rig: Rig) -> None:
        """What the work needs (VMs, accounts), made before the first step."""

    async def step(self, rig: Rig, left: int) -> int:
        """Do some of the work (at most ``left`` units); return how many units were done."""
        raise NotImplementedError

    async def finish(self, rig: Rig) -> None:
        """Leave nothing of the work open (a link held for the next units): a baseline or a check follows."""


WORKLOADS: dict[str, type[Workload]] = {}


def workload(cls: type[Workload]) -> type[Workload]:
    """Register a workload: the soak and its short form run every registered one."""
    WORKLOADS[cls.name] = cls
    return cls


@workload
class StartStop(Workload):
    """20 tiny VMs started and stopped (destroyed: the tiny VM ignores ACPI, and a stop must be a stop)
    with the CLI, a few at a time as an operator names them: ``vm-manager start A B C``, then
    ``vm-manager destroy A B C --yes``. A unit is one VM started and stopped."""

    name, full, short = "start_stop_cycles", 1000, 25
    vms_count, batch = 20, 5

    async def setup(self, rig: Rig) -> None:
        self.vms = await rig.define("cycle", self.vms_count)
        self.next = 0

    async def step(self, rig: Rig, left: int) -> int:
        count = min(self.batch, left)
        names = [self.vms[(self.next + i) % len(self.vms)].name for i in range(count)]
        self.next += count
        await rig.cli("start", *names)
        await rig.cli("destroy", *names, "--yes")
        return count


@workload
class ConsoleOpens(Workload):
    """Consoles opened and closed through the server as a browser does it: the share link, its cookie,
    the websocket, the RFB handshake, one full frame, closed. Two running VMs; each link serves
    ``per_link`` opens, then it is revoked and another made (an operator's links of one lesson)."""

    name, full, short = "console_opens", 1000, 25
    per_link = 10

    async def setup(self, rig: Rig) -> None:
        self.vms = await rig.define("console", 2, start=True)
        self.links: dict[str, tuple[str, str, int]] = {}  # VM uuid -> (link id, url, opens)
        self.count = 0

    async def step(self, rig: Rig, left: int) -> int:
        assert rig.http is not None
        vm = self.vms[self.count % len(self.vms)]
        self.count += 1
        if vm.uuid not in self.links:
            link_id, url = await rig.share(vm)
            self.links[vm.uuid] = (link_id, url, 0)
        link_id, url, opens = self.links[vm.uuid]
        viewer = await open_through_server(rig.http, rig.base, url)
        try:
            if await viewer.full_frame() <= 0:
                raise SoakError(f"{vm.name}: an empty frame")
        finally:
            await viewer.close()
        self.links[vm.uuid] = (link_id, url, opens + 1)
        if opens + 1 >= self.per_link:
            await self._revoke(rig, vm.uuid)
        return 1

    async def _revoke(self, rig: Rig, uuid: str) -> None:
        link_id, _url, _opens = self.links.pop(uuid)
        await rig.revoke(link_id)

    async def finish(self, rig: Rig) -> None:
        for uuid in list(self.links):
            await self._revoke(rig, uuid)


@workload
class ShareRevoke(Workload):
    """A share link made and revoked through the server's admin API (the TUI's ``c`` and ``C``)."""

    name, full, short = "share_revoke_pairs", 500, 25

    async def setup(self, rig: Rig) -> None:
        (self.vm,) = await rig.define("share", 1)

    async def step(self, rig: Rig, left: int) -> int:
        link_id, _url = await rig.share(self.vm)
        await rig.revoke(link_id)
        return 1


@workload
class SignInOut(Workload):
    """A student signs in to the portal from a new browser (a local account made with ``vm-manager
    user add``; the form's CSRF token as a browser posts it), loads "My VMs", opens the console of
    their running VM from there (websocket, RFB handshake, a frame), and signs out."""

    name, full, short = "signins", 200, 12
    user = "soakstudent"

    async def setup(self, rig: Rig) -> None:
        self.password = secrets.token_urlsafe(18)
        await rig.cli("user", "add", self.user, "--name", "Soak Student", "--password-stdin",
                      stdin=self.password + "\n")
        (self.vm,) = await rig.define("portal", 1, start=True, owner=self.user)

    async def step(self, rig: Rig, left: int) -> int:
        async with rig.browser() as browser:
            csrf = await self.sign_in(rig, browser)
            viewer = await self.open_console(rig, browser, csrf)
            try:
                await viewer.full_frame()
            finally:
                await viewer.close()
            await self.sign_out(rig, browser, csrf)
        return 1

    async def sign_out(self, rig: Rig, browser: aiohttp.ClientSession, csrf: str) -> None:
        await _post(browser, rig.base + "/logout", {"csrf": csrf}, "/login")

    async def sign_in(self, rig: Rig, browser: aiohttp.ClientSession) -> str:
        """Sign in with the form and load "My VMs"; the session's CSRF token."""
        page = await _get(browser, rig.base + "/login", 200)
        login = next(f for f in forms(page) if f.action == "/login")
        await _post(browser, rig.base + "/login", {"csrf": login.fields["csrf"], "username": self.user,
                                                   "password": self.password}, "/")
        page = await _get(browser, rig.base + "/", 200)
        if self.vm.name not in page:
            raise SoakError(f"My VMs does not show {self.vm.name}")
        return next(f for f in forms(page) if f.action == f"/vms/{self.vm.uuid}/console").fields["csrf"]

    async def open_console(self, rig: Rig, browser: aiohttp.ClientSession, csrf: str) -> RfbViewer:
        """The console button of "My VMs", then its websocket (the RFB handshake done)."""
        return await open_from_portal(browser, rig.base, self.vm.uuid, csrf)


async def _get(browser: aiohttp.ClientSession, url: str, status: int) -> str:
    async with browser.get(url, allow_redirects=False) as answer:
        if answer.status != status:
            raise SoakError(f"GET {url} answered {answer.status}, not {status}")
        return await answer.text()


async def _post(browser: aiohttp.ClientSession, url: str, data: dict[str, str], location: str) -> None:
    async with browser.post(url, data=data, allow_redirects=False) as answer:
        if answer.status != 303 or answer.headers.get("Location") != location:
            raise SoakError(f"POST {url} answered {answer.status} {answer.headers.get('Location')}, "
                            f"not 303 to {location}")


@workload
class ProvisionDelete(Workload):
    """A class of 5 provisioned from the tiny template (``vm-manager provision`` with a roster), then
    deleted (``vm-manager delete --class C --yes``: domains, overlays, folders, sockets)."""

    name, full, short = "classes_provisioned_and_deleted", 10, 2
    students = 5

    async def setup(self, rig: Rig) -> None:
        self.roster = rig.work / "roster.csv"
        self.roster.write_text("username,full_name,password,ssh_key\n" + "".join(
            f"stu{n},Student {n},{secrets.token_urlsafe(12)},\n" for n in range(self.students)))
        self.count = 0

    async def step(self, rig: Rig, left: int) -> int:
        lab_class = f"{rig.prefix}p{self.count}"
        self.count += 1
        await rig.cli("provision", "--template", "tiny", "--class", lab_class, "--users", self.roster)
        await rig.cli("delete", "--class", lab_class, "--yes")
        return 1


# -- what is measured --------------------------------------------------------------------------------------
def table_rows(database: Path) -> dict[str, int]:
    """Rows of every table of the database (read-only)."""
    if not database.exists():
        return {}
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: int(db.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]) for name in names}
    finally:
        db.close()


def _entries(folder: Path, depth: int = 1) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for _ in folder.glob("/".join(["*"] * depth)))


def measure(rig: Rig) -> dict[str, int]:
    """Everything sampled, by figure name: each process tree's :class:`Counts` (``tui_fds``,
    ``server_rss_kib``…; ``_threads`` are those outside the bounded pools, ``_pool_threads`` the
    pools'), each table's rows (``rows_links``…) and the files work leaves
    (student folders, VNC sockets, the server's console endpoints)."""
    values: dict[str, int] = {}
    for who, pid in (("tui", rig.tui.pid if rig.tui else None), ("server", rig.server.pid)):
        if pid is not None:
            tree = counts(pid)
            values.update({f"{who}_{key}": value for key, value in (tree.as_dict() | tree.exact()).items()})
    values.update({f"rows_{table}": rows for table, rows in table_rows(rig.database).items()})
    values["files_student_folders"] = _entries(rig.shared / "student_vms", 2)
    values["files_vnc_sockets"] = _entries(rig.shared / "consoles")
    values["files_console_endpoints"] = _entries(rig.work / "run" / "consoles")
    return values


EXACT_COUNTS = frozenset(Counts(0, 0, 0, 0, 0, 0).exact())


def exact(values: dict[str, int]) -> dict[str, int]:
    """What must come back to its baseline once the work is at rest: the process trees' descriptors,
    sockets, threads and children, the rows of every table but those kept by design, the files."""
    def kept(name: str) -> bool:
        who, _, what = name.partition("_")
        if who in ("tui", "server"):
            return what in EXACT_COUNTS
        if who == "rows":
            return what not in KEPT_ROWS
        return who == "files"

    return {name: value for name, value in values.items() if kept(name)}


def purge_finished(database: Path) -> None:
    """What the server's purges delete, without their delay: revoked and expired links with their
    console sessions (it waits a day), expired sign-in sessions and forgotten failures. Live work
    (a link not revoked, a session not signed out) stays."""
    tokens = TokenStore(database, "")
    try:
        tokens.purge(older_than=0)
    finally:
        tokens.close()
    sessions = SessionStore(database, "")
    try:
        sessions.purge()
    finally:
        sessions.close()


async def at_rest(rig: Rig, workloads: Iterable[Workload]) -> dict[str, int]:
    """Every workload's work finished and the finished rows purged; the exact counts then."""
    for work in workloads:
        await work.finish(rig)
    await asyncio.to_thread(purge_finished, rig.database)
    return exact(await asyncio.to_thread(measure, rig))


QUIET = 6.0
"""Seconds the exact counts must hold still before a baseline is taken: longer than the TUI's
slowest poll (the students' requests, every 5 s: its first look opens the database)."""


async def steady(rig: Rig, workloads: Iterable[Workload], within: float = 60.0) -> dict[str, int]:
    """The baseline: the work at rest (:func:`at_rest`), then the exact counts once they held still
    for :data:`QUIET` seconds (what a process opens on its first poll is part of it), at most
    ``within`` seconds."""
    values = await at_rest(rig, workloads)
    deadline = time.monotonic() + within
    since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < QUIET:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(purge_finished, rig.database)
        now = exact(await asyncio.to_thread(measure, rig))
        if now != values:
            values, since = now, time.monotonic()
    return values


async def settle(rig: Rig, baseline: dict[str, int], within: float) -> dict[str, tuple[int, int]]:
    """Wait until the exact counts are back at ``baseline`` (a console's close takes a moment to
    reach every process), at most ``within`` seconds; the ones that are not: name -> (then, now)."""
    deadline = time.monotonic() + within
    while True:
        await asyncio.to_thread(purge_finished, rig.database)
        now = exact(await asyncio.to_thread(measure, rig))
        differ = {name: (baseline.get(name, 0), now.get(name, 0)) for name in baseline.keys() | now.keys()
                  if baseline.get(name, 0) != now.get(name, 0)}
        if not differ or time.monotonic() >= deadline:
            return differ
        await asyncio.sleep(0.5)


# -- the run -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the run began
    units: int  # workload units done by then, all workloads together
    values: dict[str, int]


@dataclass
class Run:
    planned: dict[str, int]
    done: dict[str, int]
    samples: list[Sample]
    seconds: float
    errors: list[str] = field(default_factory=list)


async def run(rig: Rig, workloads: list[Workload], planned: dict[str, int], *, seconds: float,
              sample_every: int, on_sample: Callable[[Sample], None] | None = None) -> Run:
    """The workloads' units interleaved in proportion to ``planned`` (the one furthest behind goes
    next), until all are done or ``seconds`` have passed; sampled every ``sample_every`` units."""
    done = {work.name: 0 for work in workloads}
    samples: list[Sample] = []
    started = time.monotonic()
    units, next_sample = 0, 0

    def take() -> None:
        sample = Sample(time.monotonic() - started, units, measure(rig))
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)

    while True:
        if units >= next_sample:
            await asyncio.to_thread(take)
            next_sample = units + sample_every
        pending = [w for w in workloads if done[w.name] < planned[w.name]]
        if not pending or time.monotonic() - started >= seconds:
            break
        work = min(pending, key=lambda w: (done[w.name] / planned[w.name], w.name))
        did = await work.step(rig, planned[work.name] - done[work.name])
        done[work.name] += did
        units += did
    if samples[-1].units != units:
        await asyncio.to_thread(take)
    return Run(planned, done, samples, time.monotonic() - started)


@dataclass(frozen=True)
class Trend:
    name: str
    first: float
    last: float
    per_100_units: float
    per_hour: float


def trends(samples: list[Sample], warmup_units: int) -> list[Trend]:
    """Each figure's first and last value after the warm-up and its least-squares slope, per 100
    workload units and per hour (at least three samples after the warm-up, else none)."""
    kept = [s for s in samples if s.units >= warmup_units]
    if len(kept) < 3:
        return []
    names = sorted(set().union(*(s.values for s in kept)))
    found = []
    for name in names:
        ys = [float(s.values.get(name, 0)) for s in kept]
        by_units = _slope([float(s.units) for s in kept], ys)
        by_time = _slope([s.at for s in kept], ys)
        found.append(Trend(name, ys[0], ys[-1], by_units * 100, by_time * 3600))
    return found


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope
