"""Textual's private details the TUI relies on (for speed, or to match Textual exactly), in one place.

Pinned to Textual 8.2.8 (pyproject.toml). Every use in tui/ goes through this module, and
tests/tui/test_textual_private.py fails when an upgrade removes one or changes its shape: then
take the replacement each docstring names.

- :func:`update_scrollbars`: ``Widget._scroll_update``, for the VM table (tui/widgets/vmtable.py).
- :func:`normalize_key_list`: ``textual.keys._normalize_key_list``, for the keymap (tui/keymap.py).
- :func:`virtual_size_without_layout`: a public name, but Textual's own behaviour overridden: the
  ``virtual_size`` that ``Input`` sets on every keystroke (tui/widgets/statusbar.py).

The VM table once overrode ``Widget._on_click`` as well; a public ``on_click`` does the same
(Textual calls one handler per class along the MRO, ``_on_click`` or else ``on_click``, so
Widget's own still runs), and that is what it has now.
"""

from __future__ import annotations

from textual import keys
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widget import Widget

__all__ = ["normalize_key_list", "update_scrollbars", "virtual_size_without_layout"]


def update_scrollbars(widget: Widget, virtual_size: Size) -> None:
    """Resize ``widget``'s scrollbars for a new ``virtual_size`` it was given with ``set_reactive``
    (no watcher, no layout): ``Widget._scroll_update(virtual_size)``, what ScrollView itself calls
    when its size changes.

    Why: assigning ``virtual_size`` asks for a layout pass, a reflow and repaint of the whole
    screen, on every filter keystroke, although the table's own size never changes with its row
    count (its scrollbar always shows). If it goes: assign ``widget.virtual_size = virtual_size``
    instead, and measure a filter keystroke again (``make bench``: tui_filter_keystroke).
    """
    widget._scroll_update(virtual_size)


def normalize_key_list(keys_text: str) -> str:
    """``"H, ?,ctrl+x"`` → ``"H,question_mark,ctrl+x"``: a comma-separated key list as
    ``App.set_keymap`` normalises it (``textual.keys._normalize_key_list``).

    Why: the help screen and the command palette list the keys a keymap puts in force; written
    as Textual writes them, they match the bindings exactly. If it goes: see what
    ``App._normalize_keymap`` calls in the new version; else copy the function (eight lines, with
    ``_character_to_key``) into tui/keymap.py.
    """
    return keys._normalize_key_list(keys_text)


def virtual_size_without_layout() -> Reactive[Size]:
    """A ``virtual_size`` reactive that asks for no layout pass, to declare on an ``Input``
    subclass in place of ScrollView's (``layout=True``).

    Why: ``Input`` sets its ``virtual_size`` (its scrollable text width) on every keystroke, and
    the inherited reactive then reflows and repaints the whole screen, while the filter prompt's
    own size (1fr x 1) never changes. Relies on Input's internals: what it sets, and that a
    subclass may redeclare the reactive. If that stops working: drop the override (the filter
    prompt then costs a layout pass per keystroke; measure with ``make bench``).
    """
    return Reactive(Size(0, 0), layout=False)
