"""Domain XML built from the elements and attributes the domain reader reads (``core/virt/domainxml.py``,
``core/metadata.py``), with valid and odd values, each defined in libvirt's test driver
(``test:///default``, whose state every connection of the process shares): whatever libvirt accepts
becomes an inventory row, a table row, a detail view, a ``list --json`` entry and a row of the
portal's page, never a failure; and its names and owner reach each of them as literal text (the one
rule of ``core/text.py``), never as escapes, markup, HTML or reordering."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html.parser
import io
import json
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from support import leftovers
from support.portalweb import Student, add_accounts
from support.webtest import Console, start_console

from core.lab import Lab
from core.metadata import NAMESPACE
from core.model import VM
from core.settings import Settings
from core.text import json_text, printable
from core.virt.domainxml import _UNIT_TO_KIB, GUEST_AGENT_CHANNEL
from fuzz.strategies import SHARED_FIXTURE, table_row, unshown, xml_text
from tui.cli.vms import _print_vms
from tui.screens.detail import devices_text, summary_text

URI = "test:///default"
WAIT = 10.0  # seconds an event may take to reach the inventory on a loaded machine

numbers = st.one_of(st.integers(-2, 2**20).map(str),
                    st.sampled_from(["", " 4 ", "1.5", "abc", "0x10", "1e3"]))
odd = xml_text(max_size=3)  # any text an attribute or an element may carry


def _maybe(value: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), value)


def _rarely(draw: st.DrawFn, good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
    """Mostly ``good``: libvirt refuses a domain whose memory, vCPUs, type or UUID are odd, and a
    refused domain tests nothing of ours."""
    return draw(bad if draw(st.integers(0, 9)) == 5 else good)  # not 0: Hypothesis favours the bounds


paths = st.one_of(st.sampled_from(["/var/lib/a.qcow2", "/srv/é 日本/b.img"]),
                  xml_text(max_size=4).map(lambda t: "/p/" + t))


@st.composite
def disks(draw: st.DrawFn, index: int) -> ET.Element:
    """A disk as libvirt takes it, its paths any text; now and then odd in its shape too."""
    kind = _rarely(draw, st.sampled_from(["file", "block", "volume", "network"]),
                   st.sampled_from(["dir", "x"]))
    disk = ET.Element("disk", type=kind, device=_rarely(draw, st.sampled_from(["disk", "cdrom"]), odd))
    source = {"file": {"file": draw(paths)}, "block": {"dev": draw(paths)},
              "volume": {"pool": draw(xml_text(max_size=3)), "volume": draw(xml_text(max_size=3))},
              "network": {"protocol": "nbd", "name": draw(xml_text(max_size=3))},
              }.get(kind, {"dir": draw(paths)})
    if draw(st.integers(0, 5)) != 3:  # a CD-ROM may be empty
        ET.SubElement(disk, "source", source)
    bus, prefix = draw(st.sampled_from([("virtio", "vd"), ("sata", "sd"), ("scsi", "sd")]))
    ET.SubElement(disk, "target", dev=_rarely(draw, st.just(prefix + "abcdefgh"[index]), odd), bus=bus)
    for flag in ("readonly", "shareable"):
        if draw(st.booleans()):
            ET.SubElement(disk, flag)
    node = disk
    for _ in range(draw(st.integers(0, 2))):  # a backing chain, as the live XML shows it
        node = ET.SubElement(node, "backingStore", type="file")
        ET.SubElement(node, "format", type="qcow2")
        ET.SubElement(node, "source", file=draw(paths))
    return disk


@st.composite
def interfaces(draw: st.DrawFn) -> ET.Element:
    kind = _rarely(draw, st.sampled_from(["network", "bridge", "user", "direct", "ethernet"]), odd)
    interface = ET.Element("interface", type=kind)
    mac = st.from_regex(r"52:54:00(:[0-9a-f]{2}){3}", fullmatch=True)
    if draw(st.booleans()):
        ET.SubElement(interface, "mac", address=_rarely(draw, mac, odd))
    name = xml_text(min_size=1, max_size=4)
    source = {"network": {"network": draw(name)}, "bridge": {"bridge": draw(name)},
              "direct": {"dev": draw(name), "mode": "bridge"}}.get(kind)
    if source is not None:
        ET.SubElement(interface, "source", source)
    if draw(st.booleans()):
        models = st.sampled_from(["virtio", "e1000", "rtl8139"])
        ET.SubElement(interface, "model", type=_rarely(draw, models, odd))
    if draw(st.booleans()):
        ET.SubElement(interface, "target", dev=draw(xml_text(min_size=1, max_size=3)))
    return interface


@st.composite
def graphics(draw: st.DrawFn) -> ET.Element:
    element = ET.Element("graphics", type=_rarely(draw, st.sampled_from(["vnc", "spice"]), st.just("x")),
                         **_attrs(draw, port=st.just(_rarely(draw, st.sampled_from(["-1", "5900", "5901"]),
                                                             st.sampled_from(["0", "70000", "abc", "-5"]))),
                                  autoport=st.sampled_from(["yes", "no"])))
    listen = draw(st.sampled_from([None, {"type": "address", "address": "127.0.0.1"},
                                   {"type": "address", "address": "::1"}, {"type": "socket"},
                                   {"type": "none"},
                                   {"type": "network", "network": "default"}]))
    if listen is None:  # the old attributes instead of a <listen> child
        element.attrib.update(_attrs(draw, listen=st.one_of(st.just("127.0.0.1"), odd), socket=paths))
    else:
        if listen["type"] == "socket":
            listen["socket"] = draw(paths)
        ET.SubElement(element, "listen", listen)
    return element


@st.composite
def channels(draw: st.DrawFn) -> ET.Element:
    channel = ET.Element("channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", **_attrs(
        draw, name=st.one_of(st.just(GUEST_AGENT_CHANNEL), odd),
        state=st.one_of(st.sampled_from(["connected", "disconnected"]), odd)))
    return channel


@st.composite
def metadata(draw: st.DrawFn) -> ET.Element:
    element = ET.Element("metadata")
    ours = ET.SubElement(element, f"{{{NAMESPACE}}}vm")
    tags = st.sampled_from(["owner", "class", "template", "created", "other"])
    for tag in draw(st.lists(tags, max_size=6)):
        child = ET.SubElement(ours, f"{{{NAMESPACE}}}{tag}")
        child.text = draw(st.one_of(st.sampled_from(["alice", "net101", "tiny", "2026-11-24T09:00:00Z", ""]),
                                    xml_text(max_size=6)))
        if draw(st.integers(0, 5)) == 0:
            ET.SubElement(child, f"{{{NAMESPACE}}}nested").text = "x"
    if draw(st.booleans()):
        ET.SubElement(ET.SubElement(element, "{https://other.example/ns}app"), "{https://other.example/ns}v")
    return element


def _attrs(draw: st.DrawFn, **choices: st.SearchStrategy[str]) -> dict[str, str]:
    """Each attribute given or left out."""
    return {name: value for name, strategy in choices.items()
            if (value := draw(_maybe(strategy))) is not None}


@st.composite
def domains(draw: st.DrawFn) -> tuple[str, bool]:
    """A domain document, and whether to start the domain (the live XML then has more)."""
    domain = ET.Element("domain", type=_rarely(draw, st.just("test"), st.sampled_from(["kvm", "x", ""])))
    ET.SubElement(domain, "name").text = "vmm-fuzz-" + draw(xml_text(max_size=6))
    if (uuid := draw(_maybe(st.uuids().map(str)))) is not None:
        ET.SubElement(domain, "uuid").text = _rarely(draw, st.just(uuid), odd)
    units = st.sampled_from(sorted(_UNIT_TO_KIB))
    memory = ET.SubElement(domain, "memory", _attrs(draw, unit=st.just(_rarely(draw, units, st.just("x")))))
    memory.text = _rarely(draw, st.integers(1, 2**20).map(str), numbers)
    if draw(st.booleans()):
        current = ET.SubElement(domain, "currentMemory",
                                _attrs(draw, unit=st.sampled_from(["KiB", "MiB", "b"])))
        current.text = _rarely(draw, st.integers(1, 2**16).map(str), numbers)
    vcpus = draw(st.integers(1, 8))
    vcpu = ET.SubElement(domain, "vcpu", _attrs(draw, current=st.integers(1, vcpus).map(str),
                                                placement=st.just("static")))
    vcpu.text = _rarely(draw, st.just(str(vcpus)), numbers)
    ET.SubElement(ET.SubElement(domain, "os"), "type").text = "hvm"
    if draw(st.integers(0, 3)):
        domain.append(draw(metadata()))
    devices = ET.SubElement(domain, "devices")
    for index in range(draw(st.integers(0, 3))):
        devices.append(draw(disks(index)))
    for strategy in (interfaces(), graphics(), channels()):
        for element in draw(st.lists(strategy, max_size=2)):
            devices.append(element)
    return ET.tostring(domain, encoding="unicode"), draw(st.booleans())


# -- what every example is read by ------------------------------------------------------------------
@dataclass
class Readers:
    lab: Lab
    server: Console
    operator: Student
    outside: libvirt.virConnect

    async def row(self, uuid: str, present: bool = True) -> VM | None:
        """The inventory's row of ``uuid`` once its event arrived (None once it is gone)."""
        deadline = time.monotonic() + WAIT
        while True:
            vm = next((vm for vm in self.lab.vms() if vm.uuid == uuid), None)
            if (vm is not None) == present or time.monotonic() > deadline:
                return vm
            await asyncio.sleep(0.005)


