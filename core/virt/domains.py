"""What several packages do to one libvirt domain the same way (blocking calls: run them in a
worker thread, e.g. through ``Host.call``)."""

from __future__ import annotations

import libvirt

UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                  | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
"""Everything libvirt keeps of a domain beside its definition goes with it: a managed save image,
snapshot and checkpoint metadata, the UEFI variable store. Without them libvirt refuses to
undefine a domain that has any (and leaves an NVRAM file behind)."""


def undefine(dom: libvirt.virDomain) -> None:
    """Undefine ``dom`` with :data:`UNDEFINE_FLAGS`; on a driver that knows none of them (libvirt's
    test driver), a plain undefine."""
    try:
        dom.undefineFlags(UNDEFINE_FLAGS)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        dom.undefine()
