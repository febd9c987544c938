"""A throwaway OpenLDAP server for tests: Debian's ``slapd`` on a loopback port, from a temp dir.

    with Slapd(tmp_path, lab_entries()) as server:
        settings = Settings(ldap_host=server.url, ldap_base_dn=SUFFIX,
                            ldap_bind_user_dn=SERVICE_DN, ldap_bind_user_password=SERVICE_PASSWORD)

The directory is data: :func:`lab_entries` is the standard lab (people alice, bob and carol, the
``groupOfNames`` info1 and the ``posixGroup`` info2, the read-only service account); callers append
their own :class:`Entry` objects (parents before children), then start. Everything -- config, database,
pid file, log -- lives in the given directory; a system slapd (Debian's postinst may start one on
port 389) is never used or touched. Needs the Debian packages ``slapd`` and ``ldap-utils``.

TLS: give ``tls=(certificate, key)`` (PEM files, e.g. from support/tlsca.py) and slapd also listens on
``ldaps_url`` and offers StartTLS on ``url``. ``config`` adds global directives (``allow bind_anon_cred``),
``loglevel`` (``stats``) makes slapd log each connection and operation to ``log_path``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp.test_utils import unused_port

SUFFIX = "dc=lab,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=vmm,{SUFFIX}"
SERVICE_PASSWORD = "vmm-service-S3cret"
ADMIN_DN = f"cn=admin,{SUFFIX}"
"""The rootdn: may write anything, for tests that change the directory while it runs."""
ADMIN_PASSWORD = "admin-S3cret"
PASSWORDS = {"alice": "alice-Pa55", "bob": "bob-Pa55", "carol": "carol-Pa55"}
"""Clear-text passwords of the lab's people (stored hashed by slappasswd)."""

SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_DIR = Path("/usr/lib/ldap")

# Read access for the service account only; passwords are never readable, only usable to bind.
DEFAULT_ACCESS = f"""\
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{SERVICE_DN}" read
    by * none
"""


ACCEPT = " ACCEPT from "  # slapd's log line of a new connection


class SlapdError(RuntimeError):
    """slapd could not be set up or started; the message carries its log."""


@dataclass
class Entry:
    """One LDIF entry. ``password`` (clear text) becomes a slappasswd-hashed ``userPassword``."""

    dn: str
    attrs: dict[str, list[str]]
    password: str | None = None

    def ldif(self, hashed: str | None = None) -> str:
        lines = [_ldif_line("dn", self.dn)]
        for name, values in self.attrs.items():
            lines += [_ldif_line(name, value) for value in values]
        if hashed is not None:
            lines.append(_ldif_line("userPassword", hashed))
        return "\n".join(lines) + "\n"


def person(uid: str, cn: str, password: str | None = None, *, parent: str = PEOPLE,
           **extra: list[str]) -> Entry:
    """An ``inetOrgPerson`` ``uid=<uid>,<parent>``."""
    attrs = {"objectClass": ["inetOrgPerson"], "uid": [uid], "cn": [cn],
             "sn": [cn.split()[-1] if cn.strip() else uid]}
    return Entry(f"uid={uid},{parent}", attrs | extra, password)


def group_of_names(cn: str, member_dns: list[str], *, rdn: str | None = None) -> Entry:
    """A ``groupOfNames``; ``rdn`` (already escaped) overrides ``cn=<cn>`` for odd DNs."""
    return Entry(f"{rdn or 'cn=' + cn},{GROUPS}", {"objectClass": ["groupOfNames"], "cn": [cn],
                                                  "member": member_dns})


def posix_group(cn: str, gid: int, member_uids: list[str]) -> Entry:
    attrs = {"objectClass": ["posixGroup"], "cn": [cn], "gidNumber": [str(gid)]}
    if member_uids:
        attrs["memberUid"] = member_uids
    return Entry(f"cn={cn},{GROUPS}", attrs)


def lab_entries() -> list[Entry]:
    """The standard lab: base, ou=people, ou=groups, the service account, three people, two groups."""
    people = [person("alice", "Alice Liddell", PASSWORDS["alice"]),
              person("bob", "Bob Builder", PASSWORDS["bob"]),
              person("carol", "Carol Danvers", PASSWORDS["carol"])]
    return [
        Entry(SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["lab"], "o": ["Lab"]}),
        Entry(PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]}),
        Entry(GROUPS, {"objectClass": ["organizationalUnit"], "ou": ["groups"]}),
        Entry(SERVICE_DN, {"objectClass": ["organizationalRole", "simpleSecurityObject"], "cn": ["vmm"]},
              SERVICE_PASSWORD),
        *people,
        group_of_names("info1", [people[0].dn, people[1].dn]),
        posix_group("info2", 5002, ["bob", "carol"]),
    ]


