"""Templates: what a class's VMs are made from, declared in ``templates.toml`` (config dir).

A template is a base disk image (qcow2) and/or a kernel + initrd + command line (direct kernel
boot), plus its settings. Relative paths are relative to the templates directory. Example::

    [templates.tiny]
    os = "linux"
    kernel = "tiny/vmlinuz"
    initrd = "tiny/initrd.img"
    cmdline = "console=tty0 console=ttyS0"
    domain_type = "qemu"
    memory_mib = 128

``load_templates`` refuses a bad file as a whole, naming every problem.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.names import VM_NAME
from core.storage.permissions import QEMU_USER, readable_by

_CHOICES = {
    "os": ("linux", "windows"),
    "domain_type": ("auto", "kvm", "qemu"),
    "firmware": ("bios", "uefi"),
    "disk_bus": ("virtio", "sata", "ide", "scsi"),
    "cd_bus": ("ide", "sata", "scsi"),
}
_FILES = ("image", "kernel", "initrd")


@dataclass(frozen=True)
class Template:
    name: str
    os: str = "linux"
    image: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    domain_type: str = "auto"
    machine: str = "pc"
    disk_bus: str = "virtio"
    cd_bus: str = "ide"
    vcpus: int = 1
    memory_mib: int = 1024
    disk_size_gib: int = 10
    network: str = "none"  # "none", "network:NAME" or "bridge:NAME"
    firmware: str = "bios"
    keyboard: str = "fr"
    locale: str = "fr_FR.UTF-8"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def files(self) -> dict[str, Path]:
        return {key: path for key in _FILES if (path := getattr(self, key)) is not None}


@dataclass(frozen=True)
class FileCheck:
    role: str
    path: Path
    problem: str  # "" when QEMU can read it


def load_templates(path: Path, templates_dir: Path) -> dict[str, Template]:
    """Read ``templates.toml``; a missing file means no templates, a bad one a ConfigError."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    tables = data.get("templates", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [templates] must be a table of templates")
    problems: list[str] = []
    templates = {}
    for name, table in tables.items():
        template = _template(name, table, templates_dir, problems)
        if template is not None:
            templates[name] = template
    if problems:
        raise ConfigError(f"{path}:\n" + "\n".join(f"  {p}" for p in problems))
    return templates


def _template(name: str, table: Any, templates_dir: Path, problems: list[str]) -> Template | None:
    where = f"[templates.{name}]"
    if not VM_NAME.fullmatch(name):
        problems.append(f"{where}: a template name is letters, digits and '-'")
        return None
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    known = {f.name: f for f in fields(Template) if f.name not in ("name", "extra")}
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = known.get(key)
        if spec is None:
            problems.append(f"{where}: unknown setting {key!r}")
            continue
        if key in _FILES:
            if not isinstance(value, str) or not value:
                problems.append(f"{where}: {key} must be a path")
                continue
            value = Path(os.path.expanduser(value))
            values[key] = value if value.is_absolute() else templates_dir / value
        elif spec.type == "int":
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{where}: {key} must be a whole number above 0")
                continue
            values[key] = value
        else:
            if not isinstance(value, str):
                problems.append(f"{where}: {key} must be a string")
                continue
            if key in _CHOICES and value not in _CHOICES[key]:
                problems.append(f"{where}: {key} must be one of {', '.join(_CHOICES[key])}")
                continue
            values[key] = value
    if "image" not in values and "kernel" not in values:
        problems.append(f"{where}: needs an image, or a kernel (and initrd) for direct boot")
    network = values.get("network", "none")
    if network != "none" and not network.startswith(("network:", "bridge:")):
        problems.append(f"{where}: network must be none, network:NAME or bridge:NAME")
    return Template(name=name, **values)


def check_files(template: Template, user: str = QEMU_USER) -> list[FileCheck]:
    """Whether QEMU, running as ``user``, can reach and read each file of the template."""
    return [FileCheck(role, path, readable_by(path, user)) for role, path in template.files().items()]
