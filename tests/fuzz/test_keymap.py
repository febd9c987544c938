"""keymap.toml: any file gives a keymap of known ids and deliverable keys plus its problems, never an
exception; the help's catalogue of the app's bindings is built from any such keymap."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from textual.binding import Binding

from fuzz.strategies import BROKEN_TOML, TOML_VALUES, hostile_text, toml_document
from tui.keymap import binding_ids, catalogue, load_keymap, valid_key
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.widgets.vmtable import VMTable

GROUPS = [("VM list", MainScreen.BINDINGS), ("Navigation", VMTable.BINDINGS),
          ("Confirm dialog", ConfirmScreen.BINDINGS), ("Detail screen", DetailScreen.BINDINGS),
          ("Help screen", HelpScreen.BINDINGS)]
IDS = sorted(binding_ids(GROUPS))

key_names = st.one_of(
    st.sampled_from(["H", "j", "?", "f5", "enter", "escape", "question_mark", "space", "tab", "home",
                     "latin_small_letter_a", "greek_small_letter_alpha", "ctrl", "+", "", "ctlr", "f99",
                     "ünïcode", "\x1b", "日"]),
    hostile_text(max_size=2))
keys = st.builds(lambda mods, name: "+".join([*mods, name]),
                 st.lists(st.sampled_from(["ctrl", "shift", "alt", "meta", "super", "hyper", "Ctrl", "cmd",
                                           ""]), max_size=3),
                 key_names)
key_values = st.one_of(keys, st.lists(keys, max_size=3), st.lists(keys, max_size=3).map(",".join),
                       TOML_VALUES)
tables = st.dictionaries(st.one_of(st.sampled_from(IDS), st.text(max_size=6)), key_values, max_size=6)
documents = st.one_of(tables.map(lambda table: toml_document({"keymap": table})),
                      st.dictionaries(st.sampled_from(["keymap", "keys", "keymap.halt"]), tables, max_size=2)
                      .map(toml_document),
                      BROKEN_TOML)


def _display(binding: Binding) -> str:
    return binding.key_display or binding.key


@given(text=documents)
@example(text="keymap = 3\n")
@example(text='[keymap]\nhalt = []\n')
@example(text='[keymap]\nhalt = ","\n')
@example(text='[keymap]\nclear = "\\u202e"\n')  # taken, then in force as "right-to-left_override": no key
def test_any_keymap_file_gives_a_keymap_and_its_problems(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keymap.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        keymap, problems = load_keymap(path, IDS)
    assert set(keymap) <= set(IDS)
    assert all(isinstance(problem, str) and problem for problem in problems)
    for keys_in_force in keymap.values():
        assert keys_in_force
        assert all(valid_key(key) for key in keys_in_force.split(","))
    infos = catalogue(GROUPS, keymap, _display)
    assert {info.binding_id for info in infos if info.binding_id} == set(IDS)


@given(key=st.one_of(keys, st.text()))
def test_any_text_is_a_key_or_not(key: str) -> None:
    assert isinstance(valid_key(key), bool)
