"""The load test's core: a class signing in to the portal within a minute and opening its consoles.

``students`` local accounts (made beforehand with the product's own :class:`~core.auth.Accounts`)
arrive at seeded random moments spread uniformly over ``window`` seconds (a Poisson process, given
how many arrive). Each, in a browser of its own (its own cookies and, through a trusted proxy's
``X-Forwarded-For``, its own address: a lab's PCs), loads the sign-in form, signs in, loads "My
VMs", and opens one console through synthetic RFB clients (:mod:`core.testing.rfb`, up to the RFB
ServerInit), which stays open, idle (answering the server's pings as a browser does), until the
whole class has come.

A VM has one owner. The first ``vms`` students own a running tiny VM each and open it from "My
VMs" (its console button: the sign-in's own console link). The others open one through a share
link their teacher made (the admin API, what the TUI's ``c`` does), spread evenly over the VMs,
as many links per VM as ``VMM_VIEWERS_PER_LINK`` requires; the plan is refused when a VM would get
more viewers than ``VMM_VIEWERS_PER_VM``. Both limits stay at their defaults unless ``limits`` says
otherwise.

Every answer that is not 2xx or 3xx, and every console that does not reach ServerInit, is an
error (kept, with what it was); a console the server closes before the class is in is counted.
The server's tree (``serve`` and its console endpoint process) is sampled for RSS and PSS while
the class arrives; its CPU time is read before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import libvirt

from core.auth.accounts import Accounts
from core.metadata import LabMeta
from core.settings import ConsoleSettings
from core.testing.domains import remove_domains, tiny_domain
from core.testing.forms import forms
from core.testing.processes import counts, cpu_seconds, status_field
from core.testing.rfb import RfbViewer, open_from_portal, open_through_server
from core.testing.served import Server

SAMPLE_EVERY = 0.5  # seconds between two looks at the server's memory
PASSWORD_SUFFIX = "-load-password"


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else math.nan
    return statistics.quantiles(values, n=20)[-1]


@dataclass(frozen=True)
class Student:
    username: str
    address: str  # the client address the proxy reports
    arrives: float  # seconds after the start
    vm: str  # UUID of the VM whose console they open
    link: str | None  # the share link they open it by; None: their own VM, from "My VMs"


@dataclass
class Result:
    """One pass of the class: latencies in seconds, memory in MiB, CPU in seconds."""

    signin: list[float] = field(default_factory=list)
    my_vms: list[float] = field(default_factory=list)
    console: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    consoles_open: int = 0  # as the server counted them, the whole class in
    consoles_ended: int = 0  # of those opened, closed by the server before the whole class was in
    wall: float = 0.0  # first arrival to the last console open
    cpu_server: float = 0.0  # the serve process alone
    cpu_tree: float = 0.0  # with its endpoint process
    peak_rss_server: float = 0.0
    peak_rss_tree: float = 0.0
    peak_pss_tree: float = 0.0
    alongside: list[float] = field(default_factory=list)  # what the work run beside the class returned


class Class:
    """The class's accounts (in a database file to copy into each server's data dir) and its VMs,
    named ``<prefix>NN``, owned by the first students; :meth:`close` removes the VMs."""

    def __init__(self, work: Path, conn: libvirt.virConnect, prefix: str, students: int, vms: int) -> None:
        if vms > students:
            raise ValueError(f"{vms} VMs need as many owners: {students} students are too few")
        self.work, self.conn, self.prefix = work, conn, prefix
        tag = "".join(c for c in prefix.lower() if c.isalnum())[-8:]
        self.usernames = [f"u{tag}-{index:03d}" for index in range(students)]
        self.lab_class = prefix.rstrip("-")
        self.accounts_db = work / "accounts.sqlite3"
        self.vm_names = [f"{prefix}{index:02d}" for index in range(vms)]
        self.uuids: list[str] = []

    def make_accounts(self) -> None:
        """The students' local accounts, as ``vm-manager user add`` makes them (an argon2 hash each)."""
        accounts = Accounts(self.accounts_db)
        try:
            for name in self.usernames:
                accounts.add(name, name + PASSWORD_SUFFIX, display_name=f"Student {name}")
        finally:
            accounts.close()

    def start_vms(self) -> None:
        for index, name in enumerate(self.vm_names):
            meta = LabMeta(owner=self.usernames[index], lab_class=self.lab_class)
            dom = self.conn.defineXML(tiny_domain(name, meta=meta))
            self.uuids.append(dom.UUIDString())
            dom.create()

    def database_for(self, data_dir: Path) -> None:
        """A copy of the accounts (sqlite3's backup: whole, whatever its journal holds) as ``data_dir``'s
        database, before its server starts."""
        data_dir.mkdir(parents=True, exist_ok=True)
        source, target = sqlite3.connect(self.accounts_db), sqlite3.connect(data_dir / "vm-manager.sqlite3")
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()

    def close(self) -> None:
        remove_domains(self.conn, self.prefix)


