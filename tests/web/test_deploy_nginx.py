"""deploy/nginx-vm-manager.conf as shipped, in front of a real ``vm-manager serve``: TLS with a test CA,
the websocket upgrade to a real VM's console, X-Forwarded-* believed, share tokens kept out of nginx's logs.

Debian's nginx runs the site file with only what a test must change: the host name, ports, certificate
and log paths (each replacement must match exactly, so an edit of the file cannot slip past the test).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from support.livelab import URI, Outside, unavailable
from support.tlsca import TestCA
from support.webtest import StartServe, cli, greeting

pytestmark = pytest.mark.integration

SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx-vm-manager.conf"
NGINX = "/usr/sbin/nginx"
GREETING = b"RFB 003.008\n"


class Nginx:
    """The shipped site in a throwaway nginx (one process, no daemon) on loopback ports."""

    def __init__(self, workdir: Path, ca: TestCA) -> None:
        self.workdir = workdir
        self.ca = ca
        self.http_port, self.https_port = unused_port(), unused_port()
        self.base = f"https://localhost:{self.https_port}"
        self.context = ssl.create_default_context(cafile=str(ca.cert))
        self.process: subprocess.Popen[str] | None = None

    def start(self, upstream_port: int) -> None:
        workdir = self.workdir
        cert = self.ca.issue(workdir / "tls")
        (workdir / "www").mkdir()
        site = SITE.read_text()
        for old, new in [
            ("/etc/letsencrypt/live/vm.example.org/fullchain.pem", str(cert.cert)),
            ("/etc/letsencrypt/live/vm.example.org/privkey.pem", str(cert.key)),
            ("vm.example.org", "localhost"),
            ("    listen [::]:80;\n", ""),
            ("    listen [::]:443 ssl http2;\n", ""),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
            ("/var/log/nginx/", f"{workdir}/"),
            ("/var/www/html", str(workdir / "www")),
            ("127.0.0.1:5000", f"127.0.0.1:{upstream_port}"),
        ]:
            assert old in site, f"{SITE.name} no longer has {old!r}: update this test with it"
            site = site.replace(old, new)
        (workdir / "site.conf").write_text(site)
        temp = " ".join(f"{kind}_temp_path {workdir}/{kind};" for kind in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (workdir / "nginx.conf").write_text(
            f"daemon off; master_process off; pid {workdir}/nginx.pid; error_log {workdir}/main-error.log;\n"
            f"events {{}}\nhttp {{ {temp} access_log {workdir}/default-access.log;\n"
            f"  include {workdir}/site.conf; }}\n")
        conf = str(workdir / "nginx.conf")
        checked = subprocess.run([NGINX, "-t", "-c", conf], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen([NGINX, "-c", conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def logs(self) -> str:
        """Every log nginx wrote."""
        return "".join(path.read_text() for path in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    if not Path(NGINX).exists():
        unavailable(f"{NGINX} is missing (make test installs Debian's nginx-light)")
    (tmp_path / "nginx").mkdir()
    server = Nginx(tmp_path / "nginx", TestCA.make(tmp_path / "ca"))
    yield server
    server.stop()


async def reachable(url: str, context: ssl.SSLContext, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url, ssl=context, allow_redirects=False):
                    return
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def test_the_shipped_nginx_site_serves_consoles_over_tls(outside: Outside, serve: StartServe,
                                                               env: dict[str, str], nginx: Nginx) -> None:
    dom = outside.define("web-nginx", start=True)
    uuid, name = dom.UUIDString(), dom.name()
    public = {"SECRET_KEY": secrets.token_hex(32), "PUBLIC_URL": nginx.base,
              "VMM_TRUSTED_PROXIES": "127.0.0.1"}
    server = serve("-c", URI, "serve", **public)
    await asyncio.to_thread(server.wait_for, "serving consoles at")
    nginx.start(server.port)
    await reachable(f"{nginx.base}/", nginx.context)

    out = await asyncio.to_thread(cli, env, "-c", URI, "share", name, "--ttl", "10m", **public)
    assert out.returncode == 0, out.stderr
    url = out.stdout.split()[0]
    token = url.rsplit("/", 1)[1]
    assert url == f"{nginx.base}/c/{token}"

    async with aiohttp.ClientSession() as browser:
        async with browser.get(url, ssl=nginx.context, allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"].endswith(f"/console/{uuid}")
            cookie = response.headers["Set-Cookie"]
            # Secure: the browser came over https (PUBLIC_URL, and nginx's X-Forwarded-Proto).
            assert "Secure" in cookie
            assert "HttpOnly" in cookie
        ws = await browser.ws_connect(f"wss://localhost:{nginx.https_port}/console/{uuid}/ws",
                                      protocols=("binary",), origin=nginx.base, ssl=nginx.context)
        assert await greeting(ws) == GREETING  # the upgrade crossed nginx, and the VM's VNC answered
        await ws.close()
        # A link typed as http:// goes to https, and is logged without its token there too.
        async with browser.get(f"http://127.0.0.1:{nginx.http_port}/c/{token}",
                               allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"] == f"https://127.0.0.1/c/{token}"
    await asyncio.to_thread(server.stop)
    # The upstream is gone: nginx's error log would name the request line of a failed proxy call.
    async with aiohttp.ClientSession() as browser, browser.get(url, ssl=nginx.context,
                                                               allow_redirects=False) as response:
        assert response.status == 502
    nginx.stop()
    logs = nginx.logs()
    assert "/c/<redacted>" in logs
    assert token not in logs
