"""cloud-init NoCloud seeds: the first-boot settings of a Linux VM, on a small ISO (volume ``cidata``).

``user-data`` is written by a YAML library, never by string formatting, so a newline or a quote
in a name or an SSH key stays data and cannot become a command. The ISO is made with pycdlib (no
genisoimage process, no mount). Passwords are hashed (SHA-512 crypt) by ``openssl passwd -6``,
fed on standard input so they never appear in a process list.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InvalidInput
from core.names import check_username, check_vm_name
from core.text import CONTROL

VOLUME_ID = "cidata"


@dataclass(frozen=True)
class SeedUser:
    username: str
    full_name: str = ""
    password: str | None = None  # in clear; hashed here, never stored
    ssh_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinuxSeed:
    hostname: str
    instance_id: str
    user: SeedUser
    keyboard: str = "fr"
    locale: str = "fr_FR.UTF-8"
    extra_packages: tuple[str, ...] = field(default=())


def gecos_problem(full_name: str) -> str | None:
    """Why a Linux account's full name (its GECOS comment) cannot be ``full_name``, or None.

    cloud-init makes the account with ``useradd --comment FULL_NAME`` (an argument, no shell), and
    when useradd refuses, cloud-init logs it and goes on without the account. useradd refuses ':'
    (the field separator of /etc/passwd: exit 3, "invalid comment") and fails on control characters
    (exit 1); commas, '=', quotes, a leading '-' and any other printable text go through.
    """
    if CONTROL.search(full_name):
        return "the full name contains a line break or another control character"
    if ":" in full_name:
        return "the full name contains ':', which Linux account records cannot hold (useradd refuses it)"
    return None


# Accounts and groups a Debian image already has (base-passwd's fixed ones, and those of the
# packages our templates install). cloud-init does not make an account that exists: it gives the
# existing one the student's password, keys and sudo rule (a roster row "root" would set root's
# password); and useradd refuses a name its own group would take ("users", "sudo").
SYSTEM_NAMES = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "messagebus", "sshd",
    "polkitd", "tss", "uuidd", "syslog", "dnsmasq", "avahi", "ntp", "statd", "postfix", "admin",
    "adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo",
    "audio", "dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff",
    "users", "netdev", "input", "kvm", "render", "crontab", "ssh",
})


def linux_username_problem(username: str) -> str | None:
    """Why a Linux student account cannot be called ``username`` (the guest's own), or None."""
    if username in SYSTEM_NAMES or username.startswith("systemd-"):
        return f"{username!r} is a system account or group of the guest, not a student's"
    return None


def hash_password(password: str) -> str:
    """SHA-512 crypt, as /etc/shadow and cloud-init's ``passwd`` take it."""
    if not password or "\n" in password:
        raise InvalidInput("a password must be non-empty and on one line")
    result = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                            capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()


def user_data(seed: LinuxSeed) -> str:
    """The ``#cloud-config`` document."""
    user: dict[str, object] = {
        "name": seed.user.username,
        "gecos": seed.user.full_name,
        "groups": ["sudo"],
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) ALL",
        "lock_passwd": seed.user.password is None,
    }
    if seed.user.password is not None:
        user["passwd"] = hash_password(seed.user.password)
    if seed.user.ssh_keys:
        user["ssh_authorized_keys"] = list(seed.user.ssh_keys)
    config = {
        "hostname": seed.hostname,
        "preserve_hostname": False,
        "locale": seed.locale,
        "keyboard": {"layout": seed.keyboard},
        "users": [user],
        "ssh_pwauth": seed.user.password is not None,
    }
    import yaml  # here, not at the top: the TUI's start never needs it

    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def meta_data(seed: LinuxSeed) -> str:
    import yaml

    return yaml.safe_dump({"instance-id": seed.instance_id, "local-hostname": seed.hostname},
                          sort_keys=False)


def write_seed_iso(path: Path, seed: LinuxSeed) -> None:
    """Write the NoCloud ISO to ``path`` (readable only by its owner; QEMU gets it via libvirt)."""
    check_vm_name(seed.hostname)
    check_username(seed.user.username)
    if problem := linux_username_problem(seed.user.username) or gecos_problem(seed.user.full_name):
        raise InvalidInput(problem)
    files = {"meta-data": meta_data(seed), "user-data": user_data(seed)}
    import pycdlib  # here, not at the top: the TUI's start never needs it

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_ID)
    for name, text in files.items():
        data = text.encode("utf-8")
        iso.add_fp(io.BytesIO(data), len(data), f"/{name.upper().replace('-', '_')}.;1",
                   rr_name=name, joliet_path=f"/{name}")
    try:
        path.touch(mode=0o600, exist_ok=False)
        iso.write(str(path))
    finally:
        iso.close()


def read_seed_iso(path: Path) -> dict[str, str]:
    """The files of a seed ISO by their Rock Ridge names, read without mounting."""
    import pycdlib  # here, not at the top: the TUI's start never needs it

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        found = {}
        for name in ("meta-data", "user-data"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            found[name] = out.getvalue().decode("utf-8")
        found["volume"] = iso.pvd.volume_identifier.decode().strip()
        return found
    finally:
        iso.close()
