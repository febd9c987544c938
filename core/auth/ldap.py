"""Connections to the LDAP server of the settings, made in one place for every LDAP user.

TLS is verified: ``ldaps://`` and StartTLS (``LDAP_STARTTLS``) check the server's certificate
against ``LDAP_CA_FILE`` (else the system's CAs) and its name against the host of ``LDAP_HOST``;
ldap3 verifies nothing unless told, so it is told here. Connecting and every answer have a timeout.
Failures become :class:`DirectoryError` or :class:`~core.errors.ConfigError`, whose messages never
carry a password.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPOperationResult, LDAPStartTLSError
from ldap3.utils.dn import parse_dn

from core.errors import ConfigError, InvalidInput, VMManagerError
from core.settings import LdapSettings
from core.text import CONTROL, printable

CONNECT_TIMEOUT = 5.0
RECEIVE_TIMEOUT = 10  # an int: ldap3 packs it into SO_RCVTIMEO with struct
_VERIFY_FAILED = re.compile(r"certificate verify failed: ([^(\]'\"]+)")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")

log = logging.getLogger(__name__)
_warned_plain: set[str] = set()


class DirectoryError(VMManagerError):
    """The LDAP server is unreachable, refused our bind or its certificate, or failed a request."""

    title = "Directory error"


def required(ldap: LdapSettings, *names: str) -> list[str]:
    """The values of these LDAP settings; ConfigError names every variable that is not set."""
    env = {f.name: f.metadata["env"] for f in dataclasses.fields(ldap)}
    missing = [env[name] for name in names if not getattr(ldap, name)]
    if missing:
        raise ConfigError(f"LDAP is not configured: set {', '.join(missing)} (in the environment or .env)")
    return [str(getattr(ldap, name)) for name in names]


def values(entry: dict[str, Any], name: str) -> list[str]:
    """An attribute's values in an ldap3 search result entry (none, one or many), as strings."""
    value = entry["attributes"].get(name) or []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def check_dn(dn: str, what: str = "DN") -> str:
    """``dn`` stripped, if it is a valid LDAP DN (RFC 4514) without control characters."""
    dn = dn.strip()
    if CONTROL.search(dn):
        raise InvalidInput(f"invalid {what} {dn!r}: it contains a control character")
    try:
        parse_dn(dn, escape=False)
    except LDAPException as exc:
        raise InvalidInput(f"invalid {what} {dn!r} ({printable(str(exc))}); "
                           "write it as cn=info1,ou=groups,dc=example,dc=org") from None
    return dn


def make_server(ldap: LdapSettings) -> ldap3.Server:
    """The ldap3 Server of LDAP_HOST, with certificate and host name checks; ConfigError when the
    address, LDAP_CA_FILE or LDAP_STARTTLS can't be used."""
    (host,) = required(ldap, "host")
    scheme = urlsplit(host).scheme.lower() if "://" in host else ""
    if scheme == "ldaps" and ldap.starttls:
        raise ConfigError(f"LDAP_STARTTLS is for ldap:// addresses: {host} is TLS from the start; "
                          "unset LDAP_STARTTLS or use ldap://")
    ca_file = ldap.ca_file
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"LDAP_CA_FILE {ca_file} can't be used as CA certificates (PEM): "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        hostname = urlsplit(host if scheme else f"ldap://{host}").hostname or ""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file) if ca_file else None,
                        sni=None if _is_ip(hostname) else hostname or None)
        server = ldap3.Server(host, connect_timeout=CONNECT_TIMEOUT, get_info=ldap3.NONE, tls=tls)
    except (LDAPException, ValueError) as exc:
        raise ConfigError(f"LDAP_HOST {host!r} is not a valid LDAP server address ({exc}); "
                          "write it as ldaps://host:636 or ldap://host:389") from None
    if not server.ssl and not ldap.starttls and hostname not in _LOOPBACK \
            and host not in _warned_plain:
        _warned_plain.add(host)
        log.warning("LDAP_HOST %s is plain ldap:// without LDAP_STARTTLS: passwords cross the network "
                    "in clear", host)
    return server


