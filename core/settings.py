"""One settings object, loaded once from the environment and a settings file.

Settings are grouped by subject (``settings.ldap.host``, ``settings.web.public_url``…); every
field names its variable, whose name never changes; ``.env.example`` documents each one (a test
keeps the two in step). The environment wins over the file; the file wins over the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from core.errors import ConfigError

DOMAIN_TYPES = ("auto", "kvm", "qemu")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROJECT_DIR = Path(__file__).resolve().parents[1]
_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_DIGITS = 12
"""A duration's numbers have at most this many digits (beyond: over 30,000 years in seconds): int()
of thousands of digits is refused, and float() of a huge sum overflows."""
_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True, "0": False, "no": False, "false": False,
             "off": False}


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback) / "vm-manager"


def _setting(env: str, default: Any = None, *, secret: bool = False, factory: Any = None) -> Any:
    meta = {"env": env, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class HostSettings:
    """How the connection to a hypervisor is kept and read."""

    stats_interval: float = _setting("VMM_STATS_INTERVAL", 2.0)
    """Seconds between two bulk statistics samples."""
    keepalive_interval: int = _setting("VMM_KEEPALIVE_INTERVAL", 5)
    """Seconds between libvirt keepalive probes; a dead daemon shows after interval x count."""
    keepalive_count: int = _setting("VMM_KEEPALIVE_COUNT", 3)
    """Keepalive probes unanswered before the connection counts as lost."""
    reconnect_max_delay: float = _setting("VMM_RECONNECT_MAX_DELAY", 30.0)
    """Upper bound of the reconnection back-off, in seconds."""


@dataclass(frozen=True)
class ActionSettings:
    """Lifecycle actions on many VMs."""

    halt_timeout: float = _setting("VMM_HALT_TIMEOUT", 60.0)
    """Seconds a graceful halt waits for the guest before it destroys the VM."""
    bulk_concurrency: int = _setting("VMM_BULK_CONCURRENCY", 8)
    """libvirt calls a bulk action makes at once."""


@dataclass(frozen=True)
class ProvisionSettings:
    """Making a class's VMs."""

    domain_type: str = _setting("VMM_DOMAIN_TYPE", "auto")
    """Domain type for new VMs: auto, kvm or qemu (TCG)."""
    student_vms_dir: Path = _setting("VMM_STUDENT_VMS_DIR", factory=lambda: PROJECT_DIR / "student_vms")
    """Root of the per-student folders ``<username>/<vm>/`` (overlay, seed, console log)."""
    vm_name_scheme: str = _setting("VMM_VM_NAME_SCHEME", "{class}-{username}")
    """How provisioning names a VM: ``{class}``, ``{username}`` and ``{template}`` are replaced."""
    concurrency: int = _setting("VMM_PROVISION_CONCURRENCY", 4)
    """VMs provisioning makes at once."""


@dataclass(frozen=True)
class ConsoleSettings:
    """Browser consoles and their share links."""

    socket_dir: Path = _setting("VMM_CONSOLE_SOCKET_DIR",
                                factory=lambda: Path("/var/lib/vm-manager/consoles"))
    """VMs' VNC sockets: a directory only QEMU and this service can enter."""
    share_ttl: str = _setting("VMM_SHARE_TTL", "4h")
    """How long a console share link lasts unless told otherwise (30m, 4h, 2d)."""
    ports: str = _setting("VMM_CONSOLE_PORTS", "6900-6999")
    """Loopback ports for console endpoints where a Unix socket cannot serve."""
    viewers_per_link: int = _setting("VMM_VIEWERS_PER_LINK", 4)
    """Consoles one link (a share link, or a portal sign-in's) may have open at once."""
    viewers_per_vm: int = _setting("VMM_VIEWERS_PER_VM", 16)
    """Browser consoles one VM may have open at once, through all its links (QEMU's VNC takes 32)."""


@dataclass(frozen=True)
class WebSettings:
    """The web server (``vm-manager serve``): its address, its proxies, its key, sign-ins."""

    public_url: str | None = _setting("PUBLIC_URL")
    """The address users reach the web server at (e.g. https://vm.example.org): links and Origin checks."""
    trusted_proxies: str = _setting("VMM_TRUSTED_PROXIES", "")
    """Comma-separated addresses whose X-Forwarded-* headers are believed (e.g. 127.0.0.1 for nginx)."""
    secret_key: str | None = _setting("SECRET_KEY", secret=True)
    """Keys every stored token and session hash (a name kept from the older web version)."""
    session_ttl: str = _setting("VMM_SESSION_TTL", "8h")
    """How long a web sign-in lasts (30m, 8h, 2d)."""
    signin_concurrency: int = _setting("VMM_SIGNIN_CONCURRENCY", 2)
    """Passwords checked at once; more sign-ins wait their turn. Each argon2 check holds 64 MiB and
    a core for about 0.1 s: a class signing in at once would otherwise take memory by the thread."""
    idle_timeout: float = _setting("VMM_HTTP_IDLE_TIMEOUT", 15.0)
    """Seconds a connection may go without a whole request before the server closes it: from its
    opening to its first request's last header, and between requests on a kept-alive one (not a
    request being answered, nor an open console's websocket)."""


