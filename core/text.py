"""Words for messages, and the rules for text that comes from outside.

``count`` says how many of a thing (``3 VMs``); ``format_time`` a moment as operators read it;
``N_`` marks a message for translation where it is written (it is translated where it is shown:
``core.web.i18n``, catalogue ``core/web/locale/<lang>/LC_MESSAGES/messages.po``); ``CONTROL``
finds the control characters that no name, password or address we keep may hold.

Text from outside (VM names, owners, addresses, reasons, full names, the command line's own
arguments, error messages) is written to a terminal, a page or the log only through
:func:`printable`, to JSON only through :func:`json_text`, to CSV only through :func:`csv_text`:
the one rule for what may reach a screen as it is.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""C0 control characters and DEL: refused in names, passwords and addresses we store or pass on."""

_BIDI = r"\u202a-\u202e\u2066-\u2069"
_OTHERS = r"\x7f-\x9f\u2028\u2029\ud800-\udfff" + _BIDI
UNSHOWN = re.compile(rf"[\x00-\x1f{_OTHERS}]")
"""What outside text may not put on a screen, a page or a log line as it is: C0 controls, DEL and
C1 controls (terminal escapes such as ESC [2J, OSC 0 titles and OSC 52 clipboard writes; line
breaks that make up table rows or log records; a terminal takes U+009B as ESC [), the Unicode line
and paragraph separators, lone surrogates (a file name's undecodable bytes, which UTF-8 output
cannot hold), and the bidirectional embeddings, overrides and isolates, which reorder what follows
them (``rtl`` U+202E ``gpj.exe`` reads ``rtlexe.jpg``)."""
_UNSHOWN_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f{_OTHERS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every character of :data:`UNSHOWN` written out as Python writes it (``\\n``,
    ``\\x1b``, ``\\x9b``, ``\\u202e``); everything else, backslashes included, as it is.

    ``multiline`` keeps line feeds, for text whose lines we made (a list of problems, a traceback).
    """
    pattern = _UNSHOWN_BUT_NEWLINE if multiline else UNSHOWN
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def json_text(value: object, *, indent: int | None = 2) -> str:
    """``value`` as JSON for a terminal: UTF-8 as it is, but every character of :data:`UNSHOWN` as a
    JSON escape (``json.dumps`` escapes C0 only: DEL, C1, the bidi controls and lone surrogates, which
    a UTF-8 terminal could not even be sent, would pass)."""
    dumped = json.dumps(value, ensure_ascii=False, indent=indent)  # line feeds: only its own indent
    return _UNSHOWN_BUT_NEWLINE.sub(lambda m: f"\\u{ord(m[0]):04x}", dumped)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document (the csv module's quoting), every cell through :func:`printable` and safe to
    open in a spreadsheet: a cell that would start a formula (``=`` ``+`` ``-`` ``@``) gets a leading
    ``'`` (OWASP's advice against CSV injection)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in [header, *rows]:
        cells = [printable(str(cell)) for cell in row]
        writer.writerow(["'" + cell if cell.startswith(_FORMULA_START) else cell for cell in cells])
    return out.getvalue()


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
