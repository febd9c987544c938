"""``vm-manager serve``, ``share`` and ``revoke`` run as processes, on libvirt's test driver."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port
from support.cli import CHECKOUT, vm_manager
from support.livelab import unavailable
from support.webtest import StartServe, websockify_pids
from support.webtest import cli as run

from core.lab import DEMO_URI

KEY = "3b9d0c6e1f2a4b8c7d5e9f0a1b2c3d4e5f60718293a4b5c6"  # openssl rand -hex 24 once
LINE = re.compile(r"^(http://127\.0\.0\.1:\d+/c/([A-Za-z0-9_-]{43}))  "
                  r"expires (\S+)  id ([0-9a-f]{8})  vm (\S+)$")


@pytest.mark.parametrize(("key", "problem"), [(None, "SECRET_KEY is unset"),
                                              ("dev-secret-change-me", "old default"),
                                              ("too-short-a-key", "shorter than 32"),
                                              (" " * 40, "only blanks"),
                                              ("k" * 40, "only 1 different character"),
                                              ("correcthorsebatterystaplecorrect", "plainly not random")])
def test_serve_refuses_a_bad_secret_key(env: dict[str, str], uri: str, key: str | None, problem: str) -> None:
    out = run(env, "-c", uri, "serve", "--port", str(unused_port()), **({"SECRET_KEY": key} if key else {}))
    assert out.returncode == 2
    assert problem in out.stderr
    assert "SECRET_KEY" in out.stderr
    assert "`vm-manager serve --generate-secret`" in out.stderr  # the way out
    assert "Traceback" not in out.stderr


def test_serve_share_revoke_and_stop(env: dict[str, str], uri: str, serve: StartServe, tmp_path: Path,
                                     run_dir: Path) -> None:
    server = serve("-c", uri, "serve", "--generate-secret")
    server.wait_for("serving consoles at")
    key_file = tmp_path / "config" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    out = run(env, "-c", uri, "share", "web-*", "--ttl", "30m")
    assert out.returncode == 0, out.stderr
    rows = [LINE.match(line) for line in out.stdout.splitlines()]
    assert all(rows)
    assert [r[5] for r in rows if r] == ["web-a", "web-b"]
    first = rows[0]
    assert first is not None
    assert first[1].startswith(f"http://127.0.0.1:{server.port}/c/")
    token, link_id = first[2], first[4]
    assert server.get(f"/c/{token}") == 303

    out = run(env, "-c", uri, "revoke", link_id)
    assert out.returncode == 0, out.stderr
    assert f"revoked link {link_id} of web-a" in out.stdout
    assert server.get(f"/c/{token}") == 403
    assert run(env, "-c", uri, "revoke", link_id).stdout.strip().endswith("already expired or revoked")
    assert run(env, "-c", uri, "revoke", "web-b").returncode == 0
    assert run(env, "-c", uri, "revoke", "nosuchvm").returncode == 1
    assert run(env, "-c", uri, "revoke", "0123abcd").returncode == 1

    assert server.stop() == 0
    server.wait_for("stopped")
    log = (tmp_path / "data" / "vm-manager.log").read_text()
    assert token not in log
    assert '"GET /c/<redacted>" 303' in log
    assert '"GET /c/<redacted>" 403' in log
    assert websockify_pids(run_dir) == []
    assert not (run_dir / "admin.sock").exists()


def test_share_and_revoke_without_a_server(env: dict[str, str], uri: str) -> None:
    key = {"SECRET_KEY": KEY}
    out = run(env, "-c", uri, "share", "--class", "net101", **key)
    assert out.returncode == 0, out.stderr
    assert "PUBLIC_URL is unset" in out.stderr
    urls = [m[1] for line in out.stdout.splitlines() if (m := LINE.match(line))]
    assert len(urls) == 2
    out = run(env, "-c", uri, "revoke", urls[0], **key)  # by URL (the token in it)
    assert out.returncode == 0
    assert "revoked link" in out.stdout
    out = run(env, "-c", uri, "revoke", "web-b", **key)
    assert out.returncode == 0
    assert "revoked link" in out.stdout
    public = run(env, "-c", uri, "share", "web-a", PUBLIC_URL="https://vm.example.org/", **key)
    assert public.stdout.startswith("https://vm.example.org/c/")
    audited = json.loads(run(env, "audit", "--json").stdout)
    assert sorted((e["action"], e["vm"]) for e in audited) == [
        ("revoke", "web-a"), ("revoke", "web-b"), ("share", "web-a"), ("share", "web-a"), ("share", "web-b")]
    assert not any(token in json.dumps(audited) for url in urls for token in [url.rpartition("/c/")[2]])


def test_share_usage_errors(env: dict[str, str], uri: str) -> None:
    key = {"SECRET_KEY": KEY}
    assert run(env, "-c", uri, "share", **key).returncode == 2
    assert run(env, "-c", uri, "revoke", **key).returncode == 2
    out = run(env, "-c", uri, "share", "web-a", "--ttl", "forever", **key)
    assert out.returncode == 2
    assert "bad duration" in out.stderr
    out = run(env, "-c", uri, "share", "web-a", "nosuchvm", **key)
    assert out.returncode == 1
    assert "nosuchvm: no such VM" in out.stderr
    assert len(out.stdout.splitlines()) == 1
    out = run(env, "-c", uri, "share", "web-a")  # no server, no key: which setting to fix
    assert out.returncode == 2
    assert "SECRET_KEY" in out.stderr


def test_demo_lab_serves_with_an_ephemeral_key(env: dict[str, str], serve: StartServe) -> None:
    server = serve("-c", DEMO_URI, "serve")
    server.wait_for("serving consoles at")
    assert server.get("/c/" + "A" * 43) == 403
    out = run(env, "-c", DEMO_URI, "share", "net101-alice")  # through the running server's admin API
    assert out.returncode == 0, out.stderr
    match = LINE.match(out.stdout.strip())
    assert match is not None
    assert server.get(f"/c/{match[2]}") == 303
    out = run(env, "-c", DEMO_URI, "serve", "--port", str(unused_port()))
    assert out.returncode == 2
    assert "already runs" in out.stderr
    assert server.stop() == 0


def _without_libvirtd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``vm-manager ARGS`` where qemu:///system does not answer: in a mount namespace of its own
    whose /run/libvirt is an empty tmpfs (the daemon, shared with other tests, is not touched)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        unavailable("hiding libvirtd's sockets needs root and unshare")
    script = ("mount -t tmpfs tmpfs /run/libvirt && "
              f"{sys.executable} -c 'from core.lab import system_socket_answers as a; assert not a()' && "
              f'exec {sys.executable} -m tui.cli "$@"')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
                          capture_output=True, text=True, env=env, cwd=CHECKOUT, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_serve_does_not_fall_back_to_the_demo_lab(env: dict[str, str]) -> None:
    """No -c, no LIBVIRT_DEFAULT_URI, qemu:///system silent: a service refuses rather than serving
    the demo lab with a throwaway key; asked for by its URI, the demo is served; other commands
    (and the TUI, `make run`) still fall back to the demo."""
    port = str(unused_port())
    out = _without_libvirtd(env, "serve", "--port", port)
    assert out.returncode == 2, out.stderr
    assert "qemu:///system does not answer" in out.stderr
    assert "does not fall back to the demo lab" in out.stderr
    assert f"-c {DEMO_URI}" in out.stderr
    assert "serving consoles" not in out.stderr
    assert "Traceback" not in out.stderr
    assert not (Path(env["VMM_CONFIG_DIR"]) / "secret_key").exists()
    listed = _without_libvirtd(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "net101-alice" in listed.stdout  # the demo lab, as before
    # Asked for by LIBVIRT_DEFAULT_URI (as by -c, see the test below), the demo lab is served.
    # (On an address this machine does not have, so that it stops once past the choice of lab.)
    demo = _without_libvirtd({**env, "LIBVIRT_DEFAULT_URI": DEMO_URI}, "serve", "--port", port,
                             "--host", "192.0.2.1")
    assert "does not fall back" not in demo.stderr
    assert "demo lab: a random secret key" in demo.stderr
    assert "cannot listen on 192.0.2.1" in demo.stderr


def test_local_account_changes_are_audited(env: dict[str, str]) -> None:
    """``vm-manager user add|passwd|del`` on record as other CLI actions: who (behind sudo), from
    where (the SSH client), what, the role granted, the outcome; never a password."""
    who = {"SUDO_USER": "teacher", "SSH_CLIENT": "198.51.100.4 50122 22"}
    password = "S3cret-of-olga\n"

    def user(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return vm_manager("user", *args, env={**env, **who}, stdin=stdin)

    assert user("add", "olga", "--operator", "--password-stdin", stdin=password).returncode == 0
    assert user("add", "sam", "--password-stdin", stdin="sam-password\n").returncode == 0
    assert user("passwd", "sam", "--password-stdin", stdin="new-sam-password\n").returncode == 0
    assert user("del", "olga", "--yes").returncode == 0
    assert user("add", "sam", "--password-stdin", stdin="sam-password\n").returncode == 1  # taken
    assert user("passwd", "Hunter2 Hunter2!", "--password-stdin", stdin="whatever-1\n").returncode == 1
    assert user("add", "Bad*Name", "--password-stdin", stdin="whatever-1\n").returncode == 2  # usage
    out = run(env, "audit", "--json")
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)
    assert [(e["action"], e["outcome"], e["detail"]) for e in entries] == [
        ("user-add", "ok", "account olga, role operator"),
        ("user-add", "ok", "account sam, role student"),
        ("user-passwd", "ok", "account sam"),
        ("user-del", "ok", "account olga, role operator"),
        ("user-add", "failed", "account sam: exists already"),
        ("user-passwd", "failed", "account ?: no such account"),  # what was typed may be a password
    ]
    assert {(e["user"], e["source"], e["address"]) for e in entries} == {("teacher", "cli", "198.51.100.4")}
    assert password.strip() not in out.stdout
    assert "Hunter2" not in out.stdout


def test_share_and_revoke_look_no_address_up(env: dict[str, str]) -> None:
    """A link needs no address: ``share`` and ``revoke`` of a running VM with an interface (the test
    driver's own, whose address libvirt would give) never look one up, so they never wait for a
    guest agent. An address look-up here kills the process (the failpoint)."""
    key = {"SECRET_KEY": KEY, "VMM_FAILPOINT": "kill:ip-lookup"}
    out = run(env, "-c", "test:///default", "share", "test", **key)
    assert out.returncode == 0, out.stderr
    assert "vm test" in out.stdout
    out = run(env, "-c", "test:///default", "revoke", "test", **key)
    assert out.returncode == 0, out.stderr
    assert "revoked link" in out.stdout


def test_links_lists_the_open_links_by_id_with_their_owner_and_viewers(env: dict[str, str], uri: str,
                                                                       serve: StartServe) -> None:
    key = {"SECRET_KEY": KEY}
    made = run(env, "-c", uri, "share", "--class", "net101", **key)
    assert made.returncode == 0, made.stderr
    ids = {m[5]: m[4] for line in made.stdout.splitlines() if (m := LINE.match(line))}
    out = run(env, "-c", uri, "links", "--csv", **key)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sorted((r["vm"], r["owner"], r["id"], r["viewers"]) for r in rows) == [
        ("web-a", "alice", ids["web-a"], ""), ("web-b", "bob", ids["web-b"], "")]  # no server: not counted
    assert "/c/" not in out.stdout  # a listed link cannot show its URL: its token is stored hashed
    table = run(env, "-c", uri, "links", "--class", "nosuch", **key)
    assert table.returncode == 0
    assert table.stdout.splitlines() == ["VM  OWNER  ID  EXPIRES  VIEWERS"]
    assert "shown only when it is made" in table.stderr
    assert run(env, "-c", uri, "links", "--class", "", **key).returncode == 2

    server = serve("-c", uri, "serve", **key)
    server.wait_for("serving consoles at")
    counted = run(env, "-c", uri, "links", "--csv", **key)
    assert [r["viewers"] for r in csv.DictReader(io.StringIO(counted.stdout))] == ["0", "0"]
    assert server.stop() == 0
