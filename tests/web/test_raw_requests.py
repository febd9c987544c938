"""What a client that is no browser sends ``vm-manager serve`` (a process of its own, on libvirt's
test driver) over a raw socket, and what the log file holds after: malformed requests carrying a
valid share token, control characters in a path, connections that never finish their headers."""

from __future__ import annotations

import re
import socket
import stat
import time
from pathlib import Path

from support.webtest import Serve, StartServe
from support.webtest import cli as run

from core.log import CONTINUATION

FORGED = "2026-12-07 15:49:00,000 INFO core.web.app: share link deadbeef opened"
END = b"\r\nHost: x\r\nConnection: close\r\n\r\n"


def malformed(token: str) -> dict[str, bytes]:
    """Requests aiohttp's parser refuses (400, with a traceback in the log that quotes the bad
    line), each carrying ``token`` where a share link or a cookie puts it."""
    t = token.encode()
    return {
        "over-long query": b"GET /c/" + t + b"?" + b"a" * 9000 + b" HTTP/1.1" + END,
        "HTTP/9.9": b"GET /c/" + t + b" HTTP/9.9" + END,
        "a space": b"GET /c/" + t + b" x HTTP/1.1" + END,
        "NUL": b"GET /c/" + t + b"\x00 HTTP/1.1" + END,
        "bare LF": b"GET /c/" + t + b" HTTP/1.1\nHost: x\n\n",
        "0xff": b"GET /c/" + t + b"\xff HTTP/1.1" + END,
        "CR": b"GET /c/" + t + b"\r HTTP/1.1" + END,
        "bad method": b"G(T /c/" + t + b" HTTP/1.1" + END,
        "over-long header": b"GET /c/" + t + b" HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
        "bad header name": b"GET /c/" + t + b" HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
        "NUL in a cookie": b"GET / HTTP/1.1\r\nHost: x\r\nCookie: vmm_console=" + t + b"\x00\r\n\r\n",
        "bad Content-Length": b"POST /c/" + t + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    }


def send(port: int, request: bytes, within: float = 10.0) -> bytes:
    """``request`` sent on a connection of its own; what came back until the server closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def started(serve: StartServe, uri: str, **extra: str) -> Serve:
    server = serve("-c", uri, "serve", "--generate-secret", **extra)
    server.wait_for("serving consoles at")
    return server


def share_token(env: dict[str, str], uri: str) -> str:
    out = run(env, "-c", uri, "share", "web-a")
    assert out.returncode == 0, out.stderr
    found = re.search(r"/c/([A-Za-z0-9_-]{43})\s", out.stdout)
    assert found is not None, out.stdout
    return found[1]


def log_of(env: dict[str, str]) -> Path:
    return Path(env["VMM_DATA_DIR"]) / "vm-manager.log"


def test_malformed_requests_leave_no_token_in_the_log(env: dict[str, str], uri: str,
                                                      serve: StartServe) -> None:
    server = started(serve, uri)
    token = share_token(env, uri)
    shapes = malformed(token)
    answers = {name: status(send(server.port, request)) for name, request in shapes.items()}
    assert answers == dict.fromkeys(shapes, 400)
    assert server.get(f"/c/{token}") == 303  # still a working link
    assert server.stop() == 0
    log = log_of(env)
    text = log.read_text(errors="replace")
    assert token not in text
    assert text.count("ERROR aiohttp.server: Error handling request") >= 10  # they were logged...
    assert f"{CONTINUATION}    b'GET /c/<redacted> HTTP/9.9'" in text  # ...the request line masked
    assert "b'Cookie: vmm_console=<redacted>" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_control_characters_in_a_path_are_escaped_in_the_log(env: dict[str, str], uri: str,
                                                             serve: StartServe) -> None:
    server = started(serve, uri)
    forged = FORGED.replace(" ", "%20")
    assert status(send(server.port, f"GET /nothing%0a{forged} HTTP/1.1".encode() + END)) == 404
    assert status(send(server.port, b"GET /esc%1b[2J/bel%07/nul%00 HTTP/1.1" + END)) == 404
    assert status(send(server.port, b"GET /static/console.js%00.html HTTP/1.1" + END)) == 404
    assert status(send(server.port, b"GET /novnc/core/rfb%00.js HTTP/1.1" + END)) == 404
    assert server.stop() == 0
    raw = log_of(env).read_bytes()
    lines = raw.decode().splitlines()
    nothing = [line for line in lines if "/nothing" in line]
    assert len(nothing) == 1, nothing
    assert f'"GET /nothing\\n{FORGED}" 404' in nothing[0]
    assert not any(line.startswith(FORGED) for line in lines)
    assert '"GET /esc\\x1b[2J/bel\\x07/nul\\x00" 404' in raw.decode()
    assert not any(c in raw for c in b"\x1b\x07\x00")
    assert sum('"GET /static/console.js\\x00.html" 404' in line or '"GET /novnc/core/rfb\\x00.js" 404' in line
               for line in lines) == 2
    assert b"ERROR" not in raw
    assert b"Traceback" not in raw


def test_connections_without_a_whole_request_are_closed(uri: str, serve: StartServe) -> None:
    """VMM_HTTP_IDLE_TIMEOUT (1 s here; aiohttp's own default is an hour): connections that send
    part of their headers, or nothing, or keep one open after a request, are closed by the server."""
    server = started(serve, uri, VMM_HTTP_IDLE_TIMEOUT="1")
    partial = [b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ", b"GET /c/", b""] * 20
    kept_alive = b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n"  # answered, then idle on the same connection
    sockets = []
    for request in [*partial, kept_alive]:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(request)
        sockets.append(sock)
    deadline = time.monotonic() + 60  # generous: only "closed in the end" is asserted
    received = []
    for sock in sockets:
        with sock:
            data = b""
            while time.monotonic() < deadline and (chunk := sock.recv(65536)):
                data += chunk
            received.append(data)
    assert received[:-1] == [b""] * len(partial)  # closed without an answer
    assert received[-1].startswith(b"HTTP/1.1 200")  # answered, then closed when idle
    assert server.stop() == 0
