"""The inventory on libvirt's real test driver: filled once, then kept current by events."""

import asyncio
import time
from dataclasses import replace

import libvirt
import pytest

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VM, Update, VMState
from core.testing import testdriver
from core.testing.testdriver import Spec
from core.virt.inventory import Inventory


class Recorder:
    """Every update delivered to this loop, and a way to wait (at most 3 s) for a condition."""

    def __init__(self, lab: Lab) -> None:
        self.updates: list[Update] = []
        self._arrived = asyncio.Event()
        self.unsubscribe = lab.subscribe(self._on_update)

    def _on_update(self, update: Update) -> None:
        self.updates.append(update)
        self._arrived.set()

    def changes(self, name: str | None = None) -> list:
        return [c for u in self.updates for c in u.changes if name is None or c.vm.name == name]

    async def wait(self, until) -> None:
        async with asyncio.timeout(3):
            while not until():
                self._arrived.clear()
                await self._arrived.wait()


async def test_filled_once_with_metadata(settings, lab_file) -> None:
    uri = lab_file([Spec("a", VMState.RUNNING, 2, 1024, LabMeta("alice", "net101", "deb")),
                    Spec("b", VMState.SHUTOFF)])
    lab = await Lab.open(settings, uri)
    try:
        by_name = {vm.name: vm for vm in lab.vms()}
        assert by_name["a"].state == VMState.RUNNING
        assert by_name["a"].vcpus == 2
        assert by_name["a"].memory_mib == 1024
        assert by_name["a"].meta.owner == "alice"
        assert by_name["b"].state == VMState.SHUTOFF
        assert by_name["b"].meta == LabMeta()
        assert lab.host_statuses()[0].state == "active"
    finally:
        await lab.close()


async def test_outside_events_reach_subscribers_without_refresh(settings) -> None:
    """test:///default shares state and events between the connections of one process."""
    lab = await Lab.open(settings, "test:///default")
    seen = Recorder(lab)
    outside = libvirt.open("test:///default")
    name = "vmm-unit-outside"
    dom = outside.defineXML(_domain_xml(name))

    def states() -> list[VMState]:
        return [c.vm.state for c in seen.changes(name)]

    try:
        await seen.wait(lambda: bool(seen.changes(name)))
        dom.create()
        await seen.wait(lambda: VMState.RUNNING in states())
        dom.suspend()
        await seen.wait(lambda: VMState.PAUSED in states())
        dom.destroy()
        await seen.wait(lambda: states()[-1] == VMState.SHUTOFF)
        dom.undefine()
        await seen.wait(lambda: seen.changes(name)[-1].kind == "removed")
        kinds = [(c.kind, c.what) for c in seen.changes(name)]
        assert kinds[0] == ("added", "appeared")
        assert kinds[-1] == ("removed", "undefined")
        assert all(vm.name != name for vm in lab.vms())
    finally:
        seen.unsubscribe()
        outside.close()
        await lab.close()


def _domain_xml(name: str) -> str:
    import xml.etree.ElementTree as ET

    return ET.tostring(testdriver.domain_element(Spec(name)), encoding="unicode")


def _state(lab: Lab, name: str) -> VMState | None:
    return next((vm.state for vm in lab.vms() if vm.name == name), None)


async def test_changes_name_the_action_that_caused_them(settings, lab_file) -> None:
    lab = await Lab.open(settings, lab_file([Spec("a", VMState.RUNNING)]))
    seen = Recorder(lab)
    try:
        await lab.act("suspend", lab.vms())
        await seen.wait(lambda: any(c.cause for c in seen.changes()))
        change = next(c for c in seen.changes() if c.cause)
        assert (change.vm.name, change.cause, change.vm.state) == ("a", "suspend", VMState.PAUSED)
    finally:
        await lab.close()


async def test_one_batch_per_burst(settings, lab_file) -> None:
    lab = await Lab.open(settings, lab_file([Spec(f"v{i}", VMState.RUNNING) for i in range(30)]))
    seen = Recorder(lab)
    try:
        await lab.act("destroy", lab.vms())
        await seen.wait(lambda: sum(c.vm.state == VMState.SHUTOFF for c in seen.changes()) >= 30)
        assert len({c.vm.name for c in seen.changes() if c.vm.state == VMState.SHUTOFF}) == 30
        assert len(seen.updates) < 30  # coalesced: fewer batches than changes
    finally:
        await lab.close()


async def test_unreachable_uri_is_a_clear_error(settings) -> None:
    from core.errors import HypervisorUnavailable

    with pytest.raises(HypervisorUnavailable, match="cannot connect to test:///no/such/file.xml"):
        await Lab.open(settings, "test:///no/such/file.xml")


async def test_a_read_overtaken_by_an_event_is_not_applied(settings, lab_file) -> None:
    """A worker's read that started before an event must not overwrite what the event said."""
    from core.virt import eventloop

    lab = await Lab.open(settings, lab_file([Spec("a", VMState.RUNNING)]))
    host = next(iter(lab.hosts.values()))
    vm = lab.vms()[0]

    async def scenario():
        seen = dict(host._events_seen)
        (read,), _gone = await host.call(host._read_uuids, {vm.uuid})  # reads "running"...
        await host.call(lambda: host.domain(vm.uuid).suspend())  # ...then an event overtakes it
        async with asyncio.timeout(2):
            await host.inventory.wait_for(vm.key, lambda v: v is not None and v.state == VMState.PAUSED)
        return read, host._fresh([read], seen)

    try:
        read, (current, stale) = await eventloop.run_on_core(scenario())
        assert read.state == VMState.RUNNING
        assert current == []
        assert stale == [vm.uuid]
        assert lab.vms()[0].state == VMState.PAUSED
    finally:
        await lab.close()


