"""A guest agent is the guest's to answer: what it says never reaches the operator's screen raw.

QEMU owns the agent's channel socket, so the guest itself answers: the tiny template's init, with
``vmm.agent=hostile`` on its kernel command line, answers ``guest-sync`` and
``guest-network-get-interfaces`` on its virtio-serial port as a student who is root in a guest
could: ``ip-address`` strings holding ESC [2J, an OSC 0 title, an OSC 52 clipboard write, a line
feed and a fake table row, a scoped IPv6 address whose scope is an escape, and one valid address,
10.2.3.4 (see ``scripts/build_template_tiny.sh``). One boot, under TCG.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import libvirt
import pytest
from support.cli import vm_manager
from support.livelab import URI, OpenLab, Outside, domain_type

from core.metadata import LabMeta
from core.provision.domainbuild import kernel_domain

pytestmark = pytest.mark.integration

AGENT_WITHIN = 120.0  # boot under TCG on a busy 2-core machine, then the agent's first answer
VALID = "10.2.3.4"
LAB_CLASS = "hostile101"
LIST_TRIES = 5


def listed(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``vm-manager list ARGS``, run again (a few times) while it shows no address: ``list`` gives
    the agent LIST_ADDRESS_WAIT, which a busy machine's TCG guest may need more than once."""
    for _ in range(LIST_TRIES):
        out = vm_manager("-c", URI, "list", *args, **env)
        assert out.returncode == 0, out.stderr
        if VALID in out.stdout:
            break
    return out


async def test_a_hostile_guest_agent_gets_only_its_valid_address_shown(
        outside: Outside, tiny_template: Path, open_lab: OpenLab, tmp_path: Path) -> None:
    folder = outside.shared_dir()
    xml = kernel_domain(outside.name("hostile-agent"), tiny_template / "vmlinuz",
                        tiny_template / "initrd.img", "console=tty0 console=ttyS0 vmm.agent=hostile",
                        None, folder / "serial.log",
                        domain_type=domain_type(), meta=LabMeta(owner="mallory", lab_class=LAB_CLASS),
                        guest_agent=True)
    dom = outside.conn.defineXML(xml)
    uuid = dom.UUIDString()
    outside.uuids.append(uuid)
    lab, watch = await open_lab()
    dom.create()

    # The lab asks the agent once it connects (libvirt's agent event): only the address is kept.
    vm = await watch.until(lambda: (found := watch.vm(uuid)) is not None and found.ips and found,
                           within=AGENT_WITHIN, what="the guest agent's addresses")
    assert vm.ips == (VALID,)
    # ... and what libvirt handed over was the guest's hostile text, as the guest wrote it.
    said = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
    addresses = [entry["addr"] for iface in said.values() for entry in iface["addrs"]]
    assert "10.1.1.1\nFAKEROW running root" in addresses
    assert any("\x1b]52;" in address for address in addresses)

    env = {"VMM_DATA_DIR": str(tmp_path / "data")}
    table = listed("--class", LAB_CLASS, env=env)
    header, row = table.stdout.splitlines()  # one row: no line the guest made up
    assert header.split()[-1] == "IP"
    assert row.split()[-1] == VALID
    as_json = listed("--json", "--class", LAB_CLASS, env=env)
    assert [r["ips"] for r in json.loads(as_json.stdout)] == [[VALID]]
    for out in (table, as_json):
        text = out.stdout + out.stderr
        assert not {"\x1b", "\x07", "\x9b", "\r"} & set(text)
        assert "FAKEROW" not in text
        assert "PWNED" not in text
        assert "ZWNob" not in text
