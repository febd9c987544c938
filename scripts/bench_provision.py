"""``make bench`` (provisioning part): making a class, one figure a line as ``name: value unit``.

On a real libvirtd (qemu:///system), from the tiny template (built by
``scripts/build_template_tiny.sh`` when missing; ``--template-dir`` for another, e.g. the Debian
one). Each figure is the median of ``--runs`` runs; a full copy of the template for the same VMs
is measured side by side in the same runs, so the ratio holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lab import SYSTEM_URI, Lab  # noqa: E402
from core.lifecycle.actions import Action  # noqa: E402
from core.model import Student  # noqa: E402
from core.provision.templates import Template  # noqa: E402
from core.settings import ConsoleSettings, ProvisionSettings, Settings  # noqa: E402
from core.virt import eventloop  # noqa: E402


def figure(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3g} {unit}", flush=True)


def disk_used(folder: Path) -> int:
    """Bytes the files under ``folder`` really take (allocated blocks, not apparent sizes)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


async def one_run(settings: Settings, template: Template, count: int, start: bool) -> dict[str, float]:
    lab = await Lab.open(settings, SYSTEM_URI)
    lab_class = f"bench{secrets.token_hex(2)}"
    students = [Student(f"s{i:02d}", f"Student {i}", "Bench1234") for i in range(count)]
    figures: dict[str, float] = {}
    try:
        began = time.perf_counter()
        plan = await lab.plan_provision(template, lab_class, students, start=start, overcommit=True)
        report = await lab.provision(plan)
        figures["wall"] = time.perf_counter() - began
        if report.failed:
            raise SystemExit(f"provisioning failed: {report.failed[0].message}")
        if not start:
            figures["disk_per_vm"] = disk_used(settings.provision.student_vms_dir) / count / 1e6
            vm = next(v for v in lab.vms() if v.name == plan.vms[0].name)
            began = time.perf_counter()
            [result] = await lab.act(Action.RESET, [vm])
            figures["reset"] = time.perf_counter() - began
            assert result.ok, result.message
    finally:
        mine = [vm for vm in lab.vms() if vm.meta.lab_class == lab_class]
        await lab.act(Action.DELETE, mine)
        await lab.close()
    return figures


def libvirt_alone(count: int, workers: int) -> float:
    """Seconds plain libvirt takes to start ``count`` firmware-only domains, ``workers`` at once:
    the floor under any "made and started" figure on this host."""
    import libvirt

    from core.testing.domains import tiny_domain

    conn = libvirt.open(SYSTEM_URI)
    prefix = f"vmm-bench-floor-{secrets.token_hex(2)}"
    doms = [conn.defineXML(tiny_domain(f"{prefix}-{i}")) for i in range(count)]
    try:
        began = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda dom: dom.create(), doms))
        return time.perf_counter() - began
    finally:
        for dom in doms:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            dom.undefine()
        conn.close()


def full_copies(template: Template, count: int, work: Path) -> tuple[float, float]:
    """Seconds to copy the template image ``count`` times, and MB used per copy."""
    assert template.image is not None
    target = work / "copies"
    target.mkdir()
    began = time.perf_counter()
    for i in range(count):
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", template.image, target / f"vm{i}.qcow2"],
                       check=True)
    seconds = time.perf_counter() - began
    used = disk_used(target) / count / 1e6
    shutil.rmtree(target)
    return seconds, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--template-dir", type=Path, help="a template folder with vmlinuz, initrd.img and "
                        "base.qcow2 (default: the tiny template, built if missing)")
    parser.add_argument("--cmdline", default="console=ttyS0", help="the template's kernel command line "
                        "(the Debian template: 'root=/dev/vda rw console=ttyS0')")
    parser.add_argument("--memory", type=int, default=96, help="MiB per VM")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmm-bench-prov-", dir="/var/tmp"))
    work.chmod(0o755)
    folder = args.template_dir
    if folder is None:
        folder = Path("/var/tmp/vmm-bench-templates/tiny")
        folder.parent.mkdir(mode=0o755, exist_ok=True)
        subprocess.run([ROOT / "scripts" / "build_template_tiny.sh", folder], check=True,
                       stdout=subprocess.DEVNULL)
    template = Template(name="bench", image=folder / "base.qcow2", kernel=folder / "vmlinuz",
                        initrd=folder / "initrd.img", cmdline=args.cmdline, domain_type="qemu",
                        memory_mib=args.memory, disk_size_gib=1)
    settings = Settings(
        data_dir=work / "data",
        config_dir=work / "config",
        provision=ProvisionSettings(student_vms_dir=work / "student_vms"),
        consoles=ConsoleSettings(socket_dir=work / "consoles"),
    )
    runs: dict[str, list[float]] = {}
    try:
        for _ in range(args.runs):
            for start in (False, True):
                got = eventloop.submit(one_run(settings, template, args.vms, start)).result(600)
                for key, value in got.items():
                    runs.setdefault(f"{key}{'_started' if start else ''}", []).append(value)
            runs.setdefault("floor", []).append(libvirt_alone(args.vms, settings.provision.concurrency))
            seconds, used = full_copies(template, args.vms, work)
            runs.setdefault("copy_wall", []).append(seconds)
            runs.setdefault("copy_disk_per_vm", []).append(used)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {key: statistics.median(values) for key, values in runs.items()}
    n = args.vms
    figure(f"provision_{n}_vms_defined_wall", med["wall"], "s")
    figure(f"provision_{n}_vms_started_wall", med["wall_started"], "s")
    figure(f"libvirt_alone_start_{n}_vms_wall", med["floor"], "s")
    figure(f"full_copy_{n}_vms_wall", med["copy_wall"], "s")
    figure("provision_vs_full_copy_ratio", med["copy_wall"] / med["wall"], "x")
    figure("disk_per_new_vm_before_boot", med["disk_per_vm"], "MB")
    figure("disk_per_full_copy", med["copy_disk_per_vm"], "MB")
    figure("reset_one_vm", med["reset"] * 1000, "ms")
    figure("template_image", os.path.getsize(template.image or "") / 1e6, "MB")


if __name__ == "__main__":
    main()
