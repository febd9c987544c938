"""Shared by every test suite. Keep it small: suite-specific fixtures live in the suite's conftest."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_xdg_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Default data and config dirs under a temp dir, so no test writes to the real home.

    Settings' defaults keep their shape (``$XDG_DATA_HOME/vm-manager``); tests that want other
    places pass them explicitly.
    """
    base = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as patch:
        for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
            path = base / sub
            path.mkdir()
            patch.setenv(var, os.fspath(path))
        yield
