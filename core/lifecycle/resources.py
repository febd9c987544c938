"""A VM's vCPUs and memory written into its persistent definition: what an approved request
changes (the next boot has it), and what a revert to an older snapshot puts back."""

from __future__ import annotations

import libvirt

from core.records.requests import Kind
from core.virt import domainxml


def write_resources(dom: libvirt.virDomain, kind: Kind, amount: int) -> None:
    """Set ``amount`` vCPUs or MiB in the persistent definition (blocking), maximum and current
    in the order that keeps the maximum at least the current."""
    config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    now = domainxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    if kind is Kind.VCPUS:
        steps = [(dom.setVcpusFlags, amount, config | libvirt.VIR_DOMAIN_VCPU_MAXIMUM),
                 (dom.setVcpusFlags, amount, config)]
        growing = amount >= now.vcpus
    else:
        steps = [(dom.setMemoryFlags, amount * 1024, config | libvirt.VIR_DOMAIN_MEM_MAXIMUM),
                 (dom.setMemoryFlags, amount * 1024, config)]
        growing = amount >= now.memory_mib
    for setter, value, flags in steps if growing else reversed(steps):
        setter(value, flags)
