"""What the web and browser tests must not leave behind, checked once at the end of the session.

Nothing of ours may be left: no console endpoint process (``core.web.console.wsbridge``), ``websockify``
or ``vm-manager serve``; no run folder (``vmm-run-*``, made by :func:`run_dir`); no listening TCP
port or Unix socket of ours.

Other sessions may run the same tests on this machine at the same time, so "ours" is narrow: a
process under this pytest process, or one whose working directory or ``VMM_RUNTIME_DIR`` is in a
run folder this session made (an endpoint process whose server was killed outright is no longer
under us); a Unix socket in one of those folders; a listening socket held by this process or one
of ours (minus what this process held when the session began).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

RUN_PREFIX = "vmm-run-"
_made: list[Path] = []


def run_dir() -> Path:
    """A new run folder for VMM_RUNTIME_DIR: short, in /tmp (a Unix socket's path holds 107 bytes;
    pytest's tmp_path is long). Whoever asks for one removes it; :func:`check` fails if not."""
    path = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir="/tmp"))
    _made.append(path)
    return path


def _inside(path: str, folders: list[Path]) -> bool:
    path = path.removesuffix(" (deleted)")
    return any(path == os.fspath(f) or path.startswith(os.fspath(f) + "/") for f in folders)


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    argv: tuple[str, ...]
    zombie: bool

    @property
    def kind(self) -> str | None:
        """What of ours this process is, by its command line; None for anything else."""
        argv = self.argv
        names = [os.path.basename(arg) for arg in argv[:3]]
        if "core.web.console.wsbridge" in argv:
            return "console endpoint process"
        if "websockify" in names or argv[1:3] == ("-m", "websockify"):
            return "websockify"
        if "serve" in argv and ("vm-manager" in names or "tui.cli" in argv):
            return "vm-manager serve"
        return None

    def runs_in(self, folders: list[Path]) -> bool:
        """Its working directory or VMM_RUNTIME_DIR is in one of ``folders``."""
        with contextlib.suppress(OSError):
            if _inside(os.readlink(f"/proc/{self.pid}/cwd"), folders):
                return True
        with contextlib.suppress(OSError):
            for entry in Path(f"/proc/{self.pid}/environ").read_bytes().split(b"\0"):
                if entry.startswith(b"VMM_RUNTIME_DIR="):
                    return _inside(entry.split(b"=", 1)[1].decode(errors="replace"), folders)
        return False


def processes() -> dict[int, Process]:
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
            argv = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace").split("\0")
            found[int(name)] = Process(int(name), int(stat[1]), tuple(a for a in argv if a), stat[0] == "Z")
    return found


def descendants(root: int, table: dict[int, Process]) -> set[int]:
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process.pid)
    found: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass(frozen=True)
class Listening:
    family: str  # tcp | tcp6 | unix
    address: str  # host:port, or a socket's path
    inode: int


def listening() -> list[Listening]:
    """Every listening socket of this network namespace (/proc/net/{tcp,tcp6,unix})."""
    found = []
    for family in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{family}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                host, port = fields[1].split(":")
                raw = bytes.fromhex(host)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host byte order
                address = socket.inet_ntop(socket.AF_INET if family == "tcp" else socket.AF_INET6, words)
                found.append(Listening(family, f"{address}:{int(port, 16)}", int(fields[9])))
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
            found.append(Listening("unix", fields[7], int(fields[6])))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def baseline() -> set[int]:
    """The sockets this process holds before the tests (not the tests' to close)."""
    return socket_inodes(os.getpid())


def check(before: set[int], *, clean: bool = True) -> list[str]:
    """What is left of ours, one line each; with ``clean``, then ended (our processes, by pid) and
    removed (our run folders)."""
    me = os.getpid()
    table = processes()
    under_us = descendants(me, table)
    ours = [p for p in table.values() if p.kind and not p.zombie and (p.pid in under_us or p.runs_in(_made))]
    problems = [f"{p.kind} left running: pid {p.pid}: {' '.join(p.argv)}" for p in ours]
    held = socket_inodes(me) - before
    for pid in under_us | {p.pid for p in ours}:
        held |= socket_inodes(pid)
    for sock in listening():
        if sock.family == "unix" and _inside(sock.address, _made):
            problems.append(f"Unix socket left listening: {sock.address}")
        elif sock.inode in held:
            problems.append(f"{sock.family} socket of ours left listening: {sock.address}")
    left = [folder for folder in _made if folder.exists()]
    problems += [f"run folder left: {folder}" for folder in left]
    if clean:
        for process in ours:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)
        for folder in left:
            shutil.rmtree(folder, ignore_errors=True)
    return problems
