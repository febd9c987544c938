"""Words for messages, and the rules for text that comes from outside.

``count`` says how many of a thing (``3 VMs``); ``format_time`` a moment as operators read it;
``N_`` marks a message for translation where it is written (it is translated where it is shown:
``core.web.i18n``, catalogue ``core/web/locale/<lang>/LC_MESSAGES/messages.po``); ``CONTROL``
finds the control characters that no name, password or address we keep may hold.
"""

from __future__ import annotations

import re
from datetime import datetime

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""C0 control characters and DEL: refused in names, passwords and addresses we store or pass on."""


def count(number: int, noun: str, plural: str = "") -> str:
    """``number`` and ``noun``, the noun plural unless the number is 1 (``plural`` when adding an
    s is wrong: ``count(2, "entry", "entries")``)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def format_time(epoch: float) -> str:
    """Local time to the minute, with its offset (``2026-11-24T11:00+01:00``)."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="minutes")


def N_(text: str) -> str:  # noqa: N802 - the gettext marker babel's extractor knows
    """Mark a string for translation where it is written; it is translated where it is shown."""
    return text
