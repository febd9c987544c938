"""Fixtures of the crash and load tests: a ``vm-manager`` process's folders and SECRET_KEY, and a
test-driver lab of alice's running VM and bob's shut-off one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.crashes import KEY

from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.testing import testdriver


@pytest.fixture
def settings(tmp_path: Path, run_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", runtime_dir=run_dir)


@pytest.fixture
def env(tmp_path: Path, settings: Settings) -> dict[str, str]:
    """A ``vm-manager`` process's environment: its own folders and SECRET_KEY."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "VMM_ENV_FILE": "/nonexistent", "VMM_DATA_DIR": str(settings.data_dir),
            "VMM_CONFIG_DIR": str(settings.config_dir),
            "VMM_RUNTIME_DIR": str(settings.runtime_dir), "SECRET_KEY": KEY, "SUDO_USER": "teacher"}


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec("web-a", VMState.RUNNING, meta=LabMeta("alice", "net101")),
        testdriver.Spec("web-b", VMState.SHUTOFF, meta=LabMeta("bob", "net101")),
    ])
