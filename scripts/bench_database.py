#!/usr/bin/env python3
"""The shared database under three writers at once (``make bench``): the TUI's, a command's and
the server's writes (core/testing/dbload.py), 1,000 records each, through the product's stores.

For the product's settings and each variant (no busy timeout, a short one, deferred BEGIN, a
rollback journal, synchronous=FULL) it prints the records written, those lost, the errors a user
would have seen ("database is locked"), and the wall time; then how often three programs opening
a new database at the same instant failed. What core/records/database.py's settings rest on.

    .venv/bin/python scripts/bench_database.py [--records 1000] [--runs 3] [--opens 30]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.testing import dbload  # noqa: E402

_OPEN = """
import sys, time
from pathlib import Path
from core.records.audit import Actor, AuditLog
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    AuditLog(Path(sys.argv[1])).record(Actor("teacher", "cli", "local"), "start")
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def load(folder: Path, records: int, variant: str) -> tuple[int, int, int, float]:
    """(written, lost, errors seen, wall seconds) of one run of the three writers on a new file."""
    path = folder / f"{variant}-{time.monotonic_ns()}.db"
    tallies = dbload.together(path, records, variant=variant)
    wall = max(t["seconds"] for t in tallies)
    written = sum(t["written"] for t in tallies)
    errors = sum(len(t["errors"]) for t in tallies)
    lost = sum(dbload.missing(path, records).values())
    return written, lost, errors, wall


def fresh_opens(folder: Path, trials: int) -> int:
    """How many of ``trials`` new databases, each opened by three programs at one instant, made
    one of them fail."""
    failed = 0
    for trial in range(trials):
        path = folder / f"open-{trial}.db"
        start = f"{time.time() + 0.8}"
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN, str(path), start], stdout=subprocess.PIPE,
                                  text=True, cwd=dbload.CHECKOUT) for _ in range(3)]
        failed += any(proc.communicate(timeout=60)[0].strip() for proc in procs)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="records per writer (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--opens", type=int, default=30, help="trials of three programs opening a new file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vmm-bench-db-", dir="/var/tmp"))  # a disk, as the real file is
    try:
        print(f"3 writers x {args.records} records, {args.runs} runs each (totals over the runs; wall: the "
              "slowest writer, median run)")
        print(f"{'variant':<18}{'written':>9}{'lost':>7}{'errors':>8}{'wall s':>8}  what")
        for variant, what in dbload.VARIANTS.items():
            runs = [load(folder, args.records, variant) for _ in range(args.runs)]
            walls = sorted(run[3] for run in runs)
            print(f"{variant:<18}{sum(r[0] for r in runs):>9}{sum(r[1] for r in runs):>7}"
                  f"{sum(r[2] for r in runs):>8}{walls[len(walls) // 2]:>8.2f}  {what}")
        print(f"new database opened by 3 programs at one instant: {fresh_opens(folder, args.opens)} of "
              f"{args.opens} trials failed")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
