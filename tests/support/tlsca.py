"""A throwaway certificate authority for tests, made with the ``openssl`` command (Debian's).

    ca = TestCA.make(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "server")             # for 127.0.0.1 and localhost
    other = TestCA.make(tmp_path / "other", "Another CA")  # a CA the server's certificate does not chain to

Keys are EC P-256 without a passphrase; certificates last two days. Nothing here is for production.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class TlsCAError(RuntimeError):
    """openssl failed; the message carries its output."""


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TestCA:
    """A CA: its certificate (``cert``, what LDAP_CA_FILE points at) and key, in ``workdir``."""

    __test__ = False  # not a pytest test class, whatever its name

    workdir: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, workdir: Path, name: str = "VM Manager test CA") -> TestCA:
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = workdir / "ca.pem", workdir / "ca.key"
        _openssl("req", "-x509", *_KEY, "-keyout", str(key), "-out", str(cert), "-days", DAYS,
                 "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cls(workdir, cert, key)

    def issue(self, workdir: Path, *, dns: Sequence[str] = ("localhost",),
              ips: Sequence[str] = ("127.0.0.1",), common_name: str | None = None) -> ServerCert:
        """A server certificate (and its key) for these names, signed by this CA."""
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key, csr, ext = (workdir / n for n in ("server.pem", "server.key", "server.csr", "server.ext"))
        names = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        ext.write_text(f"subjectAltName={','.join(names)}\n"
                       "basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\n"
                       "subjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid,issuer\n")
        cn = common_name or (list(dns) + list(ips) + ["server"])[0]
        _openssl("req", "-new", *_KEY, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(secrets.randbits(63) + 1), "-days", DAYS, "-extfile", str(ext),
                 "-out", str(cert))
        return ServerCert(cert, key)


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise TlsCAError("openssl not found: apt-get install openssl")
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=60)
    if done.returncode != 0:
        raise TlsCAError(f"openssl {args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
