"""Whether a path lies inside a folder, both compared as absolute, normalised paths (``..`` and
``.`` resolved by name, symlinks not followed: callers that must follow them use realpath)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def inside(path: str | os.PathLike[str], folders: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether ``path`` is one of ``folders`` or lies in one of them."""
    normal = Path(os.path.normpath(os.path.abspath(path)))
    return any(normal.is_relative_to(os.path.normpath(os.path.abspath(folder))) for folder in folders)
