"""Key remapping (``config_dir/keymap.toml``) and the one catalogue of bindings.

The file maps binding ids to keys::

    [keymap]
    halt = "H"                 # one key
    cursor_down = ["j", "n"]   # several keys (or "j,n")

The help screen and the command palette are both built from :func:`catalogue`, so they always
show the keys in force, remapped or not.
"""

from __future__ import annotations

import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding, BindingsMap, BindingType
from textual.keys import REPLACED_KEYS, Keys

from tui.textual_private import normalize_key_list

Keymap = dict[str, str]

_MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_KEY_NAMES = frozenset(k.value for k in Keys)


def valid_key(key: str) -> bool:
    """Whether Textual can ever deliver ``key`` (e.g. ``H``, ``ctrl+h``, ``f5``, ``question_mark``)."""
    *modifiers, name = key.strip().split("+")
    if not name or any(m not in _MODIFIERS for m in modifiers):
        return False
    if len(name) == 1:  # a control or a bidi override is no key a terminal sends, and shows nothing
        return name.isprintable()
    if name in _KEY_NAMES or name in REPLACED_KEYS:
        return True
    try:
        unicodedata.lookup(name.replace("_", " "))
    except KeyError:
        return False
    return True


def load_keymap(path: Path, known_ids: Iterable[str]) -> tuple[Keymap, list[str]]:
    """Read the keymap file: what can be applied, and a list of problems (empty when all is well).

    A missing file is no problem; a broken one yields no keymap and one problem, never an exception.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"cannot read {path}: {exc.strerror}"]
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return {}, [f"{path} is not valid TOML: {exc}"]
    table = document.get("keymap")
    if not isinstance(table, dict):
        return {}, [f"{path} has no [keymap] table (binding id = \"key\")"]
    known = set(known_ids)
    keymap: Keymap = {}
    problems: list[str] = []
    for binding_id, value in table.items():
        keys = [value] if isinstance(value, str) else value
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            problems.append(f"{binding_id}: expected a key or a list of keys, not {value!r}")
            continue
        keys = [k.strip() for item in keys for k in item.split(",")]
        if binding_id not in known:
            problems.append(f"unknown binding id {binding_id!r}")
        elif bad := [k for k in keys if not valid_key(k)]:
            problems.append(f"{binding_id}: unknown key {', '.join(map(repr, bad))}")
        else:
            # normalised as App.set_keymap does it, so the catalogue matches the keys in force
            keymap[binding_id] = normalize_key_list(",".join(keys))
    return keymap, problems


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One binding as the operator sees it: its keys in force, what it does, its id for the keymap."""

    group: str
    keys: tuple[str, ...]
    description: str
    binding_id: str
    action: str


def binding_ids(groups: Sequence[tuple[str, Sequence[BindingType]]]) -> set[str]:
    return {b.id for _, bindings in groups for b in Binding.make_bindings(bindings) if b.id}


def catalogue(groups: Sequence[tuple[str, Sequence[BindingType]]], keymap: Keymap,
              display: Callable[[Binding], str]) -> list[KeyInfo]:
    """Every binding of ``groups`` with the keymap applied, one entry per binding id, in order."""
    infos: list[KeyInfo] = []
    for group, bindings in groups:
        bindings_map = BindingsMap(bindings)
        if keymap:
            bindings_map.apply_keymap(keymap)
        order: dict[str, tuple[Binding, list[str]]] = {}
        for binding in Binding.make_bindings(bindings):  # declaration order
            order.setdefault(binding.id or binding.action, (binding, []))
        for key, key_bindings in bindings_map.key_to_bindings.items():
            for binding in key_bindings:
                entry = order.get(binding.id or binding.action)
                if entry is not None:
                    entry[1].append(display(binding.with_key(key, binding.key_display
                                                             if binding.key == key else None)))
        for binding, keys in order.values():
            infos.append(KeyInfo(group, tuple(dict.fromkeys(keys)), binding.description,
                                 binding.id or "", binding.action))
    return infos
