"""The endpoint process, seen from the server: ``python -m core.web.console.wsbridge``, which runs
websockify's proxy for every open VM, and the pipe protocol the server speaks to it.

The server writes one JSON object a line on the process's stdin and reads one answer a line on
its stdout:

- ``{"op": "open", "vm": <uuid>, "unix_listen": <path> | "listen": "127.0.0.1:<port>",
  "unix_target": <path> | "target": "<host>:<port>"}`` serves one more VM (:func:`open_fields`;
  the VM's VNC is a :class:`VNCTarget`); ``{"op": "close", "vm": <uuid>}`` stops serving it;
- each is answered ``{"vm": <uuid>, "ok": true}``, or ``{"vm", "ok": false, "error", "errno"}``.

Closing stdin ends the process. Its secret (:class:`core.web.console.secret.EndpointSecret`) is in
its environment, which only its user can read; its stderr keeps the last lines for the errors
shown. The pool of endpoints the server uses is :mod:`core.web.console.endpoints`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import TranslatableError
from core.settings import PROJECT_DIR
from core.text import N_
from core.web.console.secret import ENDPOINT_SECRET_ENV

log = logging.getLogger(__name__)

# The endpoint process's allocator. Its viewers' threads each take 64 KiB buffers as frames pass:
# glibc would give them arenas of their own (up to 8 a core) and keep what they freed, 0.5-1 MB
# a viewer depending on how the frames fell. One arena holds the process to about what its viewers
# use, and relays faster than two (measured by scripts/bench_console.py, 100 viewers and 8 viewers'
# full frames: 95-110 MiB PSS and 2.1-2.6 ms CPU per MiB, against 81 MiB and 4.2-4.8 ms with two
# arenas and buffers of 64 KiB mapped and unmapped one by one, and 153 MiB and 2.8 ms with two).
MALLOC_TUNABLES = "glibc.malloc.arena_max=1"


class EndpointError(TranslatableError):
    """Why a console cannot open; ``permanent``: trying again changes nothing until someone
    changes the VM or the server."""

    title = N_("Console unavailable")

    def __init__(self, template: str, *, permanent: bool = False, **values: object) -> None:
        super().__init__(template, **values)
        self.permanent = permanent


class PortTaken(EndpointError):
    """Someone bound the port between our check and websockify's bind."""


class BridgeGone(EndpointError):
    """The endpoint process ended (or stopped answering) while we talked to it."""


@dataclass(frozen=True, slots=True)
class VNCTarget:
    """Where the endpoint reaches a VM's VNC: QEMU's Unix socket (``unix``), else an address
    (``host``, an IPv6 one without brackets) and its ``port``."""

    unix: str | None = None
    host: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        on_socket = self.unix is not None and self.host is None and self.port is None
        on_address = self.unix is None and self.host is not None and self.port is not None
        if not (on_socket or on_address):
            raise ValueError("a VNC target is a Unix socket, or a host and a port")

    def fields(self) -> dict[str, str]:
        """The target's fields of an ``open`` command: ``unix_target``, or ``target`` (HOST:PORT)."""
        if self.unix is not None:
            return {"unix_target": self.unix}
        return {"target": str(self)}

    def __str__(self) -> str:
        if self.unix is not None:
            return self.unix
        return f"[{self.host}]:{self.port}" if ":" in str(self.host) else f"{self.host}:{self.port}"


def open_fields(vm: str, target: VNCTarget, *, socket_path: Path | None = None,
                port: int | None = None) -> dict[str, str]:
    """An ``open`` command's fields: the VM, where its endpoint listens (a Unix socket, else a
    loopback port), and its VNC."""
    if socket_path is not None:
        return {"vm": vm, "unix_listen": os.fspath(socket_path), **target.fields()}
    return {"vm": vm, "listen": f"127.0.0.1:{port}", **target.fields()}


