"""The libvirt side: the core's event loop, one connection per host, the live inventory it feeds.

:mod:`eventloop` is the core's asyncio loop (libvirt's event implementation, registered once);
:mod:`connection` one host's connection (events, reconnection); :mod:`sampler` its figures (one
bulk stats call per interval) from :mod:`stats`; :mod:`inventory` the records consumers read;
:mod:`domainxml` reads a domain's XML; :mod:`domains` what several packages do to a domain.
"""

from core.virt.connection import Host
from core.virt.domainxml import DomainInfo
from core.virt.inventory import Inventory

__all__ = ["DomainInfo", "Host", "Inventory"]
