"""A process tree's counts (core/testing/processes.py) tell a bounded pool's threads from the rest:
the libvirt connection's workers carry an OS name of their own (``ps -L``, ``top -H``)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from core.testing.processes import counts
from core.virt.connection import WORKER_NAME, Host
from core.virt.inventory import Inventory


def test_the_libvirt_pool_threads_are_named_and_counted_apart() -> None:
    host = Host("test:///default", Inventory())
    try:
        before = counts(os.getpid())
        tid = host.executor.submit(threading.get_native_id).result()
        assert Path(f"/proc/self/task/{tid}/comm").read_text().strip() == WORKER_NAME
        after = counts(os.getpid())
        assert after.pool_threads == before.pool_threads + 1
        assert after.threads == before.threads + 1
        assert after.exact()["threads"] == before.exact()["threads"]
    finally:
        host.executor.shutdown()