@dataclass
class Slapd:
    """A slapd of our own in ``workdir``: ``start()``/``stop()``, or use it as a context manager."""

    workdir: Path
    entries: list[Entry] = field(default_factory=lab_entries)
    suffix: str = SUFFIX
    access: str = DEFAULT_ACCESS
    start_timeout: float = 10.0
    port: int = 0
    tls: tuple[Path, Path] | None = None
    """(certificate, private key) PEM files: serve LDAPS on ``ldaps_port`` and StartTLS on ``port``."""
    config: str = ""
    """Extra global slapd.conf directives, one per line."""
    loglevel: str = ""
    """slapd's debug level (e.g. ``stats``: one line per connection and operation, in ``log_path``)."""
    ldaps_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "slapd.log"

    def start(self) -> Slapd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        self._load(conf)
        for _ in range(3):  # the free port we picked may be taken before slapd binds it
            self.port = unused_port()
            self.ldaps_port = unused_port() if self.tls else 0
            if self._launch(conf):
                return self
        raise SlapdError(f"slapd found no free port:\n{self._log()}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _write_config(self) -> Path:
        db = self.workdir / "db"
        db.mkdir(exist_ok=True)
        includes = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS)
        conf = self.workdir / "slapd.conf"
        conf.write_text(f"""\
{includes}
pidfile {self.workdir / "slapd.pid"}
argsfile {self.workdir / "slapd.args"}
modulepath {MODULE_DIR}
moduleload back_mdb
{self._tls_config()}
{self.config}
database mdb
maxsize 16777216
suffix "{self.suffix}"
rootdn "{ADMIN_DN}"
rootpw {_hash(ADMIN_PASSWORD)}
directory {db}
dbnosync
index objectClass,uid,memberUid,member eq
{self.access}""")
        return conf

    def _tls_config(self) -> str:
        """Global TLS directives: the server's certificate and key (no client certificates asked)."""
        if self.tls is None:
            return ""
        cert, key = self.tls
        return f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\nTLSVerifyClient never"

    def log(self) -> str:
        """Everything slapd logged so far."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def seen(self, marker: str = ACCEPT) -> int:
        """How many times ``marker`` is in the log (by default: connections accepted)."""
        return self.log().count(marker)

    def settle(self, count: int, marker: str = ACCEPT) -> int:
        """Until the log holds ``marker`` ``count`` times (5 s at most), then a moment more for any
        stray one; how many times it holds it."""
        deadline = time.monotonic() + 5
        while self.seen(marker) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        return self.seen(marker)

    def _load(self, conf: Path) -> None:
        ldif = self.workdir / "data.ldif"
        ldif.write_text("\n".join(e.ldif(_hash(e.password) if e.password else None) for e in self.entries))
        done = subprocess.run([_need("slapadd"), "-q", "-f", str(conf), "-l", str(ldif)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SlapdError(f"slapadd failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _launch(self, conf: Path) -> bool:
        """Start slapd on ``self.port``; False when that port was taken, SlapdError on other failures."""
        log = self.log_path.open("wb")
        # -d: stay in the foreground (so stop() can wait for it) and log to stderr (at ``loglevel``).
        self.process = subprocess.Popen(
            [_need("slapd"), "-d", self.loglevel or "0", "-f", str(conf), "-h", " ".join(self._urls())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = self._log()
                self.process = None
                if "Address already in use" in text:
                    return False
                raise SlapdError(f"slapd exited at once:\n{text}")
            if _answers(self.port) and (not self.ldaps_port or _answers(self.ldaps_port)):
                return True
            time.sleep(0.02)
        self.stop()
        raise SlapdError(f"slapd did not answer on {self.url} within {self.start_timeout:.0f} s:\n"
                         f"{self._log()}")

    def _urls(self) -> list[str]:
        return [f"{self.url}/"] + ([f"{self.ldaps_url}/"] if self.ldaps_port else [])

    def _log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return "(no log)"


def _need(tool: str) -> str:
    """The path of an OpenLDAP program (they live in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        raise SlapdError(f"{tool} not found: apt-get install slapd ldap-utils")
    return found


_hashes: dict[str, str] = {}


def _hash(password: str) -> str:
    """``{SSHA}...`` from slappasswd (cached: each call is a process)."""
    if password not in _hashes:
        done = subprocess.run([_need("slappasswd"), "-n", "-s", password],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SlapdError(f"slappasswd failed: {done.stderr}")
        _hashes[password] = done.stdout.strip()
    return _hashes[password]


def _ldif_line(name: str, value: str) -> str:
    """``name: value``, or ``name:: base64`` when LDIF (RFC 2849) can't carry the value as it is."""
    unsafe = (not value.isascii() or any(c in value for c in "\0\n\r") or value[:1] in (" ", ":", "<")
              or value.endswith(" "))
    if unsafe:
        return f"{name}:: {base64.b64encode(value.encode()).decode()}"
    return f"{name}: {value}"



def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
