"""Domain type ``auto``: whether KVM can really run a Linux kernel here, decided by a probe boot.

``getDomainCapabilities`` reports KVM whenever ``/dev/kvm`` opens, but under nested
virtualisation the firmware may run while a Linux kernel hangs. So the tiny template is booted
once under KVM with a deadline: if its init prints on the serial console in time, KVM works;
otherwise (or without the tiny template, or without ``/dev/kvm``) VMs use TCG (``qemu``). The
answer is cached per host kernel and QEMU build in ``<data dir>/kvm-probe.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import libvirt

from core.provision.domainbuild import kernel_domain
from core.provision.templates import load_templates
from core.settings import Settings

log = logging.getLogger(__name__)

DEADLINE = 20.0  # the tiny template prints within ~1 s under working KVM, ~3 s under TCG
MARKER = "vmm-tiny:"
PROBE_PREFIX = "vmm-kvm-probe-"


def cache_file(settings: Settings) -> Path:
    return settings.data_dir / "kvm-probe.json"


def host_key() -> str:
    """What the answer depends on: the host kernel and the QEMU binary."""
    qemu = shutil.which("qemu-system-x86_64") or ""
    stamp = int(os.stat(qemu).st_mtime) if qemu else 0
    return f"{platform.release()} {qemu}@{stamp}"


def cached(settings: Settings) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        answer = json.loads(cache_file(settings).read_text()).get(host_key())
        if answer in ("kvm", "qemu"):
            return str(answer)
    return None


def decide(settings: Settings, conn: libvirt.virConnect) -> str:
    """The cached answer, else a probe boot's (blocking: up to DEADLINE seconds, once per host).

    A cache that cannot be written costs a probe next time, never this answer."""
    answer = cached(settings)
    if answer is not None:
        return answer
    answer, why = probe(settings, conn)
    log.info("domain type auto: %s (%s)", answer, why)
    if why != "no tiny template to probe with":
        path = cache_file(settings)
        previous: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(path.read_text())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**previous, host_key(): answer}, indent=2) + "\n")
        except OSError as exc:
            log.warning("could not cache the KVM probe's answer in %s: %s", path, exc)
    return answer


def probe(settings: Settings, conn: libvirt.virConnect, *, deadline: float = DEADLINE) -> tuple[str, str]:
    """Boot the tiny template under KVM; ("kvm" or "qemu", why)."""
    if not os.path.exists("/dev/kvm"):
        return "qemu", "no /dev/kvm"
    try:
        if "<domain>kvm</domain>" not in conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0):
            return "qemu", "libvirt offers no KVM"
    except libvirt.libvirtError as exc:
        return "qemu", f"libvirt offers no KVM ({exc.get_error_message()})"
    tiny = _tiny_files(settings)
    if tiny is None:
        return "qemu", "no tiny template to probe with"
    folder = Path(tempfile.mkdtemp(prefix="vmm-kvm-probe-", dir="/var/tmp"))
    folder.chmod(0o755)
    serial = folder / "serial.log"
    name = f"{PROBE_PREFIX}{uuidlib.uuid4().hex[:8]}"
    dom = None
    try:
        dom = conn.createXML(kernel_domain(name, tiny[0], tiny[1], serial_log=serial, domain_type="kvm",
                                           memory_mib=128), 0)
        started = time.monotonic()
        while time.monotonic() - started < deadline:
            if serial.exists() and MARKER in serial.read_text(errors="replace"):
                return "kvm", f"the tiny template booted under KVM in {time.monotonic() - started:.1f} s"
            time.sleep(0.2)
        return "qemu", f"a kernel did not boot under KVM within {deadline:g} s (nested KVM?)"
    except libvirt.libvirtError as exc:
        return "qemu", f"KVM could not start a VM ({exc.get_error_message()})"
    finally:
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()  # a transient domain: destroying it removes it
        shutil.rmtree(folder, ignore_errors=True)


def _tiny_files(settings: Settings) -> tuple[Path, Path] | None:
    """The tiny template's kernel and initrd: declared as ``tiny`` in templates.toml, or where
    ``make template-tiny`` puts it."""
    with contextlib.suppress(Exception):
        declared = load_templates(settings.templates_file, settings.templates_path).get("tiny")
        if declared is not None and declared.kernel and declared.initrd:
            return declared.kernel, declared.initrd
    built = settings.templates_path / "tiny"
    if (built / "vmlinuz").is_file() and (built / "initrd.img").is_file():
        return built / "vmlinuz", built / "initrd.img"
    return None
