"""Fault injection for the tests of what a killed or failing run leaves behind.

A process killed between two steps of provisioning cannot be made to happen at an exact point
from outside, so the steps call :func:`hit` and the tests set ``VMM_FAILPOINT``:

- ``kill:STEP`` -- the process kills itself (SIGKILL, no clean-up) just before STEP;
- ``fail:STEP`` or ``fail:STEP:VM`` -- STEP raises (for every VM, or only for VM);
- ``slow:STEP`` -- STEP takes a second longer (a guest agent or DHCP server slow to answer).

Unset (always, outside the tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

from core.errors import ActionFailed

VARIABLE = "VMM_FAILPOINT"


def hit(step: str, vm: str) -> None:
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    kind, _, rest = spec.partition(":")
    where, _, only = rest.partition(":")
    if where != step or (only and only != vm):
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "slow":
        time.sleep(1.0)
    if kind == "fail":
        raise ActionFailed(f"injected failure at {step} ({VARIABLE})")
