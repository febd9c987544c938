"""One settings object, loaded once from the environment and a ``.env`` file.

Every field names its variable; ``.env.example`` documents each one (a test keeps the two in step).
The environment wins over ``.env``; ``.env`` wins over the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from core.errors import ConfigError

DOMAIN_TYPES = ("auto", "kvm", "qemu")
PROJECT_DIR = Path(__file__).resolve().parents[1]
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
class Settings:
    """Typed settings. Secrets are kept out of ``repr`` so they never reach a log line."""

    connect_uri: str | None = _setting("LIBVIRT_DEFAULT_URI")
    """libvirt URI; unset: qemu:///system when its socket answers, else the demo lab."""
    data_dir: Path = _setting("VMM_DATA_DIR", factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    """Runtime data: the log file and, later, the token and audit databases."""
    config_dir: Path = _setting("VMM_CONFIG_DIR", factory=lambda: _xdg("XDG_CONFIG_HOME", ".config"))
    """Configuration files: ``templates.toml`` and ``keymap.toml`` (TUI key remapping)."""
    log_file: Path | None = _setting("VMM_LOG_FILE")
    """Log file (rotated); default ``<data dir>/vm-manager.log``."""
    log_level: str = _setting("VMM_LOG_LEVEL", "INFO")
    template_dir: Path | None = _setting("VMM_TEMPLATE_DIR")
    """Template images; never deleted with a VM. Default ``<data dir>/templates``."""
    halt_timeout: float = _setting("VMM_HALT_TIMEOUT", 60.0)
    """Seconds a graceful halt waits for the guest before it destroys the VM."""
    stats_interval: float = _setting("VMM_STATS_INTERVAL", 2.0)
    """Seconds between two bulk statistics samples."""
    bulk_concurrency: int = _setting("VMM_BULK_CONCURRENCY", 8)
    """libvirt calls a bulk action makes at once."""
    keepalive_interval: int = _setting("VMM_KEEPALIVE_INTERVAL", 5)
    """Seconds between libvirt keepalive probes; a dead daemon shows after interval x count."""
    keepalive_count: int = _setting("VMM_KEEPALIVE_COUNT", 3)
    reconnect_max_delay: float = _setting("VMM_RECONNECT_MAX_DELAY", 30.0)
    """Upper bound of the reconnection back-off, in seconds."""
    domain_type: str = _setting("VMM_DOMAIN_TYPE", "auto")
    """Domain type for new VMs: auto, kvm or qemu (TCG)."""
    student_vms_dir: Path = _setting("VMM_STUDENT_VMS_DIR", factory=lambda: PROJECT_DIR / "student_vms")
    """Root of the per-student folders ``<username>/<vm>/`` (overlay, seed, console log)."""
    console_socket_dir: Path = _setting("VMM_CONSOLE_SOCKET_DIR",
                                        factory=lambda: Path("/var/lib/vm-manager/consoles"))
    """VMs' VNC sockets: a directory only QEMU and this service can enter."""
    vm_name_scheme: str = _setting("VMM_VM_NAME_SCHEME", "{class}-{username}")
    """How provisioning names a VM: ``{class}``, ``{username}`` and ``{template}`` are replaced."""
    provision_concurrency: int = _setting("VMM_PROVISION_CONCURRENCY", 4)
    """VMs provisioning makes at once."""
    public_url: str | None = _setting("PUBLIC_URL")
    """The address users reach the web server at (e.g. https://vm.example.org): links and Origin checks."""
    trusted_proxies: str = _setting("VMM_TRUSTED_PROXIES", "")
    """Comma-separated addresses whose X-Forwarded-* headers are believed (e.g. 127.0.0.1 for nginx)."""
    share_ttl: str = _setting("VMM_SHARE_TTL", "4h")
    """How long a console share link lasts unless told otherwise (30m, 4h, 2d)."""
    console_ports: str = _setting("VMM_CONSOLE_PORTS", "6900-6999")
    """Loopback ports for console endpoints where a Unix socket cannot serve."""
    runtime_dir: Path | None = _setting("VMM_RUNTIME_DIR")
    """The server's private sockets (console endpoints, admin API); default ``<data dir>/run``."""
    # Names kept from the older web version of this tool (used by the web server and LDAP sign-in).
    secret_key: str | None = _setting("SECRET_KEY", secret=True)
    ldap_host: str | None = _setting("LDAP_HOST")
    ldap_base_dn: str | None = _setting("LDAP_BASE_DN")
    ldap_bind_user_dn: str | None = _setting("LDAP_BIND_USER_DN")
    ldap_bind_user_password: str | None = _setting("LDAP_BIND_USER_PASSWORD", secret=True)
    ldap_user_filter: str = _setting("LDAP_USER_FILTER", "(uid={username})")
    """How sign-in finds a user under LDAP_BASE_DN; ``{username}`` becomes the typed name, escaped."""
    ldap_uid_attribute: str = _setting("LDAP_UID_ATTRIBUTE", "uid")
    """The attribute holding a user's name: the identity is the entry's value, not what was typed."""
    ldap_operator_group: str | None = _setting("LDAP_OPERATOR_GROUP")
    """DN of the group whose members sign in as operators (see every VM and request)."""
    ldap_ca_file: Path | None = _setting("LDAP_CA_FILE")
    """CA certificates (PEM) the LDAP server's certificate must chain to; default: the system's."""
    ldap_starttls: bool = _setting("LDAP_STARTTLS", False)
    """Upgrade an ldap:// connection with StartTLS (ldaps:// is TLS from the start)."""
    session_ttl: str = _setting("VMM_SESSION_TTL", "8h")
    """How long a web sign-in lasts (30m, 8h, 2d)."""
    smtp_host: str | None = _setting("SMTP_HOST")
    """Mail server for request notices; unset: no mail is sent."""
    smtp_port: int = _setting("SMTP_PORT", 587)
    smtp_starttls: bool = _setting("SMTP_STARTTLS", True)
    """Upgrade the SMTP connection with STARTTLS (verifying the server's certificate)."""
    smtp_user: str | None = _setting("SMTP_USER")
    smtp_password: str | None = _setting("SMTP_PASSWORD", secret=True)
    smtp_from: str | None = _setting("SMTP_FROM")
    """Sender address of request notices, e.g. vm-manager@example.org."""
    operator_email: str | None = _setting("VMM_OPERATOR_EMAIL")
    """Where new resource requests are mailed (comma-separated addresses)."""

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
        """SQLite: share links and console sessions (later sign-in sessions, requests, audit)."""
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


def env_names() -> list[str]:
    """Every variable a setting reads, in declaration order."""
    return [f.metadata["env"] for f in dataclasses.fields(Settings)]


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
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = values.get(f.metadata["env"])
        if raw is None or raw == "":
            continue
        kwargs[f.name] = _convert(f, raw)
    settings = Settings(**kwargs)
    if settings.domain_type not in DOMAIN_TYPES:
        raise ConfigError(f"VMM_DOMAIN_TYPE must be one of {', '.join(DOMAIN_TYPES)}, "
                          f"not {settings.domain_type!r}")
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
