"""What the fuzz properties share: hostile text and the settings for properties that share a fixture.

A new parser's strategy goes here when another module may use it (``hosts.toml``'s host entries
will: the inventory shows their names).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from core.model import VM
from core.text import UNSHOWN
from tui.tablemodel import TableModel

HOSTILE_PIECES = (
    "\x1b[2J", "\x1b]0;owned\x07", "\x1b]52;c;aGk=\x07", "\x1b[31m", "\x9b31m", "\x07", "\x00", "\r", "\n",
    "\t", "\x7f", "\x85", "\u2028", "\u2029",  # terminal escapes, C0/C1 controls, line breaks
    "[bold]", "[/]", "[/bold]", "[link=https://x.example]", "[red on white]", ":smile:", "[@click=quit]",
    "\\[b]",  # Rich and Textual markup
    "<script>alert(1)</script>", "<b>", "</td>", "&amp;", "&lt;", '"', "'", "`", "{{ 7*7 }}", "{% if %}",
    "%s", "%(x)d", "{0}",  # HTML, Jinja, format strings
    "\u202e", "\u202a", "\u2066", "\u2067", "\u2069", "\u200f",  # bidi overrides, embeddings, isolates
    "\\", "/", "*", "?", "[", "]", ",", ";", ":", "=", "#", " ", "é", "日本", "\U0001f600",
)
"""Pieces of text that mean something to a terminal, Rich, a browser or a template."""


def hostile_text(*, min_size: int = 0, max_size: int = 12,
                 alphabet: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """Text made of :data:`HOSTILE_PIECES` and arbitrary characters (``alphabet``: which ones)."""
    piece = st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(alphabet, max_size=4) if alphabet is not None
                      else st.text(max_size=4))
    return st.lists(piece, min_size=min_size, max_size=max_size).map("".join)


def _xml_char(char: str) -> bool:
    code = ord(char)
    return char in "\t\n\r" or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


XML_CHARS = st.characters(codec="utf-8", exclude_characters=[
    *(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"), "\ufffe", "\uffff"])
"""What an XML 1.0 document may hold (libvirt's XML, a domain's name and metadata)."""


def xml_text(*, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Hostile text an XML document can carry: no C0 control but tab and line breaks."""
    return hostile_text(min_size=min_size, max_size=max_size, alphabet=XML_CHARS).map(
        lambda text: "".join(c for c in text if _xml_char(c)))


def unshown(text: str) -> set[str]:
    """The characters of ``text`` that must never reach a screen, a page or a log as they are."""
    return set(UNSHOWN.findall(text))


SHARED_FIXTURE = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
"""For a property whose examples share one fixture on purpose (a folder, a server, a lab): each
example leaves the fixture as it found it, or the property compares before and after itself."""


# -- TOML files (templates.toml, keymap.toml; hosts.toml will be one) --------------------------------------
def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: every control character escaped, as TOML requires."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in escaped) + '"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else "nan"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(tables: dict[str, dict[str, object]]) -> str:
    """``{"templates.tiny": {"os": "linux"}}`` as ``[templates."tiny"]`` tables, dotted names quoted."""
    lines = []
    for name, table in tables.items():
        lines.append("[" + ".".join(toml_string(part) for part in name.split(".")) + "]")
        lines += [f"{toml_string(key)} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


TOML_SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
                         hostile_text(max_size=4), st.text(max_size=10))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)
"""Any value a TOML file may hold (dates aside: tomllib gives datetimes, which no table of ours takes)."""

BROKEN_TOML = st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
                        st.sampled_from(["[", "[a", "a =", "= 1", '"\\', "[a]\n[a]", "a = 1\na = 2",
                                         "[[a]]\n[a]", "a = \"\x00\"", "a = 0x", "a = 1979-05-27",
                                         "a.b = 1\na = 2"]))
"""Text that is mostly not TOML."""


def table_row(vm: VM, now: float, width: int = 3000) -> tuple[str, str]:
    """The VM list's row of ``vm`` as drawn ``width`` cells wide, and its name cell's text (cut with an
    ellipsis past the name column's widest, its padding stripped)."""
    table = TableModel()
    table.set_vms([vm])
    cells = table.row_cells(table.rows[vm.key], table.layout(width), "", "", vm.state.value)
    return table.row_text(0, width, now), cells[0].rstrip().removesuffix("…")
