import socket
from collections import Counter

from core.lab import DEMO_LAB, DEMO_URI, choose_uri
from core.model import VMState
from core.settings import Settings
from core.testing import testdriver


def test_shipped_demo_file_is_what_the_generator_makes() -> None:
    assert DEMO_LAB.read_text(encoding="utf-8") == testdriver.node_xml(testdriver.demo_specs()), \
        "run `python -m core.testing.testdriver` to rewrite core/demo/lab.xml"


async def test_demo_lab_loads_with_mixed_states_and_hostile_names(demo_lab) -> None:
    vms = demo_lab.vms()
    assert len(vms) == 24
    states = Counter(vm.state for vm in vms)
    assert {VMState.RUNNING, VMState.SHUTOFF, VMState.PAUSED, VMState.CRASHED} <= set(states)
    names = {vm.name for vm in vms}
    assert {"[b]bold", "[@click=app.quit]x", "élève-café-ü", "quote's \"vm\""} <= names
    assert {vm.meta.lab_class for vm in vms} >= {"net101", "sys202"}
    # The test driver has no figures: nothing may be invented.
    assert all(vm.figures.cpu_percent is None for vm in vms)


def test_uri_choice_order(monkeypatch, tmp_path) -> None:
    """-c, then LIBVIRT_DEFAULT_URI, then a system socket that really answers, then the demo."""
    sock_path = tmp_path / "libvirt-sock"
    monkeypatch.setattr("core.lab._SYSTEM_SOCKETS", (str(sock_path),))
    assert choose_uri(Settings(), "qemu+ssh://lab1/system") == ("qemu+ssh://lab1/system", False)
    assert choose_uri(Settings(connect_uri="test:///default")) == ("test:///default", False)
    assert choose_uri(Settings()) == (DEMO_URI, True)  # no socket at all
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(sock_path))
        assert choose_uri(Settings()) == (DEMO_URI, True)  # a socket nobody listens on
        server.listen()
        assert choose_uri(Settings()) == ("qemu:///system", False)
