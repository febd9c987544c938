"""Words for messages: how many of a thing (``3 VMs``, ``1 disk``)."""

from __future__ import annotations


def count(number: int, noun: str, plural: str = "") -> str:
    """``number`` and ``noun``, the noun plural unless the number is 1 (``plural`` when adding an
    s is wrong: ``count(2, "entry", "entries")``)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
