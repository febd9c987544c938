"""The `/` filter: plain text, field:value, re:..., negation, and Escape."""

from __future__ import annotations

import dataclasses

import pytest
from support.tuitest import SIZE, shown_names

from core.metadata import LabMeta
from core.model import VM, VMState
from core.query import fields_of, parse
from tui.widgets.statusbar import FilterInput, StatusBar

ALICE = VM("localhost", "u1", "net101-alice", VMState.RUNNING, 2, 2048,
           LabMeta("alice", "net101", "debian12"), ips=("10.0.0.5",))
BOB = dataclasses.replace(ALICE, uuid="u2", name="sys202-bob", state=VMState.SHUTOFF,
                          meta=LabMeta("bob", "sys202"), ips=())


def matching(text: str) -> list[str]:
    query = parse(text)
    return [vm.name for vm in (ALICE, BOB) if query.matches(*fields_of(vm))]


@pytest.mark.parametrize(("text", "expected"), [
    ("", ["net101-alice", "sys202-bob"]),
    ("alice", ["net101-alice"]),
    ("ALICE", ["net101-alice"]),
    ("state:running", ["net101-alice"]),
    ("state:shutoff", ["sys202-bob"]),
    ("owner:bob", ["sys202-bob"]),
    ("class:net101", ["net101-alice"]),
    ("ip:10.0.0", ["net101-alice"]),
    ("host:localhost", ["net101-alice", "sys202-bob"]),
    ("re:^sys\\d+-b", ["sys202-bob"]),
    ("re:running|shutoff", ["net101-alice", "sys202-bob"]),
    ("!state:running", ["sys202-bob"]),
    ("net101 !bob", ["net101-alice"]),
    ("class:net101 owner:bob", []),
    ("running", ["net101-alice"]),  # plain text searches the state too
])
def test_filter_language(text: str, expected: list[str]) -> None:
    assert matching(text) == expected


def test_a_bad_regex_is_matched_as_text_and_reported() -> None:
    query = parse("re:net101-(")
    assert "bad regex" in query.error
    assert matching("re:net101-(") == []


async def test_filter_keystrokes_narrow_the_table(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash")
        assert isinstance(app.focused, FilterInput)
        await pilot.press(*"state:running")
        assert shown_names(app) == ["[b]bold", "net101-alice", "net101-bob", "sys202-manon"]
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is app.main.table
        await pilot.press("escape")  # no marks: clears the filter
        assert len(shown_names(app)) == 8
        await pilot.press("slash", *"owner:alice")
        assert shown_names(app) == ["net101-alice"]
        await pilot.press("escape")  # from the prompt: clears it and leaves it
        assert len(shown_names(app)) == 8
        assert app.query_one(StatusBar).has_class("-idle")


async def test_filter_by_class_and_regex(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"class:sys202", "enter")
        assert shown_names(app) == ["[@click=app.quit]x", "sys202-manon", "sys202-nathan"]
        await pilot.press("escape", "slash", *"re:^net101-[ab]", "enter")
        assert shown_names(app) == ["net101-alice", "net101-bob"]
        status = str(app.query_one("#status").render())
        assert "2/8 shown" in status
        await pilot.press("slash", "ctrl+u", *"zzz", "enter")
        assert shown_names(app) == []
        assert "no VM matches the filter 'zzz'" in app.main.table.render_line(1).text


async def test_sort_keys_cycle_and_reverse(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        assert table.sort_column == "name"
        await pilot.press("o")
        assert table.sort_column == "state"
        assert [vm.state.value for vm in table.visible_vms()] == sorted(
            vm.state.value for vm in table.visible_vms())
        await pilot.press("O")
        assert table.sort_reverse
        assert table.visible_vms()[0].state == VMState.SHUTOFF
        assert "STATE▼" in table.render_line(0).text


async def test_a_filter_keystroke_puts_the_cursor_on_the_first_match(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.table
        await pilot.press("G")  # the last VM
        assert table.cursor_row == 7
        await pilot.press("slash", "n")
        assert table.cursor_row == 0
        assert table.cursor_vm is not None
        assert table.cursor_vm.name == shown_names(app)[0]
        assert shown_names(app)[0] in table.render_line(1).text  # the first match is on screen
