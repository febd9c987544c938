"""Fixtures for unit tests: labs on libvirt's own test driver, built from files per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.lab import Lab
from core.settings import ActionSettings, Settings
from core.testing import testdriver


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", config_dir=tmp_path / "config", actions=ActionSettings(halt_timeout=2.0)
    )


@pytest.fixture
def lab_file(tmp_path: Path) -> Callable[[list[testdriver.Spec]], str]:
    """Write a test-driver file of the given domains; returns its URI."""
    def make(specs: list[testdriver.Spec]) -> str:
        return testdriver.write(tmp_path / "lab.xml", specs)
    return make


@pytest.fixture
async def demo_lab(settings: Settings, tmp_path: Path) -> AsyncIterator[Lab]:
    uri = testdriver.write(tmp_path / "demo.xml", testdriver.demo_specs())
    lab = await Lab.open(settings, uri)
    yield lab
    await lab.close()