def open_connection(ldap: LdapSettings, user_dn: str | None, password: str | None, *,
                    receive_timeout: int | None = None) -> ldap3.Connection:
    """A connection to LDAP_HOST, open (TCP, TLS, StartTLS when asked) but not yet bound.

    DirectoryError when the server can't be reached or its certificate is refused."""
    server = make_server(ldap)
    host = str(ldap.host)
    conn = ldap3.Connection(server, user=user_dn, password=password, read_only=True,
                            auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=True, auto_referrals=False,
                            receive_timeout=receive_timeout or RECEIVE_TIMEOUT)
    step = "connect"
    try:
        conn.open()
        if ldap.starttls:
            step = "starttls"
            conn.start_tls()
    except LDAPException as exc:
        with suppress(LDAPException):
            conn.unbind()
        raise _open_error(exc, host, ldap, password or "", starttls=step == "starttls") from None
    return conn


@contextmanager
def connect(ldap: LdapSettings, user_dn: str | None = None, password: str | None = None, *,
            receive_timeout: int | None = None) -> Iterator[ldap3.Connection]:
    """A bound connection to LDAP_HOST, as the bind account unless ``user_dn``/``password`` say
    otherwise; every LDAP failure inside the block becomes a DirectoryError (without the password)."""
    (host,) = required(ldap, "host")
    if user_dn is None:
        user_dn, password = required(ldap, "bind_user_dn", "bind_user_password")
    secret = password or ""
    conn = open_connection(ldap, user_dn, password, receive_timeout=receive_timeout)
    try:
        try:
            conn.bind()
        except LDAPOperationResult as exc:
            raise DirectoryError(f"the LDAP server {host} refused the bind as {user_dn!r} "
                                 f"({exc.description}); check LDAP_BIND_USER_DN and its password") from None
        except LDAPException:
            raise
        except Exception as exc:  # ldap3's decoder fails on any other protocol (KeyError, ...)
            raise DirectoryError(f"{host} does not answer as an LDAP server ({type(exc).__name__}); "
                                 "check LDAP_HOST") from None
        yield conn
    except LDAPException as exc:
        raise DirectoryError(f"LDAP request to {host} failed ({scrub(exc, secret)})") from None
    finally:
        with suppress(LDAPException):
            conn.unbind()


def _open_error(exc: LDAPException, host: str, ldap: LdapSettings, secret: str, *,
                starttls: bool) -> DirectoryError:
    """The DirectoryError of a failed connect or StartTLS, naming a certificate problem plainly."""
    text = scrub(exc, secret)
    where = f"LDAP_CA_FILE {ldap.ca_file}" if ldap.ca_file else "the system's CAs"
    verify = _VERIFY_FAILED.search(text)
    if isinstance(exc, ssl.SSLCertVerificationError) or verify:
        reason = verify[1].strip() if verify else "certificate verify failed"
        return DirectoryError(f"the certificate of the LDAP server {host} was refused ({reason}): it does "
                              f"not chain to {where}; set LDAP_CA_FILE to the CA that signed it")
    if "doesn't match any name" in text:
        return DirectoryError(f"the certificate of the LDAP server {host} was refused: it is not made out "
                              f"to that host name; use the name the certificate carries in LDAP_HOST")
    if starttls or isinstance(exc, LDAPStartTLSError):
        return DirectoryError(f"StartTLS with the LDAP server {host} failed ({text}); check LDAP_STARTTLS "
                              "and the server's TLS setup")
    if isinstance(exc, ssl.SSLError) or "ssl" in text.lower():
        return DirectoryError(f"TLS with the LDAP server {host} failed ({text})")
    return DirectoryError(f"cannot reach the LDAP server {host} ({text})")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def scrub(exc: BaseException, secret: str) -> str:
    """``str(exc)`` with ``secret`` masked."""
    text = str(exc)
    return text.replace(secret, "***") if secret else text
