"""The console endpoint process: websockify's proxy for every open VM, a thread per viewer.

``websockify`` itself forks a process for every connection (about 8 MB per viewer), and one
websockify per VM costs some 15 MB each. This runs websockify's own request handler
(``ProxyRequestHandler``: the websocket framing, the auth plugin, the relay to VNC) in threading
servers instead, one listening socket per VM, all in one process (``python -m core.web.console.wsbridge``).

The server adds and removes VMs through its stdin, one JSON object a line, each answered by a
line on stdout (:func:`serve_control`; the protocol is told in :mod:`core.web.console.bridge`,
the server's side); stdin closing ends the process. The secret
(:class:`core.web.console.secret.EndpointSecret`) comes from the environment. Kept free of
libvirt and aiohttp: it starts in about 0.1 s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import socketserver
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

# websockify unmasks what the browser sends with numpy when it can: about 12 MB of memory per
# endpoint for the few bytes of keys and clicks a viewer sends (what VNC sends back is never
# masked). Its pure-Python path does the same work without numpy.
sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from websockify.websocketproxy import ProxyRequestHandler

from core.web.console.secret import EndpointSecret  # noqa: E402 (after the numpy block above)

# A viewer's thread only relays (select, recv, send): websockify's 64 KiB buffers live on the heap.
THREAD_STACK = 512 * 1024


@dataclass(frozen=True)
class Spec:
    """One VM's endpoint: where it listens, and its VNC."""

    vm: str
    unix_listen: str | None = None
    listen: str | None = None  # 127.0.0.1:PORT
    unix_target: str | None = None
    target: str | None = None  # HOST:PORT, [v6]:PORT

    def check(self) -> None:
        if (self.unix_listen is None) == (self.listen is None):
            raise ValueError("one of unix_listen and listen is needed")
        if (self.unix_target is None) == (self.target is None):
            raise ValueError("one of unix_target and target is needed")


def _split(address: str) -> tuple[str, int]:
    host, _, number = address.rpartition(":")
    return host.strip("[]"), int(number)


class _Handler(ProxyRequestHandler):  # type: ignore[misc]  # websockify has no types
    def address_string(self) -> str:
        return "server" if isinstance(self.client_address, str | bytes) else super().address_string()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Quiet: the server logs consoles opening and closing; errors still reach stderr."""


class _Settings:
    """What websockify's handler reads from its server (see ``LibProxyServer``), and its viewers."""

    daemon_threads = True
    block_on_close = False  # closing a VM shuts its viewers' sockets instead of waiting for them
    request_queue_size = 128  # a whole class opening its consoles at once
    timeout: float | None = 0  # handle_request() is called when a connection waits: never block the loop

    def configure(self, spec: Spec) -> None:
        self.unix_target = spec.unix_target
        self.target_host: str | None = None
        self.target_port: int | None = None
        if spec.target:
            self.target_host, self.target_port = _split(spec.target)
        self.unix_listen = spec.unix_listen is not None
        self.auth_plugin = EndpointSecret()
        self.token_plugin = None
        self.wrap_cmd = None
        self.wrap_mode = None
        self.ssl_target = False
        self.heartbeat = None
        self.only_upgrade = True
        self.daemon = False
        self.record = None
        self.run_once = False
        self.verbose = False
        self.handler_id = 0
        self._viewers: set[socket.socket] = set()
        self._viewers_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._viewers_lock:
            self._viewers.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        with self._viewers_lock:
            self._viewers.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def close_viewers(self) -> None:
        """End every relay of this VM: its thread sees the socket close and closes VNC's."""
        with self._viewers_lock:
            viewers = list(self._viewers)
        for sock in viewers:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        """One line on stderr (the server keeps the last few), not a traceback per viewer."""
        kind, value = sys.exc_info()[:2]
        if kind is not None and not issubclass(kind, ConnectionError):
            print(f"wsbridge: {kind.__name__}: {value}", file=sys.stderr, flush=True)


class UnixListener(_Settings, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    pass


class TCPListener(_Settings, socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True


Server = UnixListener | TCPListener


def listen(spec: Spec) -> Server:
    """The VM's listening socket (a Unix one born 0600), configured toward its VNC."""
    spec.check()
    server: Server
    if spec.unix_listen is not None:
        old = os.umask(0o177)
        try:
            server = UnixListener(spec.unix_listen, _Handler)
        finally:
            os.umask(old)
    else:
        assert spec.listen is not None
        server = TCPListener(_split(spec.listen), _Handler)
    server.configure(spec)
    return server


class Listeners:
    """Every VM this process serves: one listening socket each, accepted from one loop (the
    server's pool of endpoints is :class:`core.web.console.endpoints.Endpoints`)."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.servers: dict[str, Server] = {}

    def open(self, spec: Spec) -> None:
        if spec.vm in self.servers:
            raise ValueError(f"{spec.vm} is served already")
        server = listen(spec)
        self.servers[spec.vm] = server
        self.selector.register(server, selectors.EVENT_READ, server)

    def close(self, vm: str) -> None:
        server = self.servers.pop(vm, None)
        if server is None:
            return
        self.selector.unregister(server)
        server.server_close()
        server.close_viewers()
        if isinstance(server, UnixListener):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(server.server_address))

    def close_all(self) -> None:
        for vm in list(self.servers):
            self.close(vm)

    def accept(self, timeout: float | None) -> list[object]:
        """Hand waiting connections to their handler threads; returns the other ready objects."""
        other = []
        for key, _ in self.selector.select(timeout):
            if isinstance(key.data, UnixListener | TCPListener):
                key.data.handle_request()
            else:
                other.append(key.data)
        return other


def _answer(vm: str, error: BaseException | None = None) -> dict[str, object]:
    if error is None:
        return {"vm": vm, "ok": True}
    code = errno.errorcode.get(error.errno or 0, "") if isinstance(error, OSError) else ""
    return {"vm": vm, "ok": False, "error": f"{type(error).__name__}: {error}", "errno": code}


def command(listeners: Listeners, line: bytes) -> dict[str, object]:
    """One control line: ``{"op": "open", "vm": …, <Spec's fields>}`` or ``{"op": "close", "vm": …}``."""
    vm = ""
    try:
        request = json.loads(line)
        op, vm = request.pop("op"), request.get("vm", "")
        if op == "open":
            listeners.open(Spec(**request))
        elif op == "close":
            listeners.close(vm)
        else:
            raise ValueError(f"unknown op {op!r}")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return _answer(vm, exc)
    return _answer(vm)


def serve_control(listeners: Listeners, control: int, replies: BinaryIO) -> None:
    """Serve until ``control`` (the server's pipe) ends; a reply line for every command line."""
    listeners.selector.register(control, selectors.EVENT_READ, None)
    pending = b""
    while True:
        if listeners.accept(None):
            chunk = os.read(control, 65536)
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in filter(None, lines):
                replies.write(json.dumps(command(listeners, line)).encode() + b"\n")
            replies.flush()


def main() -> int:
    """Serve the VMs the server names on stdin until stdin closes (or SIGTERM)."""
    threading.stack_size(THREAD_STACK)
    # Replies go to the pipe stdout was; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listeners = Listeners()
    try:
        serve_control(listeners, sys.stdin.fileno(), replies)
    finally:
        listeners.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
