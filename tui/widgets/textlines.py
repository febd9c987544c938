"""Rich Text to Strips for line-API widgets that must repaint cheaply (header, event log).

A Static re-renders through Textual's Content on every update (about a millisecond), and a
RichLog re-lays the screen out on every line; during a storm of changes both add up.
"""

from __future__ import annotations

from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual.strip import Strip


def text_strip(text: Text, console: Console) -> Strip:
    """One line of text (no wrapping) as a Strip of its natural width."""
    return Strip(list(text.render(console, end="")), text.cell_len)


def fit(strip: Strip, width: int, base: Style) -> Strip:
    """Crop or pad to ``width``, over the widget's base style (its background)."""
    return strip.crop(0, width).apply_style(base).extend_cell_length(width, base)
