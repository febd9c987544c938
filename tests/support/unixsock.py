"""A Unix socket file left behind, as QEMU leaves its VNC socket when it stops."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path


def leave_socket(path: Path) -> Path:
    """Bind a socket at ``path`` and close it: the file stays. Bound under a short name first and
    renamed into place, since a socket's path is at most 107 bytes."""
    short = Path(tempfile.mkdtemp(prefix="s", dir=path.parent))
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(os.fspath(short / "s"))
        os.rename(short / "s", path)
    finally:
        short.rmdir()
    return path
