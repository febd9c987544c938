"""A program in a real terminal: a detached tmux pane of a fixed size, for the benchmarks and the
tests that must see what a person sees (keys arriving together in one write, the screen as
``tmux capture-pane`` shows it)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)")
"""Terminal escape sequences (CSI, OSC, charset selection), to strip from recorded output."""


class Pane:
    """A program in a detached tmux session of a fixed size."""

    def __init__(self, argv: list[str], width: int = 160, height: int = 50,
                 env: dict[str, str] | None = None) -> None:
        self.session = f"vmm-pane-{secrets.token_hex(3)}"
        extra = [f"-e{k}={v}" for k, v in (env or {}).items()]
        command = ["tmux", "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height),
                   *extra, "exec " + shlex.join(argv)]
        for _attempt in range(3):  # "server exited unexpectedly": the previous pane's server was exiting
            if subprocess.run(command, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(command, check=True)
        self.pid = int(subprocess.run(["tmux", "display-message", "-p", "-t", self.session,
                                       "#{pane_pid}"], capture_output=True, text=True,
                                      check=True).stdout)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True).stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Send keys; with ``literal``, each argument's characters in one write to the terminal
        (``tmux send-keys -l``), as keystrokes arrive together over a laggy link."""
        subprocess.run(["tmux", "send-keys", "-t", self.session, *(["-l"] if literal else []), *keys],
                       check=True)

    def wait(self, predicate: Callable[[str], bool], timeout: float = 30.0, interval: float = 0.0) -> float:
        """Poll the screen until ``predicate`` holds; returns the CLOCK_MONOTONIC time it did.

        Back to back (``interval`` 0), the polling (a ``tmux capture-pane`` process each time)
        takes about one of this machine's two cores; a pause of ``interval`` between polls
        leaves that core to the program measured, and adds at most ``interval`` to the time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return time.monotonic()
            if interval:
                time.sleep(interval)
        raise TimeoutError(f"screen never matched; last screen:\n{self.screen()}")

    def record_output(self, fifo: Path) -> list[tuple[float, str]]:
        """Timestamp everything the program writes to the terminal from now on (tmux pipe-pane).

        Returns a list that a reader thread keeps appending ``(time, text without escapes)`` to:
        the moment bytes reach the terminal, with no screen polling in between.
        """
        os.mkfifo(fifo)
        chunks: list[tuple[float, str]] = []

        def read() -> None:
            with open(fifo, "rb", buffering=0) as stream:
                while data := stream.read(65536):
                    chunks.append((time.monotonic(), ANSI.sub(" ", data.decode("utf-8", "replace"))))

        threading.Thread(target=read, daemon=True).start()
        subprocess.run(["tmux", "pipe-pane", "-O", "-t", self.session,
                        f"exec cat > {shlex.quote(str(fifo))}"], check=True)
        return chunks

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def first_row(screen: str, prefix: str) -> str | None:
    """The first word on ``screen`` that starts with ``prefix``: the top row's VM name."""
    for line in screen.splitlines():
        for word in line.replace("│", " ").split():
            if word.startswith(prefix):
                return word
    return None


def _first_is(screen: str, prefix: str, name: str) -> bool:
    return first_row(screen, prefix) == name


def filter_keystrokes(p: Pane, output: list[tuple[float, str]], keys: Sequence[str], prefix: str,
                      first: Callable[[str], str], typed: str = "", interval: float = 0.0) -> list[float]:
    """Seconds from each of ``keys`` (tmux key names; ``BSpace`` erases) sent to the TUI's open
    filter prompt, which holds ``typed`` already, to the TUI writing the row that must then come
    first, ``first(text typed so far)`` (a name starting with ``prefix``): the pane must show it,
    and ``output`` (:meth:`Pane.record_output`) says when it was written. ``interval``: the pause
    between two looks at the screen (0: back to back, a core's worth of ``tmux capture-pane``);
    the time measured comes from ``output``, not from the looks."""
    latencies = []
    for key in keys:
        typed = typed[:-1] if key == "BSpace" else typed + key
        expected = first(typed)
        before = len(output)
        t0 = time.monotonic()
        p.keys(key)
        p.wait(functools.partial(_first_is, prefix=prefix, name=expected), 5, interval)  # shown...
        written = None  # ...since when (the reader thread of the pipe may lag the pane a little)
        deadline = time.monotonic() + 2
        while written is None and time.monotonic() < deadline:
            written = next((t for t, text in output[before:] if expected in text), None)
            time.sleep(0.001)
        if written is None:
            raise TimeoutError(f"{expected} shown but never seen written")
        latencies.append(written - t0)
        time.sleep(0.1)
    return latencies


@contextlib.contextmanager
def pane(argv: list[str], width: int = 160, height: int = 50,
         env: dict[str, str] | None = None) -> Iterator[Pane]:
    """A :class:`Pane` for the ``with`` block, its tmux session killed at the end."""
    p = Pane(argv, width, height, env)
    try:
        yield p
    finally:
        p.close()