class Bridge:
    """The endpoint process (:mod:`core.web.console.wsbridge`): every open VM's endpoint, in one process.

    The server adds and removes VMs through its stdin, one JSON line each, and reads one answer a
    line from its stdout; its stderr keeps the last lines for the errors shown. Its secret is in
    its environment, which only its user can read.
    """

    def __init__(self, process: asyncio.subprocess.Process, secret: str) -> None:
        self.process = process
        self.secret = secret
        self.vms: set[str] = set()
        self.stopping = False  # we asked it to end
        self.broken = False  # it ended, or fell out of step with its answers, while we talked to it
        self._errors: collections.deque[str] = collections.deque(maxlen=20)
        self._talk = asyncio.Lock()  # one command at a time: answers come back in order
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"websockify-{process.pid}")

    @classmethod
    async def spawn(cls, cwd: Path) -> Bridge:
        """Start the process, serving no VM yet (:meth:`open` adds them)."""
        secret = secrets.token_urlsafe(32)
        argv = [*_die_with_us(), sys.executable, "-m", "core.web.console.wsbridge"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENDPOINT_SECRET_ENV: secret,
               "PYTHONPATH": os.fspath(PROJECT_DIR), "GLIBC_TUNABLES": MALLOC_TUNABLES}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
        except OSError as exc:
            raise EndpointError(N_("the console endpoint process did not start: %(error)s"),
                                error=str(exc)) from exc
        return cls(process, secret)

    def alive(self) -> bool:
        return self.process.returncode is None and not (self.stopping or self.broken)

    def errors(self) -> str:
        return " / ".join(self._errors)

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self._errors.append(line)
                log.debug("websockify %d: %s", self.process.pid, line)

    async def _answer(self, vm: str, within: float) -> None:
        """Read the answer about ``vm``; EndpointError (PortTaken, BridgeGone) when it failed."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), within)
        except TimeoutError:
            self.broken = True
            raise BridgeGone(f"the console endpoint did not answer within {within:g} s") from None
        if not line:
            self.broken = True
            with contextlib.suppress(TimeoutError):  # let its last words reach the error list
                await asyncio.wait_for(self._stderr_task, 1.0)
            raise BridgeGone(f"the console endpoint process ended ({self.errors() or 'no message'})")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = {}
        if answer.get("vm") != vm:
            self.broken = True
            raise BridgeGone(f"the console endpoint answered about {answer.get('vm')!r}, not {vm!r}")
        if not answer["ok"]:
            if answer.get("errno") == "EADDRINUSE":
                raise PortTaken(answer["error"])
            raise EndpointError(N_("the console endpoint could not serve it: %(error)s"),
                                error=str(answer["error"]))

    async def _command(self, request: Mapping[str, str], within: float) -> None:
        assert self.process.stdin is not None
        if not self.alive():
            raise BridgeGone("the console endpoint process is not running")
        async with self._talk:
            try:
                self.process.stdin.write(json.dumps(request).encode() + b"\n")
                await self.process.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                self.broken = True
                raise BridgeGone(f"the console endpoint process ended ({exc})") from exc
            await self._answer(request["vm"], within)

    async def open(self, fields: Mapping[str, str], within: float) -> None:
        """Serve one more VM: ``{"vm", "unix_listen" | "listen", "unix_target" | "target"}``
        (:func:`open_fields`)."""
        await self._command({"op": "open", **fields}, within)
        self.vms.add(fields["vm"])

    async def close(self, vm: str, within: float) -> None:
        """Stop serving a VM: its socket closes, and the relays of its viewers end."""
        self.vms.discard(vm)
        try:
            await self._command({"op": "close", "vm": vm}, within)
        except BridgeGone:
            pass  # gone already: nothing of it left to serve
        except EndpointError as exc:
            log.warning("console endpoint process %d: closing %s: %s", self.process.pid, vm, exc.message)

    async def stop(self) -> None:
        """End the process (closing its stdin asks it to), and anything left in its group."""
        self.stopping = True
        pgid = self.process.pid
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                await self.process.wait()
        await _reap_group(pgid)
        with contextlib.suppress(TimeoutError):  # its stderr ends with it: keep its last lines
            await asyncio.wait_for(self._stderr_task, 1.0)


def group_members(pgid: int) -> list[int]:
    """Processes still in process group ``pgid`` (a group id is not reused while it has members)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 3 and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


async def _reap_group(pgid: int) -> None:
    """Kill what is left of a stopped endpoint process's group (nothing, unless it was wedged)."""
    for _ in range(100):
        members = group_members(pgid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.02)
    log.warning("console endpoint processes of group %d would not die", pgid)


def _die_with_us() -> list[str]:
    """``setpriv --pdeathsig TERM``: websockify ends with this server even when it is killed."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
