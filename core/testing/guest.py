"""The QEMU guest agent of a running VM, through libvirt (``libvirt_qemu.qemuAgentCommand``).

The domain needs the agent's channel (``<channel type='unix'><target type='virtio'
name='org.qemu.guest_agent.0'/></channel>``) and the guest ``qemu-guest-agent`` (the Debian
template starts it from udev when that port shows up).

Every function blocks (up to its timeout): callers run them off the event loop, in a worker
thread. Commands are JSON built by ``json.dumps`` and programs run as argv lists (``guest-exec``
spawns them directly, no shell in between). Errors are :mod:`core.errors` types:
:class:`AgentUnavailable` when the agent does not answer (domain not running, agent not started
yet or gone), :class:`~core.errors.ActionFailed` for the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import libvirt
import libvirt_qemu

from core.errors import ActionFailed, InvalidInput, domain_name, from_libvirt

# libvirt's answers when no agent is there to talk to (yet): not connected or not answering,
# out of sync, or the domain is not running.
_NO_AGENT = frozenset({
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_AGENT_UNSYNCED,
    libvirt.VIR_ERR_OPERATION_INVALID,
})
PING_TIMEOUT = 5.0
_POLL_FIRST, _POLL_MAX = 0.05, 0.5  # guest-exec-status: first interval, doubled up to this


class AgentUnavailable(ActionFailed):
    """The guest agent does not answer: the VM is not running, or its agent is not up (yet)."""

    title = "Guest agent unavailable"


@dataclass(frozen=True)
class ExecResult:
    """What a program run in the guest gave back.

    ``exit_code`` is its exit status, or ``-N`` when signal N ended it (as ``subprocess`` says);
    ``stdout`` and ``stderr`` are decoded as UTF-8 (undecodable bytes replaced). ``truncated``:
    the agent kept only the start of an output (qemu-ga keeps 16 MiB of each).
    """

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def agent_command(dom: libvirt.virDomain, execute: str, arguments: dict[str, Any] | None = None, *,
                  timeout: float = PING_TIMEOUT) -> Any:
    """Send one agent command and return its ``return`` value.

    ``timeout`` (seconds, rounded up to a whole second as libvirt takes it) bounds the wait for
    the guest's answer.
    """
    command: dict[str, Any] = {"execute": execute}
    if arguments is not None:
        command["arguments"] = arguments
    what = f"{domain_name(dom)}: guest agent {execute}"
    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), _seconds(timeout), 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_AGENT:
            raise AgentUnavailable(f"{what}: {exc.get_error_message() or exc}") from None
        raise from_libvirt(exc, what) from None
    try:
        answer = json.loads(reply)
    except (TypeError, ValueError):
        raise ActionFailed(f"{what}: the agent's answer is not JSON: {reply!r:.200}") from None
    if not isinstance(answer, dict) or "return" not in answer:
        raise ActionFailed(f"{what}: unexpected answer {reply!r:.200}")
    return answer["return"]


def agent_ping(dom: libvirt.virDomain, timeout: float = PING_TIMEOUT) -> bool:
    """Whether the guest agent answers ``guest-ping`` within ``timeout`` seconds.

    False when it is not there (yet); a lost connection or another failure still raises.
    """
    try:
        agent_command(dom, "guest-ping", timeout=timeout)
    except AgentUnavailable:
        return False
    return True


def wait_for_agent(dom: libvirt.virDomain, within: float) -> float:
    """Wait until the guest agent answers; return the seconds it took.

    Raises :class:`AgentUnavailable` after ``within`` seconds.
    """
    start = time.monotonic()
    deadline = start + within
    while True:
        left = deadline - time.monotonic()
        try:
            # libvirt says "not connected" at once until the guest opens its end of the channel.
            agent_command(dom, "guest-ping", timeout=max(1.0, min(PING_TIMEOUT, left)))
            return time.monotonic() - start
        except AgentUnavailable as exc:
            last = exc.message
        if time.monotonic() >= deadline:
            raise AgentUnavailable(f"{domain_name(dom)}: no answer from the guest agent within {within:g} s "
                                   f"(last: {last})")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def guest_exec(dom: libvirt.virDomain, argv: list[str], *, timeout: float = 30,
               stdin: str | bytes | None = None) -> ExecResult:
    """Run ``argv`` in the guest (as the agent's user, root) and wait for it to end.

    ``argv[0]`` is looked up in the agent's PATH. ``stdin``: data for the program's standard
    input (else it reads nothing). Raises :class:`~core.errors.ActionFailed` when the program
    cannot be started or is still running after ``timeout`` seconds (it is left running: the
    agent has no way to stop it).
    """
    if not argv or not argv[0] or not all(isinstance(arg, str) for arg in argv):
        raise InvalidInput("guest_exec needs a list of strings, the program first")
    if any("\0" in arg for arg in argv):
        raise InvalidInput("guest_exec: an argument contains a NUL character")
    if not timeout > 0:
        raise InvalidInput("guest_exec: the timeout must be above 0")
    arguments: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": True}
    if stdin is not None:
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        arguments["input-data"] = base64.b64encode(data).decode("ascii")
    deadline = time.monotonic() + timeout
    started = agent_command(dom, "guest-exec", arguments, timeout=min(timeout, PING_TIMEOUT * 2))
    pid = started.get("pid") if isinstance(started, dict) else None
    if not isinstance(pid, int):
        raise ActionFailed(f"{domain_name(dom)}: guest-exec gave no pid: {started!r:.200}")
    interval = _POLL_FIRST
    while True:
        status = agent_command(dom, "guest-exec-status", {"pid": pid},
                               timeout=max(1.0, min(PING_TIMEOUT, deadline - time.monotonic())))
        if not isinstance(status, dict):
            raise ActionFailed(f"{domain_name(dom)}: guest-exec-status: unexpected answer {status!r:.200}")
        if status.get("exited"):
            return _result(dom, status)
        if time.monotonic() >= deadline:
            raise ActionFailed(f"{domain_name(dom)}: {argv[0]} (guest pid {pid}) still running "
                               f"after {timeout:g} s")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 2, _POLL_MAX)


def host_name(dom: libvirt.virDomain, timeout: float = PING_TIMEOUT) -> str:
    """The guest's own host name, as the agent reads it (``guest-get-host-name``)."""
    answer = agent_command(dom, "guest-get-host-name", timeout=timeout)
    name = answer.get("host-name") if isinstance(answer, dict) else None
    if not isinstance(name, str):
        raise ActionFailed(f"{domain_name(dom)}: guest-get-host-name: unexpected answer {answer!r:.200}")
    return name


def _result(dom: libvirt.virDomain, status: dict[str, Any]) -> ExecResult:
    if isinstance(status.get("exitcode"), int):
        code = status["exitcode"]
    elif isinstance(status.get("signal"), int):
        code = -status["signal"]
    else:
        raise ActionFailed(f"{domain_name(dom)}: guest-exec-status: no exit code in {status!r:.200}")
    return ExecResult(
        exit_code=code,
        stdout=_decode(dom, status.get("out-data")),
        stderr=_decode(dom, status.get("err-data")),
        truncated=bool(status.get("out-truncated") or status.get("err-truncated")),
    )


def _decode(dom: libvirt.virDomain, data: Any) -> str:
    if data is None:
        return ""
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, TypeError, ValueError):
        raise ActionFailed(f"{domain_name(dom)}: guest-exec-status: output is not base64") from None


def _seconds(timeout: float) -> int:
    """libvirt's agent timeout is whole seconds; 0 and below have special meanings there."""
    if not timeout > 0 or math.isinf(timeout):
        raise InvalidInput("an agent timeout must be a finite number of seconds above 0")
    return max(1, math.ceil(timeout))
