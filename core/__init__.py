"""VM Manager core: the UI-free library, and the only code that talks to libvirt.

Data flows one way: libvirt events and bulk stats -> :class:`core.virt.inventory.Inventory`
-> consumers (the TUI, the CLI, the web server), which act through :class:`core.lab.Lab`.
"""

__version__ = "0.1.0"
