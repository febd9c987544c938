"""Fixtures: a lab on libvirt's real test driver, and an app driven by Textual's Pilot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from support.tuitest import FIXED_TIME, lab_specs

from core.lab import Lab
from core.settings import ActionSettings, Settings
from core.testing import testdriver
from tui.app import VMManagerApp


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        config_dir=tmp_path / "config", data_dir=tmp_path / "data", actions=ActionSettings(halt_timeout=5.0)
    )


@pytest.fixture
def lab_uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", lab_specs())


@pytest.fixture
async def lab(settings: Settings, lab_uri: str) -> AsyncIterator[Lab]:
    opened = await Lab.open(settings, lab_uri)
    yield opened
    await opened.close()  # the app closes it too; closing twice is harmless


@pytest.fixture
def make_app(lab: Lab) -> Callable[..., VMManagerApp]:
    def make(**kwargs: object) -> VMManagerApp:
        kwargs.setdefault("clock", lambda: FIXED_TIME)
        kwargs.setdefault("log_visible", True)
        return VMManagerApp(lab=lab, **kwargs)  # type: ignore[arg-type]

    return make
