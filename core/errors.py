"""One error type for everything the core reports, with typed subclasses.

``from_libvirt`` is the single place where libvirt's error codes become messages a person can act on.
"""

from __future__ import annotations

import libvirt


class VMManagerError(Exception):
    """An error with a message meant for the operator (and a short title for dialogs)."""

    title = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TranslatableError(VMManagerError):
    """An error a page may show in its own language: the message is ``template % values``, and
    ``template`` (English) is a msgid of the web catalogue where it is marked with ``N_``."""

    def __init__(self, template: str, **values: object) -> None:
        super().__init__(template % values if values else template)
        self.template = template
        self.values = values


class ConfigError(VMManagerError):
    title = "Configuration error"


class HypervisorUnavailable(VMManagerError):
    title = "Hypervisor unreachable"


class NotFound(VMManagerError):
    title = "Not found"


class InvalidInput(VMManagerError):
    title = "Invalid input"


class ActionFailed(VMManagerError):
    title = "Action failed"


# Codes that mean the connection itself is gone, not that one call was refused.
_GONE = frozenset({
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
})


def from_libvirt(exc: BaseException, context: str = "") -> VMManagerError:
    """Translate a ``libvirt.libvirtError`` (or anything else) into a VMManagerError."""
    if isinstance(exc, VMManagerError):
        return exc
    prefix = f"{context}: " if context else ""
    if not isinstance(exc, libvirt.libvirtError):
        return ActionFailed(f"{prefix}{exc}")
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if code in _GONE:
        return HypervisorUnavailable(f"{prefix}lost the connection to the hypervisor ({message})")
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(f"{prefix}no such VM")
    if code in (libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_ACCESS_DENIED):
        return ActionFailed(f"{prefix}permission denied ({message})")
    return ActionFailed(f"{prefix}{message}")


def domain_name(dom: libvirt.virDomain, fallback: str = "a domain") -> str:
    """A domain's name for a message, or ``fallback`` when libvirt cannot say it any more."""
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return fallback
