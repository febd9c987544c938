"""Lifecycle actions on VMs: power, delete and reset, snapshots, and which VMs a command names.

:mod:`actions` says what an action is; :mod:`runner` runs one on many VMs at once; :mod:`power`,
:mod:`removal` and :mod:`snapshots` hold the actions; :mod:`ownership` proves what delete and
reset may remove; :mod:`targets` resolves names, globs and classes to VMs.
"""

from core.lifecycle.actions import Action, ActionResult
from core.lifecycle.ownership import Protected
from core.lifecycle.runner import run_bulk
from core.lifecycle.snapshots import SnapshotInfo, check_snapshot_name
from core.lifecycle.targets import Resolved, check_classes, confirmation_word, resolve

__all__ = ["Action", "ActionResult", "Protected", "Resolved", "SnapshotInfo", "check_classes",
           "check_snapshot_name", "confirmation_word", "resolve", "run_bulk"]
