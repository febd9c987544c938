"""Fault injection for the tests of what a killed or failing run leaves behind.

A process killed between two steps of provisioning, or between a write and its COMMIT, cannot be
made to happen at an exact point from outside, so those points call :func:`hit` and the tests set
``VMM_FAILPOINT``:

- ``kill:STEP`` or ``kill:STEP:WHAT`` -- the process kills itself (SIGKILL, no clean-up) just
  before STEP (for every VM or write, or only for WHAT);
- ``fail:STEP`` or ``fail:STEP:WHAT`` -- STEP raises;
- ``slow:STEP`` -- STEP takes a second longer (a guest agent or DHCP server slow to answer);
- any of them followed by ``#N``: only the Nth time the point is passed
  (``kill:committed:audit.record#2``: just after the process's second audit entry).

The points: provisioning's steps (``folder``, ``disk``, ``seed``, ``define``, ``start``,
``resume``; WHAT: the VM), ``ip-lookup`` and ``doctor-read``; every database write's ``commit``
(just before COMMIT) and ``committed`` (just after; WHAT: ``STORE.WRITE``, e.g.
``tokens.create_link``, see :func:`core.records.database.transaction`); ``acted`` (an action done
in libvirt, not yet in the audit log; WHAT: the action, or ``provision``).

Unset (always, outside the tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

from core.errors import ActionFailed

VARIABLE = "VMM_FAILPOINT"


_passed: dict[str, int] = {}  # ``#N`` points: how many times each was passed


def hit(step: str, vm: str) -> None:
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    spec, _, nth = spec.partition("#")
    kind, _, rest = spec.partition(":")
    where, _, only = rest.partition(":")
    if where != step or (only and only != vm):
        return
    if nth:
        _passed[spec] = times = _passed.get(spec, 0) + 1
        if times != int(nth):
            return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "slow":
        time.sleep(1.0)
    if kind == "fail":
        raise ActionFailed(f"injected failure at {step} ({VARIABLE})")