@dataclass(frozen=True)
class LdapSettings:
    """The directory: LDAP sign-in and LDAP groups as rosters (the first four names are kept from
    the older web version)."""

    host: str | None = _setting("LDAP_HOST")
    """``ldap://`` or ``ldaps://`` URL of the server; unset: no LDAP."""
    base_dn: str | None = _setting("LDAP_BASE_DN")
    """Where sign-in looks for users."""
    bind_user_dn: str | None = _setting("LDAP_BIND_USER_DN")
    """The service account that searches the directory."""
    bind_user_password: str | None = _setting("LDAP_BIND_USER_PASSWORD", secret=True)
    """Its password."""
    user_filter: str = _setting("LDAP_USER_FILTER", "(uid={username})")
    """How sign-in finds a user under LDAP_BASE_DN; ``{username}`` becomes the typed name, escaped."""
    uid_attribute: str = _setting("LDAP_UID_ATTRIBUTE", "uid")
    """The attribute holding a user's name: the identity is the entry's value, not what was typed."""
    operator_group: str | None = _setting("LDAP_OPERATOR_GROUP")
    """DN of the group whose members sign in as operators (see every VM and request)."""
    ca_file: Path | None = _setting("LDAP_CA_FILE")
    """CA certificates (PEM) the LDAP server's certificate must chain to; default: the system's."""
    starttls: bool = _setting("LDAP_STARTTLS", False)
    """Upgrade an ldap:// connection with StartTLS (ldaps:// is TLS from the start)."""
    recheck_interval: float = _setting("VMM_LDAP_RECHECK_INTERVAL", 300.0)
    """Seconds a portal session of an LDAP user is trusted before the directory is asked again:
    the role is read again (a changed role ends the session), and a user no longer found ends it."""


@dataclass(frozen=True)
class RecordSettings:
    """What is kept, and for how long."""

    audit_days: int = _setting("VMM_AUDIT_DAYS", 365)
    """Days the audit log keeps an entry; the server (``vm-manager serve``) purges older ones."""


@dataclass(frozen=True)
class SmtpSettings:
    """Mail about students' requests."""

    host: str | None = _setting("SMTP_HOST")
    """Mail server for request notices; unset: no mail is sent."""
    port: int = _setting("SMTP_PORT", 587)
    """Its port."""
    starttls: bool = _setting("SMTP_STARTTLS", True)
    """Upgrade the SMTP connection with STARTTLS (verifying the server's certificate)."""
    user: str | None = _setting("SMTP_USER")
    """Account to authenticate as; unset: no authentication."""
    password: str | None = _setting("SMTP_PASSWORD", secret=True)
    """Its password."""
    sender: str | None = _setting("SMTP_FROM")
    """Sender address of request notices, e.g. vm-manager@example.org."""
    operator_email: str | None = _setting("VMM_OPERATOR_EMAIL")
    """Where new resource requests are mailed (comma-separated addresses)."""


_GROUPS = {"hosts": HostSettings, "actions": ActionSettings, "provision": ProvisionSettings,
           "consoles": ConsoleSettings, "web": WebSettings, "ldap": LdapSettings, "records": RecordSettings,
           "smtp": SmtpSettings}


