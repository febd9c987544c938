"""The README's map ("How it is built") matches the tree: every package of core/ and tui/ is on
it, and every path it names exists."""

from __future__ import annotations

import re

from support.cli import CHECKOUT

PATH = re.compile(r"`((?:core|tui)/[A-Za-z0-9_/.]*)`")


def map_section() -> str:
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## How it is built")
    return readme[start:readme.index("\n## ", start + 1)]


def test_every_path_on_the_map_exists() -> None:
    named = PATH.findall(map_section())
    assert len(named) > 20, "the map names too few paths: is the pattern still right?"
    missing = [path for path in named if not (CHECKOUT / path).exists()]
    assert missing == []


def test_every_package_is_on_the_map() -> None:
    named = {path.rstrip("/") for path in PATH.findall(map_section())}
    packages = sorted(str(init.parent.relative_to(CHECKOUT)) for top in ("core", "tui")
                      for init in (CHECKOUT / top).rglob("__init__.py") if "__pycache__" not in init.parts)
    assert "core/virt" in packages
    assert [package for package in packages if package not in named] == []
