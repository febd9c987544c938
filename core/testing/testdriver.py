"""Files for libvirt's own test driver (``test:///path.xml``): the demo lab and test fixtures.

The driver loads a ``<node>`` document of full domain definitions; ``<test:runstate>`` sets each
domain's initial state. Built with ElementTree, so any name (markup, quotes, non-ASCII) is safe.
Run ``python -m core.testing.testdriver`` to rewrite the shipped demo lab.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from core.metadata import LabMeta
from core.model import VMState

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
_RUNSTATE = {VMState.RUNNING: 1, VMState.BLOCKED: 2, VMState.PAUSED: 3, VMState.SHUTDOWN: 4,
             VMState.SHUTOFF: 5, VMState.CRASHED: 6, VMState.PMSUSPENDED: 7}


@dataclass(frozen=True)
class Spec:
    """One domain of a test-driver file."""

    name: str
    state: VMState = VMState.SHUTOFF
    vcpus: int = 1
    memory_mib: int = 512
    meta: LabMeta = field(default_factory=LabMeta)
    disks: tuple[str, ...] = ()
    uuid: str = ""

    @property
    def domain_uuid(self) -> str:
        return self.uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"vm-manager:{self.name}"))


def domain_element(spec: Spec) -> ET.Element:
    domain = ET.Element("domain", {"type": "test"})
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "uuid").text = spec.domain_uuid
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(domain, "vcpu").text = str(spec.vcpus)
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type").text = "hvm"
    if spec.meta != LabMeta():
        ET.SubElement(domain, "metadata").append(spec.meta.to_element())
    devices = ET.SubElement(domain, "devices")
    for index, path in enumerate(spec.disks):
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "source", file=path)
        ET.SubElement(disk, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
    ET.SubElement(domain, f"{{{TEST_NS}}}runstate").text = str(_RUNSTATE[spec.state])
    return domain


def node_xml(specs: Iterable[Spec]) -> str:
    """A whole test-driver file."""
    ET.register_namespace("test", TEST_NS)
    node = ET.Element("node")
    for spec in specs:
        node.append(domain_element(spec))
    ET.indent(node)
    return ET.tostring(node, encoding="unicode") + "\n"


def write(path: Path, specs: Iterable[Spec]) -> str:
    """Write a test-driver file and return its URI."""
    path.write_text(node_xml(specs), encoding="utf-8")
    return f"test://{path.resolve()}"


def demo_specs() -> list[Spec]:
    """The built-in demo lab: two classes of students, mixed states, and a few hostile names."""
    cycle = [VMState.RUNNING, VMState.RUNNING, VMState.SHUTOFF, VMState.RUNNING, VMState.PAUSED,
             VMState.RUNNING, VMState.SHUTOFF, VMState.CRASHED]
    specs: list[Spec] = []
    net101 = ["alice", "bob", "chloe", "david", "emma", "farid", "gabriel", "hugo", "ines",
              "jules", "karim", "lea"]
    for i, user in enumerate(net101):
        specs.append(Spec(f"net101-{user}", cycle[i % len(cycle)], 2, 2048,
                          LabMeta(user, "net101", "debian12", f"2026-09-{i + 1:02d}T08:00:00Z")))
    sys202 = ["manon", "nathan", "oceane", "paul", "quentin", "rose", "sami", "theo"]
    for i, user in enumerate(sys202):
        state = VMState.PMSUSPENDED if i == 5 else cycle[(i + 3) % len(cycle)]
        specs.append(Spec(f"sys202-{user}", state, 4, 4096,
                          LabMeta(user, "sys202", "windows11", f"2026-10-{i + 1:02d}T08:00:00Z")))
    specs += [
        Spec("[b]bold", VMState.RUNNING, 1, 512, LabMeta("mallory", "net101", "debian12")),
        Spec("[@click=app.quit]x", VMState.SHUTOFF, 1, 512, LabMeta("mallory", "sys202")),
        Spec("élève-café-ü", VMState.RUNNING, 1, 1024, LabMeta("zoe", "net101", "debian12")),
        Spec("quote's \"vm\"", VMState.PAUSED, 1, 512),
    ]
    return specs


if __name__ == "__main__":
    write(Path(__file__).parent / "demo" / "lab.xml", demo_specs())
