"""Fixtures of the web tests: settings with a short private run dir, labs, console servers.

The live tests use a real libvirtd (``make test`` starts one) through the integration suite's
``livelab`` helpers; without one they skip, or fail under CI / VMM_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.livelab import (
    URI,
    Outside,
    sweep_run_domains,
    system_answers,
)
from support.webtest import Console, Serve, StartConsole, StartServe, start_console, websockify_pids

from core.lab import Lab
from core.metadata import LabMeta
from core.model import VMState
from core.settings import Settings
from core.testing import testdriver


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind(nothing_left_behind: None) -> Iterator[None]:
    """After the suite: stray domains of this run removed; then nothing of ours may be left
    (``nothing_left_behind``, tests/conftest.py)."""
    yield
    if system_answers():
        sweep_run_domains()


@pytest.fixture
def web_settings(tmp_path: Path, run_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", runtime_dir=run_dir)


@pytest.fixture
async def test_lab(web_settings: Settings, tmp_path: Path) -> AsyncIterator[Lab]:
    """A Lab on libvirt's test driver: two running VMs (no VNC there), for what needs no QEMU."""
    uri = testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec("web-a", VMState.RUNNING, meta=LabMeta("alice", "net101")),
        testdriver.Spec("web-b", VMState.RUNNING, meta=LabMeta("bob", "net101")),
        testdriver.Spec("web-off", VMState.SHUTOFF),
    ])
    lab = await Lab.open(web_settings, uri)
    yield lab
    await lab.close()


@pytest.fixture
def uri(tmp_path: Path) -> str:
    """A test-driver lab for ``vm-manager`` processes: web-a running (alice's), web-b shut off (bob's)."""
    return testdriver.write(tmp_path / "lab.xml", [
        testdriver.Spec("web-a", VMState.RUNNING, meta=LabMeta("alice", "net101")),
        testdriver.Spec("web-b", VMState.SHUTOFF, meta=LabMeta("bob", "net101")),
    ])


@pytest.fixture
async def live_lab(outside: Outside, web_settings: Settings) -> AsyncIterator[Lab]:
    lab = await Lab.open(web_settings, URI)
    yield lab
    await lab.close()



@pytest.fixture
async def console(web_settings: Settings, run_dir: Path) -> AsyncIterator[StartConsole]:
    """``server = await console(lab, **make_app_options)``; stopped at the end of the test, and
    then neither a websockify process nor an endpoint socket may be left."""
    started: list[Console] = []

    async def start(lab: Lab, settings: Settings | None = None, **options: Any) -> Console:
        server = await start_console(settings or web_settings, lab, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close()
    assert websockify_pids(run_dir) == [], "websockify left running after the server stopped"
    assert list((run_dir / "consoles").glob("*.sock")) == [], "endpoint sockets left behind"


@pytest.fixture
def env(tmp_path: Path, run_dir: Path) -> dict[str, str]:
    """The environment of a ``vm-manager`` process: its own data, config and run dirs."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
            "VMM_ENV_FILE": "/nonexistent", "VMM_DATA_DIR": str(tmp_path / "data"),
            "VMM_CONFIG_DIR": str(tmp_path / "config"), "VMM_RUNTIME_DIR": str(run_dir)}



@pytest.fixture
def serve(env: dict[str, str]) -> Iterator[StartServe]:
    """``server = serve("-c", uri, "serve")``: killed at the end of the test if still running."""
    started: list[Serve] = []

    def start(*args: str, **extra: str) -> Serve:
        server = Serve({**env, **extra}, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=30)
