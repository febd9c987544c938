"""One console endpoint process: websockify's proxy, serving its viewers from threads.

``websockify`` itself forks a process for every connection: about 8 MB of memory per viewer,
0.8 GB for a class of 100 viewers. This runs websockify's own request handler
(``ProxyRequestHandler``: the websocket framing, the auth plugin, the relay to VNC) in a
threading server instead -- one process per VM, a thread per viewer::

    python -m core.web.wsbridge (--unix-listen PATH | --listen 127.0.0.1:PORT)
                                (--unix-target VNC_SOCKET | HOST:PORT)

The endpoint's secret (:class:`core.web.EndpointSecret`) comes from the environment, as it did
for websockify. Kept free of libvirt and aiohttp: it starts in about 0.1 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socketserver
import sys
import warnings
from typing import Any

# websockify unmasks what the browser sends with numpy when it can: about 12 MB of memory per
# endpoint for the few bytes of keys and clicks a viewer sends (what VNC sends back is never
# masked). Its pure-Python path does the same work without numpy.
sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from websockify.websocketproxy import ProxyRequestHandler

from core.web import EndpointSecret  # noqa: E402 (after the numpy block above)


class _Handler(ProxyRequestHandler):
    def address_string(self) -> str:
        return "server" if isinstance(self.client_address, str | bytes) else super().address_string()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Quiet: the server logs consoles opening and closing; errors still reach stderr."""


class _Settings:
    """What websockify's handler reads from its server (see ``LibProxyServer``)."""

    def configure(self, unix_target: str | None, host: str | None, port: int | None) -> None:
        self.unix_target = unix_target
        self.target_host = host
        self.target_port = port
        self.unix_listen = isinstance(self, socketserver.UnixStreamServer)
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


    daemon_threads = True
    request_queue_size = 128  # a whole class opening its consoles at once

    def handle_error(self, request: object, client_address: object) -> None:
        """One line on stderr (the server keeps the last few), not a traceback per viewer."""
        kind, value = sys.exc_info()[:2]
        if kind is not None and not issubclass(kind, ConnectionError):
            print(f"wsbridge: {kind.__name__}: {value}", file=sys.stderr, flush=True)


class UnixBridge(_Settings, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    pass


class TCPBridge(_Settings, socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.web.wsbridge")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-listen", metavar="PATH")
    where.add_argument("--listen", metavar="127.0.0.1:PORT")
    parser.add_argument("--unix-target", metavar="VNC_SOCKET")
    parser.add_argument("target", nargs="?", metavar="HOST:PORT")
    args = parser.parse_args(argv)
    host, port = None, None
    if args.unix_target is None:
        if args.target is None:
            parser.error("a target is needed: --unix-target PATH or HOST:PORT")
        host, _, number = args.target.rpartition(":")
        host, port = host.strip("[]"), int(number)
    server: socketserver.BaseServer
    if args.unix_listen is not None:
        old = os.umask(0o177)  # the socket is born 0600
        try:
            server = UnixBridge(args.unix_listen, _Handler)
        finally:
            os.umask(old)
    else:
        address, _, number = args.listen.rpartition(":")
        server = TCPBridge((address, int(number)), _Handler)
    server.configure(args.unix_target, host, port)  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