async def test_a_domain_defined_while_the_sync_reads_stays(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A domain defined after the sync took its list, and put by its own event's re-read before
    the sync ends, is not dropped by the sync (it was, once in seven libvirtd restarts)."""
    from core.virt.connection import Host

    outside = libvirt.open("test:///default")  # one process: the same driver state as the Lab's
    name = "vmm-defined-mid-sync"
    read_all = Host._read_all

    def late_define(host: Host) -> list:
        listed = read_all(host)
        dom = outside.defineXML(f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                                "<os><type>hvm</type></os></domain>")
        key = (host.name, dom.UUIDString())
        deadline = time.monotonic() + 5
        while host.inventory.get(key) is None and time.monotonic() < deadline:  # the event's re-read
            time.sleep(0.01)
        assert host.inventory.get(key) is not None, "the define's event was not read meanwhile"
        return listed

    monkeypatch.setattr(Host, "_read_all", late_define)
    lab = await Lab.open(settings, "test:///default")
    try:
        assert name in [vm.name for vm in lab.vms()]
    finally:
        await lab.close()
        outside.lookupByName(name).undefine()
        outside.close()


def test_only_addresses_that_parse_and_reach_the_vm_are_kept() -> None:
    """What a guest agent says is the guest's to make: text in ip-address is dropped, not shown."""
    from core.virt.connection import reachable_addresses

    def addrs(*values: str) -> dict:
        return {"addrs": [{"addr": value, "prefix": 24, "type": 0} for value in values], "hwaddr": None}

    found = {
        "lo": addrs("127.0.0.1", "::1", "10.0.0.99"),  # lo is never a way in, whatever it says
        "eth0": addrs("10.9.9.9\x1b[2J", "10.9.9.8\x1b]0;PWNED\x07", "10.1.1.1\nFAKEROW running root",
                      "\x1b]52;c;ZWNobyBQV05FRA==\x07", "fd00::9%\x1b[2J", "fe80::1%eth0", "10.2.3.4",
                      "010.1.1.1", "10.2.3.4 ", "", "2001:DB8:0:0::1", "127.0.0.2", "169.254.1.1",
                      "fe80::5054:ff:fe12:3456", "224.0.0.1", "0.0.0.0", "::"),
        "eth1": {"addrs": [{"prefix": 24, "type": 0}, {"addr": None}], "hwaddr": None},
        "eth2": {"addrs": None},
    }
    assert reachable_addresses(found) == ("10.2.3.4", "2001:db8::1")
    assert reachable_addresses({}) == ()


async def test_a_halt_under_way_is_marked_on_the_record_until_the_vm_stops() -> None:
    inventory = Inventory()
    vm = VM("h", "u-1", "v", VMState.RUNNING, 1, 512)
    inventory.put(vm)
    assert inventory.begin_halt(vm.key, 1000.0) is None
    assert inventory.get(vm.key).halting_until == 1000.0
    assert inventory.begin_halt(vm.key, 2000.0) == 1000.0  # one halt at a time: the first's deadline
    inventory.put(replace(vm, ips=("10.0.0.5",)))  # a host's fresh record knows nothing of the halt
    assert inventory.get(vm.key).halting_until == 1000.0
    inventory.put(replace(vm, state=VMState.SHUTOFF))  # stopped: the mark goes
    assert inventory.get(vm.key).halting_until is None
    assert inventory.halting_until(vm.key) is None
    inventory.put(vm)  # started again: not halting
    assert inventory.get(vm.key).halting_until is None
    assert inventory.begin_halt(vm.key, 3000.0) is None
    inventory.end_halt(vm.key)  # a halt that failed: the mark goes too
    assert inventory.get(vm.key).halting_until is None
    await asyncio.sleep(0)


def test_addresses_are_asked_only_of_whoever_can_tell() -> None:
    """Leases for an interface on a libvirt network, the agent when its channel is there and not
    known to be disconnected; a domain with neither has no address to look up."""
    import xml.etree.ElementTree as ET

    import libvirt

    from core.provision.domainbuild import kernel_domain
    from core.testing.domains import tiny_domain
    from core.virt import domainxml
    from core.virt.connection import address_sources

    lease = libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE
    agent = libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT
    assert address_sources(domainxml.parse(tiny_domain("quiet"))) == ()
    with_agent = kernel_domain("agent", "/k", "/i", guest_agent=True)
    assert address_sources(domainxml.parse(with_agent)) == (agent,)
    root = ET.fromstring(with_agent)
    root.find("devices/channel/target").set("state", "disconnected")  # as the live XML says it
    interface = ET.SubElement(root.find("devices"), "interface", type="network")
    ET.SubElement(interface, "source", network="default")
    assert address_sources(domainxml.parse(ET.tostring(root, encoding="unicode"))) == (lease,)
    root.find("devices/channel/target").set("state", "connected")
    assert address_sources(domainxml.parse(ET.tostring(root, encoding="unicode"))) == (lease, agent)
