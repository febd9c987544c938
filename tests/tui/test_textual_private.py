"""The Textual private details of tui/textual_private.py are still there, with the shape relied on.

A failure here after a Textual upgrade names the detail that went: take the replacement its
docstring in tui/textual_private.py gives. Nothing else in tui/ may touch Textual's privates.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

from textual import keys
from textual.app import App, ComposeResult
from textual.geometry import Size
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.widgets import Input

from tui import textual_private
from tui.widgets.statusbar import FilterInput

TUI = Path(__file__).resolve().parents[2] / "tui"


def test_normalize_key_list_is_what_set_keymap_applies() -> None:
    private = keys._normalize_key_list
    assert list(inspect.signature(private).parameters) == ["keys"]
    assert textual_private.normalize_key_list("H, ?,ctrl+x") == "H,question_mark,ctrl+x"
    # the keymap's keys are written as App.set_keymap writes them: the help screen matches
    assert App._normalize_keymap({"halt": "H, ?,ctrl+x"}) == {"halt": "H,question_mark,ctrl+x"}
    assert "_normalize_key_list" in inspect.getsource(App._normalize_keymap)


class _Scrolled(ScrollView):
    """Scrolls as the VM table does: a vertical scrollbar always, never a horizontal one."""

    DEFAULT_CSS = "_Scrolled { overflow-x: hidden; overflow-y: scroll; }"

    def render_line(self, y: int) -> Any:
        from textual.strip import Strip

        return Strip.blank(self.size.width)


class _ScrollApp(App[None]):
    def compose(self) -> ComposeResult:
        yield _Scrolled()


async def test_scroll_update_resizes_the_scrollbars_without_a_layout() -> None:
    assert list(inspect.signature(Widget._scroll_update).parameters) == ["self", "virtual_size"]
    app = _ScrollApp()
    async with app.run_test(size=(40, 10)) as pilot:
        widget = app.query_one(_Scrolled)
        await pilot.pause()
        size = Size(40, 500)
        widget.set_reactive(ScrollView.virtual_size, size)
        layouts: list[bool] = []
        real_refresh = widget.refresh
        widget.refresh = lambda *a, **kw: (layouts.append(kw.get("layout", False)),  # type: ignore[method-assign]
                                           real_refresh(*a, **kw))[1]
        textual_private.update_scrollbars(widget, size)
        assert widget.vertical_scrollbar.window_virtual_size == 500
        assert not any(layouts)
        assert widget.max_scroll_y > 0


async def test_a_redeclared_virtual_size_asks_for_no_layout() -> None:
    inherited = Widget.__dict__["virtual_size"]
    assert isinstance(inherited, Reactive)
    assert inherited._layout is True  # what FilterInput's own declaration undoes
    assert FilterInput.__dict__["virtual_size"]._layout is False
    assert "self.virtual_size =" in inspect.getsource(Input._watch_value)  # why: set per keystroke

    class _InputApp(App[None]):
        def compose(self) -> ComposeResult:
            yield FilterInput(lambda _text: None)

    app = _InputApp()
    async with app.run_test(size=(40, 3)) as pilot:
        prompt = app.query_one(FilterInput)
        await pilot.pause()
        layouts: list[bool] = []
        real_refresh = prompt.refresh
        prompt.refresh = lambda *a, **kw: (layouts.append(kw.get("layout", False)),  # type: ignore[method-assign]
                                           real_refresh(*a, **kw))[1]
        prompt.virtual_size = Size(123, 1)
        assert prompt.virtual_size == Size(123, 1)
        assert layouts
        assert not any(layouts)


def test_no_other_module_of_tui_touches_a_textual_private() -> None:
    """Underscore names imported from Textual, underscore attributes that only Textual defines,
    and overrides of Textual's own ``_on_*`` handlers appear in tui/textual_private.py alone."""
    textual_handlers = {name for cls in (App, Widget, ScrollView, Input) for base in cls.__mro__
                        for name in vars(base) if name.startswith("_on_")}
    ours: set[str] = set()
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in TUI.rglob("*.py")}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.AnnAssign | ast.Assign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                ours.update(t.id for t in targets if isinstance(t, ast.Name))
    offenders = []
    for path, tree in trees.items():
        if path.name == "textual_private.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "textual":
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") or "._" in f".{node.module}"]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and node.attr not in ours:
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in textual_handlers:
                offenders.append(f"{path.name}:{node.lineno}: {node.name} (Textual's own handlers)")
    # argparse's _SubParsersAction is the standard library's, not Textual's
    assert [o for o in offenders if "_SubParsersAction" not in o] == []