def plan(lab: Class, window: float, seed: int, links: dict[str, list[str]],
         limits: ConsoleSettings) -> list[Student]:
    """Who arrives when and opens what: owners their own VM, the others a share link (``links``:
    each VM's, as many as :func:`links_needed` says) spread evenly over the VMs."""
    rng = random.Random(seed)
    arrivals = [rng.uniform(0, window) for _ in lab.usernames]
    owners = len(lab.uuids)
    taken: dict[str, int] = {}
    students = []
    for index, name in enumerate(lab.usernames):
        address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 + 1}"
        if index < owners:
            students.append(Student(name, address, arrivals[index], lab.uuids[index], None))
            continue
        uuid = lab.uuids[(index - owners) % owners]
        seat = taken.get(uuid, 0)
        taken[uuid] = seat + 1
        link = links[uuid][seat // limits.viewers_per_link]
        students.append(Student(name, address, arrivals[index], uuid, link))
    return students


def links_needed(students: int, vms: int, limits: ConsoleSettings) -> int:
    """Share links each VM needs for its share of the students who own none; ValueError when a VM
    would have more viewers (its owner among them) than ``VMM_VIEWERS_PER_VM``."""
    viewers = math.ceil((students - vms) / vms)
    if viewers + 1 > limits.viewers_per_vm:
        raise ValueError(f"{students} students on {vms} VMs is {viewers + 1} viewers a VM: over "
                         f"VMM_VIEWERS_PER_VM ({limits.viewers_per_vm})")
    return math.ceil(viewers / limits.viewers_per_link)


async def _arrive(student: Student, base: str, start: float, result: Result, opened: list[RfbViewer],
                  browsers: list[aiohttp.ClientSession]) -> None:
    """One student's visit; every failure goes into ``result.errors``, none escapes. The browser
    and the viewer stay open (in ``browsers``, ``opened``) until the caller closes them."""
    await asyncio.sleep(max(0.0, start + student.arrives - time.monotonic()))
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                    headers={"X-Forwarded-For": student.address},
                                    timeout=aiohttp.ClientTimeout(total=120))
    browsers.append(browser)
    step = "the sign-in form"
    try:
        async with browser.get(f"{base}/login", allow_redirects=False) as answer:
            if answer.status != 200:
                raise ConnectionError(f"answered {answer.status}")
            login = next(f for f in forms(await answer.text()) if f.action == "/login")
        step = "sign-in"
        began = time.monotonic()
        async with browser.post(f"{base}/login", allow_redirects=False, data={
                "csrf": login.fields["csrf"], "username": student.username,
                "password": student.username + PASSWORD_SUFFIX}) as answer:
            await answer.read()
            if (answer.status, answer.headers.get("Location")) != (303, "/"):
                raise ConnectionError(f"answered {answer.status} {answer.headers.get('Location')}")
        result.signin.append(time.monotonic() - began)
        step = "My VMs"
        began = time.monotonic()
        async with browser.get(f"{base}/", allow_redirects=False) as answer:
            page = await answer.text()
            if answer.status != 200:
                raise ConnectionError(f"answered {answer.status}")
        result.my_vms.append(time.monotonic() - began)
        step = "the console"
        began = time.monotonic()
        if student.link is None:
            button = next((f for f in forms(page) if f.action == f"/vms/{student.vm}/console"), None)
            if button is None:
                raise ConnectionError("My VMs shows no console button for the student's VM")
            viewer = await open_from_portal(browser, base, student.vm, button.fields["csrf"])
        else:
            viewer = await open_through_server(browser, base, student.link)
        result.console.append(time.monotonic() - began)
        viewer.idle()
        opened.append(viewer)
    except Exception as exc:  # noqa: BLE001 -- every failure is a figure, whatever it is
        result.errors.append(f"{student.username}, {step}: {type(exc).__name__}: {exc}")


