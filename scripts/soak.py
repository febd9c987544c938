"""``make soak``: hours of a lab's work in minutes, and what it does to the processes and the database.

The TUI (in a tmux pane) and ``vm-manager serve`` run against qemu:///system (``make soak`` starts
libvirtd) on one data directory, while every workload of :mod:`core.testing.soak` runs interleaved
through the product: start/stop cycles over 20 tiny VMs (the CLI), console opens through share
links (websocket, RFB handshake), share/revoke pairs (the admin API), portal sign-ins and sign-outs
(with a console from "My VMs"), classes of 5 provisioned from the tiny template and deleted.
Bounded by ``--minutes`` (``SOAK_MINUTES``): it stops when time runs out and says how much was done.

Every ``--sample-every`` units it reads the TUI's and the server's process trees (RSS, PSS, open
descriptors, sockets, threads, child processes) and each table's rows; after the warm-up it prints,
one figure a line as ``name: value unit``, each figure's first and last value and its slope per
100 units and per hour; then whether the exact counts came back to their post-warm-up baseline once
the work was at rest. Slopes are printed, never judged: the short form in ``make test``
(tests/integration/test_soak.py) asserts the exact counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.testing import soak  # noqa: E402
from core.testing.domains import remove_domains  # noqa: E402

SETTLE_WITHIN = 60.0  # seconds the exact counts get to come back once the work is at rest


def figure(name: str, value: float | str, unit: str = "") -> None:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"{name}: {text} {unit}".rstrip(), flush=True)


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


def build_template(prefix: str) -> Path:
    """The tiny template, built into a folder QEMU can read (scripts/build_template_tiny.sh)."""
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}template-", dir="/var/tmp"))
    root.chmod(0o755)
    subprocess.run([ROOT / "scripts" / "build_template_tiny.sh", root / "tiny"], check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    return root / "tiny"


async def soak_run(args: argparse.Namespace, template: Path, prefix: str) -> None:
    chosen = [soak.WORKLOADS[name]() for name in args.only or soak.WORKLOADS]
    planned = {w.name: max(1, round(w.full * args.scale)) for w in chosen}
    async with soak.open_rig(template, prefix=prefix) as rig:
        for work in chosen:
            await work.setup(rig)
        warm = await soak.run(rig, chosen, {w.name: 1 for w in chosen}, seconds=600, sample_every=10**9)
        baseline = await soak.steady(rig, chosen)
        log(f"warmed up ({sum(warm.done.values())} units); {planned}, at most {args.minutes:g} min")
        result = await soak.run(rig, chosen, planned, seconds=args.minutes * 60,
                                sample_every=args.sample_every,
                                on_sample=lambda s: log(f"{s.units} units at {s.at:.0f} s"))
        left_at_rest = await soak.at_rest(rig, chosen)
        differ = await soak.settle(rig, baseline, SETTLE_WITHIN)
    report(result, args.warmup, baseline, left_at_rest, differ)


def report(result: soak.Run, warmup: int, baseline: dict[str, int], at_rest: dict[str, int],
           differ: dict[str, tuple[int, int]]) -> None:
    print(f"# {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, qemu:///system", flush=True)
    figure("soak_seconds", result.seconds, "s")
    figure("soak_units", sum(result.done.values()), "units, all workloads")
    for name, planned in result.planned.items():
        done = result.done[name]
        figure(f"done_{name}", done, f"of {planned}" + ("" if done >= planned else " (time ran out)"))
        if done:
            figure(f"rate_{name}", done / result.seconds * 3600, "per hour (interleaved)")
    units = sum(result.done.values())
    if units:
        per_unit = result.seconds / units
        figure("full_counts_estimate", sum(soak.WORKLOADS[n].full for n in result.planned) * per_unit / 60,
               "min at this run's mix-weighted rate")
    for trend in soak.trends(result.samples, warmup):
        name, scale, unit = trend.name, 1.0, ""
        if name.endswith("_kib"):  # memory in MiB
            name, scale, unit = name.removesuffix("_kib") + "_mib", 1 / 1024, "MiB"
        figure(f"{name}_first", trend.first * scale, unit)
        figure(f"{name}_last", trend.last * scale, unit)
        figure(f"{name}_slope_per_100_units", trend.per_100_units * scale, unit)
        figure(f"{name}_slope_per_hour", trend.per_hour * scale, unit)
    for name in sorted(baseline):
        figure(f"at_rest_{name}", f"{baseline[name]} -> {at_rest.get(name, 0)}",
               "(baseline -> after the work, before settling)")
    figure("exact_counts_back_to_baseline", "yes" if not differ else "no", "")
    for name, (then, now) in sorted(differ.items()):
        figure(f"not_back_{name}", f"{then} -> {now}", "")


def cleanup_strays(prefix: str) -> None:
    conn = libvirt.open("qemu:///system")
    try:
        remove_domains(conn, prefix)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "60")),
                        help="stop after this long (default: SOAK_MINUTES, else 60)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload's full count")
    parser.add_argument("--sample-every", type=int, default=50, help="workload units between two samples")
    parser.add_argument("--warmup", type=int, default=100, help="units before the slopes start")
    parser.add_argument("--only", action="append", choices=sorted(soak.WORKLOADS), help="run only these")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_: None, None)
    prefix = f"vmm-soak-{secrets.token_hex(3)}-"
    template = build_template(prefix)
    try:
        asyncio.run(soak_run(args, template, prefix))
    finally:
        cleanup_strays(prefix)
        shutil.rmtree(template.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
