"""Files on this machine: the VM folders (marked as their domain's), qcow2 images, and whether
QEMU's user may reach a path (and letting it pass with a POSIX ACL).

The several-hosts work adds storage pools and volumes here, below lifecycle and provisioning.
"""

from core.storage.permissions import QEMU_GROUP, QEMU_USER, grant_command, readable_by

__all__ = ["QEMU_GROUP", "QEMU_USER", "grant_command", "readable_by"]