async def _sample(pid: int, result: Result, stop: asyncio.Event) -> None:
    while True:
        tree, own = await asyncio.to_thread(lambda: (counts(pid), status_field(pid, "VmHWM")))
        result.peak_rss_tree = max(result.peak_rss_tree, tree.rss_kib / 1024)
        result.peak_pss_tree = max(result.peak_pss_tree, tree.pss_kib / 1024)
        result.peak_rss_server = max(result.peak_rss_server, own / 1024)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
            return


async def run_pass(lab: Class, work: Path, *, window: float, seed: int, limits: ConsoleSettings | None = None,
                   env: dict[str, str] | None = None,
                   alongside: Callable[[threading.Event], list[float]] | None = None) -> Result:
    """The class once, on a server of its own (data in ``work``, the accounts copied in, ``env``
    added to its settings, the viewer limits ``limits``: by default the defaults). ``alongside``
    runs in a thread from the first arrival until the last console opened (the event says when
    to stop); what it returns is kept."""
    limits = limits or ConsoleSettings()
    per_vm = links_needed(len(lab.usernames), len(lab.uuids), limits)
    lab.database_for(work / "data")
    server = Server(work, limits.viewers_per_link, limits.viewers_per_vm,
                    env={"VMM_TRUSTED_PROXIES": "127.0.0.1", **(env or {})})
    result = Result()
    opened: list[RfbViewer] = []
    browsers: list[aiohttp.ClientSession] = []
    try:
        await server.start()
        links: dict[str, list[str]] = {uuid: [] for uuid in lab.uuids}
        for _ in range(per_vm):
            for uuid, url in (await server.links(lab.uuids)).items():
                links[uuid].append(url)
        students = plan(lab, window, seed, links, limits)
        stop_sampling, stop_alongside = asyncio.Event(), threading.Event()
        cpu_before = cpu_seconds(server.pid)
        sampler = asyncio.create_task(_sample(server.pid, result, stop_sampling))
        beside = asyncio.create_task(asyncio.to_thread(alongside, stop_alongside)) if alongside else None
        start = time.monotonic()
        await asyncio.gather(*(_arrive(s, server.base, start, result, opened, browsers) for s in students))
        result.wall = time.monotonic() - start
        stop_alongside.set()
        result.consoles_open = int((await server.viewers())["total"])
        result.consoles_ended = sum(viewer.ended for viewer in opened)
        cpu_after = cpu_seconds(server.pid)
        result.cpu_server, result.cpu_tree = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
        stop_sampling.set()
        await sampler
        if beside is not None:
            result.alongside = await beside
        result.peak_rss_server = max(result.peak_rss_server, status_field(server.pid, "VmHWM") / 1024)
    finally:
        await asyncio.gather(*(viewer.close() for viewer in opened), return_exceptions=True)
        await asyncio.gather(*(browser.close() for browser in browsers), return_exceptions=True)
        server.stop()
    return result
