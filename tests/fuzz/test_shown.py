"""Names shown by the TUI, the CLI and the pages are never interpreted: any text (terminal escapes,
C0 and C1 controls, Rich markup like ``[bold]``, HTML, bidi overrides, lone surrogates: what no XML
carries, but a guest agent's answer, a roster or a file name may) comes out as literal text through
the one rule of ``core/text.py``. ``test_domainxml.py`` does the same from real domains, end to end."""

from __future__ import annotations

import contextlib
import csv
import html.parser
import io
import json

from babel.support import NullTranslations
from hypothesis import example, given
from hypothesis import strategies as st

from core.lifecycle import Action, ActionResult
from core.metadata import LabMeta
from core.model import VM, VMState
from core.text import csv_text, json_text, printable
from core.web.portal import _environment
from fuzz.strategies import hostile_text, table_row, unshown
from tui.cli.common import print_table
from tui.screens.detail import summary_text
from tui.widgets.eventlog import result_line

texts = st.one_of(hostile_text(max_size=6), st.text(max_size=20))
NOW = 1_800_000_000.0
PAGES = _environment(NullTranslations())


def _vm(name: str, owner: str, lab_class: str, ip: str) -> VM:
    return VM("local", "11111111-1111-4111-8111-111111111111", name, VMState.RUNNING, 1, 512,
              LabMeta(owner, lab_class), (ip,), started_at=NOW - 60)


@given(name=texts.map(lambda text: "vm" + text), owner=texts, lab_class=texts, ip=texts)
@example(name="\x1b]52;c;aGk=\x07[bold]x\u202e", owner="<b>\ud800", lab_class="\x9b31m", ip="\n1.2.3.4")
def test_the_tui_shows_names_as_literal_text(name: str, owner: str, lab_class: str, ip: str) -> None:
    vm = _vm(name, owner, lab_class, ip)
    row, name_cell = table_row(vm, NOW)
    assert not unshown(row), row
    assert name_cell in row
    assert printable(vm.name).startswith(name_cell), row
    summary = summary_text(vm, NOW)
    assert not unshown(summary.plain.replace("\n", ""))
    assert summary.plain.count("\n") == 3  # its own lines only
    for value in (name, owner, lab_class, ip):
        assert printable(value) in summary.plain  # markup stays text: Text.append never parses it
    line = result_line(ActionResult(vm, Action.START, False, owner))
    assert printable(name) in line.plain
    assert not unshown(line.plain)


@given(cells=st.lists(st.tuples(texts, texts), min_size=1, max_size=3))
def test_the_cli_shows_names_as_literal_text(cells: list[tuple[str, str]]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_table(("NAME", "OWNER"), cells)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + len(cells)
    for line, (name, owner) in zip(lines[1:], cells, strict=True):
        assert not unshown(line)
        assert line.startswith(printable(name).rstrip())
        assert printable(owner).rstrip() in line
    shown = json_text([{"name": name, "owner": owner} for name, owner in cells])
    assert not unshown(shown.replace("\n", ""))
    assert json.loads(shown) == [{"name": name, "owner": owner} for name, owner in cells]
    document = csv_text(("vm", "owner"), cells)
    read = list(csv.reader(io.StringIO(document)))[1:]
    assert not unshown(document.replace("\n", ""))
    for (name, owner), row in zip(cells, read, strict=True):
        assert row == [_spreadsheet_safe(printable(name)), _spreadsheet_safe(printable(owner))]


def _spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet would read as a formula gets a leading quote (OWASP)."""
    return "'" + cell if cell.startswith(("=", "+", "-", "@")) else cell


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


@given(name=texts)
@example(name="<script>alert(1)</script>&amp;{{ 7*7 }}\u202e")
def test_the_pages_show_names_as_literal_text(name: str) -> None:
    """Through the portal's own Jinja environment (autoescape, and the one rule as its finalize)."""
    page = PAGES.from_string('<td class="name" title="{{ name }}">{{ name }}</td>').render(name=name)
    parsed = _Text()
    parsed.feed(page)
    parsed.close()
    assert parsed.tags == ["td"]
    assert parsed.text == printable(name, multiline=True)
    assert not unshown(page.replace("\n", ""))