@pytest.fixture
async def readers(tmp_path: Path) -> AsyncIterator[Readers]:
    """The Lab on test:///default, and the portal on it with olga, an operator (she sees every VM)."""
    run_dir = leftovers.run_dir()
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", runtime_dir=run_dir)
    add_accounts(settings)
    outside = libvirt.open(URI)
    lab = await Lab.open(settings, URI)
    server = await start_console(settings, lab)
    try:
        olga = Student(server)
        assert (await olga.sign_in("olga")).status == 303
        yield Readers(lab, server, olga, outside)
    finally:
        await server.close()
        await lab.close()
        for dom in outside.listAllDomains():
            if dom.name().startswith("vmm-fuzz-"):
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                dom.undefine()
        outside.close()
        shutil.rmtree(run_dir, ignore_errors=True)


class _Cells(html.parser.HTMLParser):
    """The text of the portal table's name and owner cells, by the row's UUID."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._row = ""
        self._cell = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-uuid"):
            self._row = found["data-uuid"] or ""
            self.rows[self._row] = {}
        elif tag in ("th", "td") and self._row and found.get("class") in ("name", "owner"):
            self._cell = found["class"] or ""
            self.rows[self._row][self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = ""
        elif tag == "tr":
            self._row = ""

    def handle_data(self, data: str) -> None:
        if self._row and self._cell:
            self.rows[self._row][self._cell] += data


def _literal(shown: str, value: str, where: str) -> None:
    """``value`` is in ``shown`` as the one rule writes it (a line break of its own escaped), and
    nothing else ``shown`` holds is unshown but the line breaks between its own lines."""
    assert printable(value) in shown, (where, value, shown)
    assert not unshown(shown.replace("\n", "")), (where, shown)


@SHARED_FIXTURE
@given(domain=domains())
@example(domain=("<domain type='test'><name>vmm-fuzz-\u202egpj.exe[bold]&lt;b&gt;\x85</name>"
                 "<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os><metadata>"
                 f"<lab:vm xmlns:lab='{NAMESPACE}'><lab:owner>&lt;script&gt;[red]\x1b</lab:owner></lab:vm>"
                 "</metadata></domain>".replace("\x1b", "\u009b"), True))
async def test_any_domain_libvirt_accepts_is_read_and_shown_literally(readers: Readers,
                                                                     domain: tuple[str, bool]) -> None:
    xml, start = domain
    try:
        dom = readers.outside.defineXML(xml)
    except libvirt.libvirtError as exc:
        event("refused by libvirt: " + str(exc)[:70])
        return
    try:
        if start:
            with contextlib.suppress(libvirt.libvirtError):
                dom.create()
        event("defined, running" if dom.isActive() else "defined")
        vm = await readers.row(dom.UUIDString())
        assert vm is not None, "the domain never reached the inventory"
        assert vm.name == dom.name()
        await _shown_everywhere(readers, vm)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        uuid = dom.UUIDString()
        dom.undefine()
        assert await readers.row(uuid, present=False) is None


async def _shown_everywhere(readers: Readers, vm: VM) -> None:
    now = time.time()
    # the TUI: the table's row, the detail view's summary and devices
    row, name_cell = table_row(vm, now)
    assert not unshown(row), row
    assert name_cell in row
    assert printable(vm.name).startswith(name_cell), row
    summary = summary_text(vm, now).plain
    _literal(summary, vm.name, "summary")
    if vm.meta.owner:
        _literal(summary, vm.meta.owner, "summary")
    info = await readers.lab.details(vm)
    devices = devices_text(info, vm).plain
    assert not unshown(devices.replace("\n", "")), devices
    lines = (4 + max(1, len(info.disks)) + sum(len(d.backing) for d in info.disks)
             + max(1, len(info.interfaces)) + max(1, len(info.graphics)))
    assert devices.count("\n") == lines, devices  # one line per thing: no line break came from the XML
    # the CLI: list and list --json (the code path, in-process)
    for as_json in (False, True):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            _print_vms([vm], argparse.Namespace(classes=[], json=as_json))
        assert not unshown(out.getvalue().replace("\n", ""))
        if as_json:
            listed = json.loads(out.getvalue())
            assert listed == json.loads(json_text([vm.as_json()]))
            assert (listed[0]["name"], listed[0]["owner"]) == (vm.name, vm.meta.owner)
        else:
            assert printable(vm.name) in out.getvalue()
    # the portal: the operator's page lists it, its name and owner as text
    page = await readers.operator.get("/")
    assert page.status == 200
    cells = _Cells()
    cells.feed(page.text)
    row = cells.rows[vm.uuid]
    assert row["name"] == printable(vm.name, multiline=True)
    assert row["owner"] == printable(vm.meta.owner or "—", multiline=True)
