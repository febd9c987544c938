"""libvirtd restarts in the middle of a session: the Lab shows the loss, reconnects, and resyncs.

This test kills the system libvirtd (SIGTERM to /run/libvirtd.pid) and starts it again with
``libvirtd -d``, so it runs only where libvirtd is not under systemd; it leaves libvirtd running
whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.livelab import RUN_PREFIX, Outside, system_answers, unavailable

from core.errors import HypervisorUnavailable
from core.model import ConnState, VMState
from core.settings import HostSettings

pytestmark = pytest.mark.integration

PIDFILE = Path("/run/libvirtd.pid")


def _libvirtd_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "libvirtd" else None


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("State:"))
    except (OSError, StopIteration):
        return ""


def _start_libvirtd() -> None:
    env = dict(os.environ, LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log")
    subprocess.run(["libvirtd", "-d"], check=True, env=env, timeout=30)


async def _until(check, within: float, what: str) -> None:
    """For the daemon itself, which sends no events: poll a plain check."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.2)


def _ensure_libvirtd() -> None:
    """Whatever the test did, leave a libvirtd that answers."""
    if system_answers():
        return
    if _libvirtd_pid() is None:
        _start_libvirtd()
    deadline = time.monotonic() + 30
    while not system_answers() and time.monotonic() < deadline:
        time.sleep(0.3)


@pytest.fixture
def restartable_libvirtd():
    if os.geteuid() != 0:
        unavailable("restarting libvirtd needs root")
    if Path("/run/systemd/system").exists():
        pytest.skip("libvirtd is managed by systemd here; this test restarts it by hand")
    if _libvirtd_pid() is None:
        unavailable(f"no running libvirtd in {PIDFILE}")
    try:
        yield
    finally:
        pid = _libvirtd_pid()
        if pid is not None:  # a test that stopped it (SIGSTOP) and failed before killing it
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        _ensure_libvirtd()


async def test_libvirtd_restart_mid_session(restartable_libvirtd, outside: Outside, open_lab) -> None:
    keep = outside.define("keep").UUIDString()
    running = outside.define("running", start=True).UUIDString()
    crashed_dom = outside.define("crashed", start=True)
    crashed = crashed_dom.UUIDString()
    victim = outside.define("victim").UUIDString()
    # Stats every half second: calls are often in flight when the daemon goes.
    lab, watch = await open_lab(
        hosts=HostSettings(
            keepalive_interval=1, keepalive_count=3, reconnect_max_delay=2.0, stats_interval=0.5
        )
    )
    for uuid, state in ((keep, VMState.SHUTOFF), (running, VMState.RUNNING),
                        (crashed, VMState.RUNNING), (victim, VMState.SHUTOFF)):
        await watch.vm_in(uuid, state)
    assert lab.host_statuses()[0].state == ConnState.ACTIVE
    qemu_pid = outside.qemu_pid(crashed_dom.name())

    pid = _libvirtd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    await _until(lambda: not _alive(pid), 30, "libvirtd to exit")

    await watch.until(lambda: ConnState.DISCONNECTED in watch.host_states(), 20,
                      "the host to show DISCONNECTED")
    assert lab.host_statuses()[0].state != ConnState.ACTIVE
    assert "lost" in next(h.message for u in watch.updates for h in u.hosts
                          if h.state == ConnState.DISCONNECTED)
    # While nobody watches, a guest's QEMU dies: only a resync can tell.
    os.kill(qemu_pid, signal.SIGKILL)
    await _until(lambda: not _alive(qemu_pid), 10, "QEMU to die")
    await asyncio.sleep(1.5)  # the Lab's reconnection attempts fail meanwhile
    assert lab.host_statuses()[0].state != ConnState.ACTIVE

    _start_libvirtd()
    await _until(system_answers, 30, "libvirtd to answer again")
    # Changes made through a fresh connection, most likely before the Lab is back.
    lab_was_back = lab.host_statuses()[0].state == ConnState.ACTIVE
    outside.domain(victim).undefine()
    newcomer = outside.define("newcomer").UUIDString()

    await watch.until(lambda: lab.host_statuses()[0].state == ConnState.ACTIVE, 30,
                      "the host to be ACTIVE again")
    expected = {keep: VMState.SHUTOFF, running: VMState.RUNNING, crashed: VMState.SHUTOFF,
                newcomer: VMState.SHUTOFF}

    def ours():
        rows = [(vm.uuid, vm.state) for vm in lab.vms() if vm.name.startswith(RUN_PREFIX)]
        return rows if dict(rows) == expected else None

    rows = await watch.until(ours, 20, f"our VMs to be exactly {expected} "
                             f"(Lab reconnected before the changes: {lab_was_back})")
    assert len(rows) == len(expected), f"no duplicate rows: {rows}"
    # The whole inventory matches libvirt: no stale row and no duplicate, ours or not.
    inventory = sorted((vm.uuid, vm.name, vm.state) for vm in lab.vms())
    actual = sorted((d.UUIDString(), d.name(), VMState.from_libvirt(d.state()[0]))
                    for d in outside.conn.listAllDomains(0))
    assert inventory == actual

    # And it still follows events and acts on the new connection.
    [result] = await lab.act("start", [watch.vm(newcomer)])
    assert result.ok, result.message
    await watch.vm_in(newcomer, VMState.RUNNING)


async def test_connection_lost_during_a_call(restartable_libvirtd, outside: Outside, open_lab) -> None:
    """libvirt runs the close callback in the thread that saw the loss: here a worker blocked in
    a call. The Lab must still show the loss, and reconnect (it once never did)."""
    uuid = outside.define("inflight").UUIDString()
    lab, watch = await open_lab(hosts=HostSettings(stats_interval=3600, reconnect_max_delay=2.0))
    vm = await watch.vm_in(uuid, VMState.SHUTOFF)
    pid = _libvirtd_pid()
    assert pid is not None
    # Freeze the daemon, so that a call is surely in flight in a worker thread when it dies.
    os.kill(pid, signal.SIGSTOP)
    call = asyncio.ensure_future(lab.details(vm))
    await asyncio.sleep(0.5)
    assert not call.done()
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: not _alive(pid), 10, "libvirtd to die")
    with pytest.raises(HypervisorUnavailable):
        await asyncio.wait_for(call, 10)
    await watch.until(lambda: ConnState.DISCONNECTED in watch.host_states(), 10,
                      "an update showing DISCONNECTED")
    _start_libvirtd()
    await watch.until(lambda: lab.host_statuses()[0].state == ConnState.ACTIVE, 15,
                      "the host to be ACTIVE again")
    assert watch.vm(uuid) is not None


async def test_cli_reports_a_daemon_that_dies_mid_action(restartable_libvirtd, outside: Outside,
                                                          tmp_path: Path) -> None:
    """``vm-manager halt`` while libvirtd dies: exit 1, one line naming the VM, no traceback."""
    dom = outside.define("cliwait", start=True)  # SeaBIOS ignores ACPI: the halt waits
    env = dict(os.environ, VMM_DATA_DIR=str(tmp_path), VMM_ENV_FILE="/nonexistent")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", "-c", "qemu:///system", "halt", "--yes", "--timeout", "60",
        dom.name(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        stdin=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(4)  # connected, button pressed, waiting for a guest that won't stop
    assert proc.returncode is None
    pid = _libvirtd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    stderr = err.decode()
    assert proc.returncode == 1, (out, stderr)
    assert f"{dom.name()}: lost" in stderr
    assert "Traceback" not in stderr
    _start_libvirtd()  # before the fixtures' cleanup, which needs it to remove the VM
    await _until(system_answers, 30, "libvirtd to answer again")
