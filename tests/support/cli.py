"""The ``vm-manager`` command as an operator runs it: a process of its own, from this checkout."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from core.settings import Settings

CHECKOUT = Path(__file__).resolve().parents[2]
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "VMM_ENV_FILE": "/nonexistent"}
"""No settings file and no real home: only what a test sets."""


def vm_manager(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None, stdin: str | None = None,
               timeout: float = 60, **variables: str) -> subprocess.CompletedProcess[str]:
    """``vm-manager ARGS`` run to its end (``python -m tui.cli`` of this checkout), its output
    captured. The environment is ``env`` (default :data:`BARE_ENV`) plus ``variables``; ``stdin``
    is typed into it (else it reads nothing: it is not on a terminal)."""
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], capture_output=True, text=True,
                          env={**(BARE_ENV if env is None else env), **variables}, input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None, timeout=timeout, cwd=CHECKOUT)


def settings_env(settings: Settings) -> dict[str, str]:
    """The variables that give a process ``settings``' folders."""
    return {"VMM_CONFIG_DIR": str(settings.config_dir), "VMM_DATA_DIR": str(settings.data_dir),
            "VMM_STUDENT_VMS_DIR": str(settings.provision.student_vms_dir),
            "VMM_CONSOLE_SOCKET_DIR": str(settings.consoles.socket_dir),
            "VMM_TEMPLATE_DIR": str(settings.templates_path)}


def vm_manager_on_a_terminal(*args: str | os.PathLike[str], answer: bytes, asked: bytes = b"[y/N]",
                             **variables: str) -> tuple[int, str]:
    """``vm-manager ARGS`` with a terminal for stdin, stdout and stderr; ``answer`` typed once
    ``asked`` shows. Returns the exit code and all it wrote."""
    master, slave = pty.openpty()
    env = {**BARE_ENV, "TERM": "dumb", **variables}
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", *map(str, args)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=CHECKOUT)
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other end is closed, the command ended
                break
            if not chunk:
                break
            seen += chunk
            if not answered and asked in seen:
                os.write(master, answer + b"\n")
                answered = True
    finally:
        os.close(master)
    return proc.wait(timeout=30), seen.decode(errors="replace")
