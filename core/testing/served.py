"""``vm-manager serve`` in a process of its own, with a private data directory: so that its memory,
descriptors and CPU are its own to measure (the console benchmark, the soak, the load test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.lab import SYSTEM_URI
from core.links import client as admin_client
from core.settings import Settings

VM_MANAGER = Path(sys.executable).parent / "vm-manager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``vm-manager -c URI serve`` on a free loopback port; ``env`` adds or overrides settings."""

    def __init__(self, work: Path, viewers_per_link: int = 31, viewers_per_vm: int = 31, *,
                 uri: str = SYSTEM_URI, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.uri = uri
        self.settings = Settings(data_dir=work / "data", config_dir=work / "config", runtime_dir=work / "run")
        self.env = {**os.environ, "VMM_DATA_DIR": str(work / "data"), "VMM_CONFIG_DIR": str(work / "config"),
                    "VMM_RUNTIME_DIR": str(work / "run"), "SECRET_KEY": secrets.token_urlsafe(48),
                    "LIBVIRT_DEFAULT_URI": uri, "VMM_LOG_FILE": str(work / "server.log"),
                    # many synthetic viewers share one link per VM in the benchmarks: up to QEMU's own limit
                    "VMM_VIEWERS_PER_LINK": str(viewers_per_link), "VMM_VIEWERS_PER_VM": str(viewers_per_vm),
                    **(env or {})}
        self.env.pop("PUBLIC_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = work / "server.stderr"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server was not started"
        return self.proc.pid

    async def start(self, within: float = 60) -> None:
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 -- returns at once
                [VM_MANAGER, "-c", self.uri, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vm-manager serve exited: {self.stderr.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if await admin_client.call(self.settings, "GET", "/viewers") is not None:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"vm-manager serve did not answer within {within:g} s")

    async def links(self, uuids: list[str], ttl: str = "1h") -> dict[str, str]:
        """A share link per VM; asked again while the server's inventory has not seen a new VM yet."""
        deadline = time.monotonic() + 20
        while True:
            reply = await admin_client.call(self.settings, "POST", "/links", {"vms": uuids, "ttl": ttl})
            assert reply is not None
            if not reply["errors"]:
                return {row["vm"]: row["url"] for row in reply["links"]}
            if time.monotonic() > deadline or any(e["error"] != "no such VM" for e in reply["errors"]):
                raise RuntimeError(f"share links refused: {reply['errors']}")
            await asyncio.sleep(0.2)

    async def viewers(self) -> dict[str, Any]:
        reply = await admin_client.call(self.settings, "GET", "/viewers")
        assert reply is not None
        return reply

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
