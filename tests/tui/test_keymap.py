"""keymap.toml: remapped keys work, the help shows them, a bad file is reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.tuitest import SIZE, notifications, vm_named

from core.settings import Settings
from tui.keymap import binding_ids, load_keymap, valid_key
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen

KNOWN = {"halt", "start", "cursor_down"}


def write(settings: Settings, text: str) -> Path:
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    settings.keymap_path.write_text(text, encoding="utf-8")
    return settings.keymap_path


def test_a_missing_file_is_no_problem(tmp_path: Path) -> None:
    assert load_keymap(tmp_path / "nope.toml", KNOWN) == ({}, [])


def test_keys_lists_and_commas(tmp_path: Path) -> None:
    path = tmp_path / "keymap.toml"
    path.write_text('[keymap]\nhalt = "H"\ncursor_down = ["j", "n"]\nstart = "ctrl+s,f5"\n')
    keymap, problems = load_keymap(path, KNOWN)
    assert problems == []
    assert keymap == {"halt": "H", "cursor_down": "j,n", "start": "ctrl+s,f5"}


@pytest.mark.parametrize(("text", "problem"), [
    ("[keymap\nhalt = 'H'", "is not valid TOML"),
    ("halt = 'H'", "has no [keymap] table"),
    ("[keymap]\nhalt = 3", "expected a key or a list of keys"),
    ("[keymap]\nfly = 'f'", "unknown binding id 'fly'"),
    ("[keymap]\nhalt = 'ctlr+h'", "halt: unknown key 'ctlr+h'"),
])
def test_problems_are_reported(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "keymap.toml"
    path.write_text(text)
    _keymap, problems = load_keymap(path, KNOWN)
    assert any(problem in p for p in problems), problems


def test_key_names() -> None:
    assert all(valid_key(k) for k in ("H", "ctrl+h", "f5", "question_mark", "space", "shift+tab", "?"))
    assert not any(valid_key(k) for k in ("ctlr+h", "", "hyper+", "nosuchkey"))


async def test_a_remapped_key_runs_its_action(make_app, settings: Settings) -> None:
    write(settings, '[keymap]\nhalt = "H"\nstart = "S"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.main.table.move_to(vm_named(app, "net101-alice").key)
        await pilot.press("h")  # the old key does nothing now
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await pilot.press("H")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.title_text == "Halt 1 VM?"
        await pilot.press("n")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        halt = next(info for info in app.screen.infos if info.binding_id == "halt")
        assert halt.keys == ("H",)
        assert not any(n.startswith("Keymap") for n in notifications(app))


async def test_a_bad_keymap_gives_a_notification_not_a_crash(make_app, settings: Settings) -> None:
    write(settings, "[keymap\nthis is not toml")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any(n.startswith("Keymap not fully applied|") and "not valid TOML" in n
                   for n in notifications(app))
        app.main.table.move_to(vm_named(app, "net101-alice").key)
        await pilot.press("h")  # the default keys still work
        assert isinstance(app.screen, ConfirmScreen)


async def test_a_partly_bad_keymap_applies_the_good_part(make_app, settings: Settings) -> None:
    write(settings, '[keymap]\nhalt = "H"\nteleport = "t"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("unknown binding id 'teleport'" in n for n in notifications(app))
        await pilot.press("H")
        assert isinstance(app.screen, ConfirmScreen)


def test_the_readme_documents_every_binding_id(make_app) -> None:
    """keymap.toml takes binding ids: each must be findable in the README's key table."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    ids = binding_ids(make_app().binding_groups())
    assert len(ids) > 40
    assert sorted(i for i in ids if f"`{i}`" not in readme) == []
