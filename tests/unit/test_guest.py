"""core.testing.guest against a fake guest agent standing in for ``libvirt_qemu.qemuAgentCommand``.

The real agent is exercised by tests/integration/test_live_debian_template.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import libvirt
import pytest

from core.errors import ActionFailed, InvalidInput, NotFound, VMManagerError
from core.testing import guest


class Dom:
    def name(self) -> str:
        return "net101-alice"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def libvirt_error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None, 0, 0)
    return exc


class Agent:
    """Answers commands as qemu-ga does; records what it was sent."""

    def __init__(self, handler: Callable[[str, dict[str, Any]], Any]) -> None:
        self.handler = handler
        self.sent: list[tuple[dict[str, Any], int, int]] = []

    def __call__(self, dom: object, cmd: str, timeout: int, flags: int) -> str:
        command = json.loads(cmd)
        self.sent.append((command, timeout, flags))
        answer = self.handler(command["execute"], command.get("arguments", {}))
        if isinstance(answer, BaseException):
            raise answer
        return answer if isinstance(answer, str) else json.dumps({"return": answer})


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str, dict[str, Any]], Any]], Agent]:
    monkeypatch.setattr(guest.time, "sleep", lambda _s: None)

    def install(handler: Callable[[str, dict[str, Any]], Any]) -> Agent:
        fake = Agent(handler)
        monkeypatch.setattr(guest.libvirt_qemu, "qemuAgentCommand", fake)
        return fake

    return install


def exec_handler(statuses: list[dict[str, Any]]) -> Callable[[str, dict[str, Any]], Any]:
    def handle(execute: str, arguments: dict[str, Any]) -> Any:
        if execute == "guest-exec":
            return {"pid": 42}
        assert execute == "guest-exec-status"
        assert arguments == {"pid": 42}
        return statuses.pop(0)

    return handle


def test_exec_runs_an_argv_and_decodes_its_output(agent) -> None:
    fake = agent(exec_handler([{"exited": False}, {"exited": False},
                               {"exited": True, "exitcode": 3, "out-data": b64("héllo\n"),
                                "err-data": b64("oops")}]))
    argv = ["sh", "-c", "echo $HOME; rm -rf /", "a b", "'\"; $(x)"]
    result = guest.guest_exec(Dom(), argv, timeout=10)
    assert result == guest.ExecResult(exit_code=3, stdout="héllo\n", stderr="oops")
    assert not result.ok
    started = fake.sent[0][0]
    # the argv goes through as JSON data, element by element, never as one shell string
    assert started == {"execute": "guest-exec",
                       "arguments": {"path": "sh", "arg": argv[1:], "capture-output": True}}
    assert [c["execute"] for c, _t, _f in fake.sent[1:]] == ["guest-exec-status"] * 3
    assert all(flags == 0 and timeout >= 1 for _c, timeout, flags in fake.sent)


def test_exec_without_output_and_with_stdin(agent) -> None:
    fake = agent(exec_handler([{"exited": True, "exitcode": 0}]))
    result = guest.guest_exec(Dom(), ["openssl", "passwd", "-6", "-stdin"], stdin="s3cret\n")
    assert result == guest.ExecResult(0, "", "")
    assert result.ok
    assert fake.sent[0][0]["arguments"]["input-data"] == b64("s3cret\n")


def test_exec_killed_by_a_signal_and_truncated_output(agent) -> None:
    agent(exec_handler([{"exited": True, "signal": 9, "out-data": b64("x"), "out-truncated": True}]))
    result = guest.guest_exec(Dom(), ["yes"])
    assert result.exit_code == -9
    assert result.truncated


def test_exec_gives_up_after_its_timeout(agent, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(guest.time, "monotonic", lambda: float(next(clock)))
    agent(exec_handler([{"exited": False}] * 100))
    with pytest.raises(ActionFailed, match=r"net101-alice: sleep \(guest pid 42\) still running after 12 s"):
        guest.guest_exec(Dom(), ["sleep", "100"], timeout=12)


@pytest.mark.parametrize("argv", [[], [""], ["ls", 3], ["a\0b"]])
def test_exec_refuses_bad_argv(agent, argv) -> None:
    fake = agent(exec_handler([]))
    with pytest.raises(InvalidInput):
        guest.guest_exec(Dom(), argv)
    assert fake.sent == []


def test_exec_refuses_a_bad_timeout(agent) -> None:
    agent(exec_handler([]))
    for timeout in (0, -1, float("nan")):
        with pytest.raises(InvalidInput):
            guest.guest_exec(Dom(), ["true"], timeout=timeout)


def test_exec_reports_bad_answers(agent) -> None:
    agent(exec_handler([{"exited": True, "exitcode": 0, "out-data": "not base64!"}]))
    with pytest.raises(ActionFailed, match="not base64"):
        guest.guest_exec(Dom(), ["true"])
    agent(lambda _e, _a: {"nopid": 1})
    with pytest.raises(ActionFailed, match="no pid"):
        guest.guest_exec(Dom(), ["true"])
    agent(lambda _e, _a: "not json")
    with pytest.raises(ActionFailed, match="not JSON"):
        guest.guest_exec(Dom(), ["true"])


def test_a_missing_program_is_an_action_failure(agent) -> None:
    agent(lambda _e, _a: libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                                       "internal error: unable to execute QEMU agent command "
                                       "'guest-exec': Failed to execute child process “nope”"))
    with pytest.raises(ActionFailed, match="net101-alice: guest agent guest-exec: .*nope") as caught:
        guest.guest_exec(Dom(), ["nope"])
    assert not isinstance(caught.value, guest.AgentUnavailable)


def test_host_name(agent) -> None:
    fake = agent(lambda execute, _a: {"host-name": "net101-alice"} if execute == "guest-get-host-name"
                 else None)
    assert guest.host_name(Dom()) == "net101-alice"
    assert fake.sent[0][0] == {"execute": "guest-get-host-name"}


@pytest.mark.parametrize("code", [libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_OPERATION_INVALID,
                                  libvirt.VIR_ERR_AGENT_UNSYNCED])
def test_no_agent_is_agent_unavailable(agent, code: int) -> None:
    message = "Guest agent is not responding: QEMU guest agent is not connected"
    agent(lambda _e, _a: libvirt_error(code, message))
    assert guest.agent_ping(Dom()) is False
    with pytest.raises(guest.AgentUnavailable, match="not connected") as caught:
        guest.host_name(Dom())
    assert isinstance(caught.value, VMManagerError)


def test_other_libvirt_errors_are_mapped_not_swallowed(agent) -> None:
    agent(lambda _e, _a: libvirt_error(libvirt.VIR_ERR_NO_DOMAIN, "no domain"))
    with pytest.raises(NotFound):
        guest.agent_ping(Dom())


def test_ping_and_wait(agent) -> None:
    answers = [libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "not connected")] * 3 + [{}]
    fake = agent(lambda _e, _a: answers.pop(0))
    assert guest.wait_for_agent(Dom(), within=60) >= 0
    assert [c for c, _t, _f in fake.sent] == [{"execute": "guest-ping"}] * 4


def test_wait_for_agent_gives_up(agent, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 4))
    monkeypatch.setattr(guest.time, "monotonic", lambda: float(next(clock)))
    agent(lambda _e, _a: libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "not connected"))
    with pytest.raises(guest.AgentUnavailable, match="no answer from the guest agent within 30 s"):
        guest.wait_for_agent(Dom(), within=30)
