"""The `/` filter: plain text, field:value, re:..., negation, and Escape."""

from __future__ import annotations

import dataclasses

import pytest
from support.tuitest import SIZE, shown_names, status_line, tui_in_pane

from core.metadata import LabMeta
from core.model import VM, VMState
from core.query import fields_of, parse
from core.records import AuditLog
from core.settings import Settings
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


async def test_a_slash_in_the_open_prompt_is_text(make_app) -> None:
    """`/` opens the prompt at once (a priority binding); in the open prompt it is a character."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"re:a/b")
        assert isinstance(app.focused, FilterInput)
        assert app.query_one(FilterInput).value == "re:a/b"


def typed_filter(screen: str) -> str:
    """The `/` prompt and what it holds, as the terminal shows it ("" when it is not open)."""
    words = status_line(screen).split()
    return words[0] if words and words[0].startswith("/") else ""


def test_keys_sent_in_one_write_after_slash_are_all_filter_text(settings: Settings, lab_uri: str) -> None:
    """Over a laggy SSH link the keys typed after `/` arrive together: every one of them is filter
    text, however fast it comes (`s` would start the VM under the cursor, `t` open the templates).

    Through a real terminal: Pilot waits for the app to be idle between two keys, so it cannot
    send keys the way they come here, in one write."""
    with tui_in_pane(settings, lab_uri) as terminal:
        terminal.wait(lambda screen: "net101-alice" in screen)
        terminal.keys("/state", literal=True)
        terminal.wait(lambda screen: typed_filter(screen).endswith("e"))  # the last key is in
        screen = terminal.screen()
        assert typed_filter(screen) == "/state", screen
        assert "NAME" in screen, screen  # still the VM list
        assert "Templates" not in screen, screen
        terminal.keys("Escape")  # the prompt: cleared and left; every VM shown again
        terminal.wait(lambda screen: "8/8 shown" in status_line(screen))
        assert "shutoff" in next(line for line in terminal.screen().splitlines()
                                 if "[@click=app.quit]x" in line)  # the VM under the cursor
    audit = AuditLog(settings.database_path)
    try:
        assert [entry.action for entry in audit.entries()] == []  # nothing was started
    finally:
        audit.close()