@dataclass(frozen=True)
class Settings:
    """Typed settings, grouped by subject. Secrets are kept out of ``repr`` so they never reach a log line."""

    connect_uri: str | None = _setting("LIBVIRT_DEFAULT_URI")
    """libvirt URI; unset: qemu:///system when its socket answers, else the demo lab."""
    data_dir: Path = _setting("VMM_DATA_DIR", factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    """Runtime data: the database, the log file, the passwords files, the KVM probe's answer."""
    config_dir: Path = _setting("VMM_CONFIG_DIR", factory=lambda: _xdg("XDG_CONFIG_HOME", ".config"))
    """Configuration files: ``templates.toml`` and ``keymap.toml`` (TUI key remapping)."""
    log_file: Path | None = _setting("VMM_LOG_FILE")
    """Log file (rotated); default ``<data dir>/vm-manager.log``."""
    log_level: str = _setting("VMM_LOG_LEVEL", "INFO")
    """DEBUG, INFO, WARNING or ERROR."""
    template_dir: Path | None = _setting("VMM_TEMPLATE_DIR")
    """Template images; never deleted with a VM. Default ``<data dir>/templates``."""
    runtime_dir: Path | None = _setting("VMM_RUNTIME_DIR")
    """The server's private sockets (console endpoints, admin API); default ``<data dir>/run``."""
    hosts: HostSettings = field(default_factory=HostSettings)
    actions: ActionSettings = field(default_factory=ActionSettings)
    provision: ProvisionSettings = field(default_factory=ProvisionSettings)
    consoles: ConsoleSettings = field(default_factory=ConsoleSettings)
    web: WebSettings = field(default_factory=WebSettings)
    ldap: LdapSettings = field(default_factory=LdapSettings)
    records: RecordSettings = field(default_factory=RecordSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)

    @property
    def log_path(self) -> Path:
        return self.log_file or self.data_dir / "vm-manager.log"

    @property
    def templates_path(self) -> Path:
        return self.template_dir or self.data_dir / "templates"

    @property
    def templates_file(self) -> Path:
        return self.config_dir / "templates.toml"

    @property
    def database_path(self) -> Path:
        """SQLite: share links, console and sign-in sessions, local accounts, requests, the audit log."""
        return self.data_dir / "vm-manager.sqlite3"

    @property
    def run_path(self) -> Path:
        """The server's private sockets: only the service can enter (made mode 0700)."""
        return self.runtime_dir or self.data_dir / "run"

    @property
    def admin_socket(self) -> Path:
        return self.run_path / "admin.sock"

    @property
    def passwords_dir(self) -> Path:
        """Generated passwords, one file per provisioning run, readable only by the operator."""
        return self.data_dir / "passwords"

    @property
    def keymap_path(self) -> Path:
        return self.config_dir / "keymap.toml"

    def with_uri(self, uri: str | None) -> Settings:
        return self if uri is None else dataclasses.replace(self, connect_uri=uri)


def _fields(kind: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(kind) if "env" in f.metadata]


def env_names() -> list[str]:
    """Every variable a setting reads, in declaration order."""
    return [f.metadata["env"] for kind in (Settings, *_GROUPS.values()) for f in _fields(kind)]


SYSTEM_ENV_FILE = Path("/etc/vm-manager/env")
"""The deployed service's settings (deploy/vm-manager.service reads it too): operators' TUI and CLI
on the same host find the same data directory, database and admin socket there."""


def env_file_path(environ: Mapping[str, str]) -> Path:
    """``VMM_ENV_FILE``, else ``./.env``, else /etc/vm-manager/env (it may not exist)."""
    if environ.get("VMM_ENV_FILE"):
        return Path(environ["VMM_ENV_FILE"])
    local = Path(".env")
    return local if local.is_file() else SYSTEM_ENV_FILE


def load_settings(env_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the env file (:func:`env_file_path`) and the environment into a Settings."""
    environ = os.environ if environ is None else environ
    path = Path(env_file) if env_file else env_file_path(environ)
    try:
        values: dict[str, str | None] = dict(dotenv_values(path)) if path.is_file() else {}
    except OSError as exc:
        hint = ""
        if path == SYSTEM_ENV_FILE:
            hint = (" (the service's settings: run vm-manager as the service's user, e.g. "
                    "`sudo -u vm-manager vm-manager`, or point VMM_ENV_FILE elsewhere)")
        raise ConfigError(f"cannot read the settings file {path}: {exc.strerror or exc}{hint}") from None
    values.update(environ)

    def read(kind: type) -> dict[str, Any]:
        return {f.name: _convert(f, raw) for f in _fields(kind)
                if (raw := values.get(f.metadata["env"])) is not None and raw != ""}

    settings = Settings(**read(Settings), **{name: kind(**read(kind)) for name, kind in _GROUPS.items()})
    if settings.provision.domain_type not in DOMAIN_TYPES:
        raise ConfigError(f"VMM_DOMAIN_TYPE must be one of {', '.join(DOMAIN_TYPES)}, "
                          f"not {settings.provision.domain_type!r}")
    if settings.log_level.strip().upper() not in LOG_LEVELS:
        raise ConfigError(f"VMM_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}")
    return settings


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered not in _BOOLEANS:
            raise ConfigError(f"{f.metadata['env']} must be yes or no, not {raw!r}")
        return _BOOLEANS[lowered]
    if kind.startswith("Path"):
        return Path(raw).expanduser()
    if kind not in ("float", "int"):
        return raw
    try:
        return positive_number(raw, int if kind == "int" else float)
    except ValueError as exc:
        raise ConfigError(f"{f.metadata['env']} must be {exc}, not {raw!r}") from None


def positive_number(raw: str, kind: type[int] | type[float] = float) -> float:
    """``raw`` as a finite number above zero; ValueError says what it must be."""
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("a finite number greater than zero")
    return value


def duration(text: str) -> int:
    """``30m``, ``4h``, ``2d`` or ``1h30m`` (any case, blanks around) in whole seconds; ValueError
    says what it must be. Zero is a duration: the caller says whether it may be."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError("written like 30m, 4h or 2d")
    if any(len(n.lstrip("0")) > _DURATION_DIGITS for n, _ in parts):
        raise ValueError(f"a number of at most {_DURATION_DIGITS} digits")
    return sum(int(n) * _UNITS[u] for n, u in parts)
