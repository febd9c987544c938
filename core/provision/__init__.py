"""Provisioning a class from a template (placeholder face, filled in below)."""

from core.provision.planning import (
    AUTO,
    QEMU_USER,
    Outcome,
    Plan,
    Progress,
    Report,
    Unreachable,
    execute,
    plan,
)

__all__ = ["AUTO", "QEMU_USER", "Outcome", "Plan", "Progress", "Report", "Unreachable", "execute", "plan"]
