"""The one rule for outside text on a screen, a page or the log (``core.text.printable``,
``core.text.json_text``)."""

from __future__ import annotations

import json

import pytest

from core.text import json_text, printable

C0 = [chr(c) for c in range(0x20)]
C1 = [chr(c) for c in range(0x80, 0xA0)]
BIDI = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
SEPARATORS = ["\u2028", "\u2029"]
SURROGATES = [chr(c) for c in range(0xD800, 0xE000)]
UNSHOWN_CHARS = [*C0, "\x7f", *C1, *BIDI, *SEPARATORS, *SURROGATES]
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
EVERY_CODE_POINT = "".join(map(chr, range(0x110000)))


def test_every_control_bidi_control_separator_and_surrogate_is_written_out_and_nothing_else() -> None:
    shown = {ch for ch in EVERY_CODE_POINT if printable(ch) != ch}
    assert shown == set(UNSHOWN_CHARS)
    for ch in UNSHOWN_CHARS:
        code = ord(ch)
        assert printable(ch) == NAMED.get(ch, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    # all at once: every other code point passes as it is, and no unshown one is left
    out = printable(EVERY_CODE_POINT)
    assert not set(out) & set(UNSHOWN_CHARS)
    assert len(out) == len(EVERY_CODE_POINT) + sum(len(printable(ch)) - 1 for ch in UNSHOWN_CHARS)


@pytest.mark.parametrize(("outside", "shown"), [
    ("10.9.9.9\x1b[2J", "10.9.9.9\\x1b[2J"),
    ("10.9.9.8\x1b]0;PWNED\x07", "10.9.9.8\\x1b]0;PWNED\\x07"),
    ("\x1b]52;c;ZWNobyBQV05FRA==\x07", "\\x1b]52;c;ZWNobyBQV05FRA==\\x07"),
    ("10.1.1.1\nFAKEROW running root", "10.1.1.1\\nFAKEROW running root"),
    ("a\r\tb\udcff", "a\\r\\tb\\udcff"),  # a carriage return, a tab, an undecodable byte
    ("rtl\u202egpj.exe", "rtl\\u202egpj.exe"),
    ("csi\x9b2J", "csi\\x9b2J"),
    ("é [b]bold\\x1b 名前", "é [b]bold\\x1b 名前"),  # printable text, a backslash included, unchanged
])
def test_what_an_attacker_sends_reads_literally(outside: str, shown: str) -> None:
    assert printable(outside) == shown


def test_multiline_keeps_line_feeds_only() -> None:
    assert printable("one\ntwo\r\x1b[A\u2067", multiline=True) == "one\ntwo\\r\\x1b[A\\u2067"


def test_json_text_escapes_what_json_dumps_lets_through_and_reads_back_the_same() -> None:
    unpaired = [ch for ch in UNSHOWN_CHARS if ch not in SURROGATES]  # JSON reads \ud800\udc00 as one
    value = [{"name": "".join(unpaired) + "\udcff é名", "n": 1}]
    text = json_text(value)
    assert json.loads(text) == value
    assert not set(text) & set(UNSHOWN_CHARS) - {"\n"}  # line feeds: only the indent's
    assert "\\u009b" in text
    assert "\\u202e" in text
    assert "\\u007f" in text
    assert "\\udcff" in text  # a UTF-8 terminal could not even be sent it raw
    assert "é名" in text  # UTF-8 as it is
    assert json_text(value, indent=None).count("\n") == 0


def test_csv_text_quotes_escapes_and_defuses_formulas() -> None:
    import csv
    import io

    from core.text import csv_text

    hostile = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "a,b \"c\"", "line\nfeed\x1b[2J", "plain"]
    text = csv_text(["cell"], [[cell] for cell in hostile])
    read = [row[0] for row in csv.reader(io.StringIO(text))]
    assert read == ["cell", "'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "a,b \"c\"",
                    "line\\nfeed\\x1b[2J", "plain"]
    assert "\x1b" not in text
