"""Shared by every test suite. Keep it small: suite-specific fixtures live in the suite's conftest."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from support import leftovers

# Hypothesis' profiles (tests/fuzz/ is where the parsers' properties live). "ci", the default and
# what make test runs: the same 200 examples a property every run (derandomised, no example
# database), no deadline (a loaded 2-core machine makes any timing flaky). "soak" (VMM_FUZZ_PROFILE=soak,
# what make soak sets): 5,000 random examples a property, failures kept in .hypothesis/ (ignored by git)
# and tried first next time. A test's own @settings wins over the profile.
_FUZZ_SLOW = [HealthCheck.too_slow]
hypothesis_settings.register_profile("ci", max_examples=200, derandomize=True, database=None, deadline=None,
                                     suppress_health_check=_FUZZ_SLOW, print_blob=True)
hypothesis_settings.register_profile("soak", max_examples=5000, deadline=None,
                                     suppress_health_check=_FUZZ_SLOW, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("VMM_FUZZ_PROFILE", "ci"))


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


@pytest.fixture(scope="session")
def nothing_left_behind() -> Iterator[None]:
    """At the end of the session nothing of ours may be left: no console endpoint, websockify or
    ``vm-manager serve`` process, run folder, listening port or socket (``tests/leftovers.py``).
    The web and browser suites use it (an autouse fixture in their conftest.py asks for it)."""
    before = leftovers.baseline()
    yield
    deadline = time.monotonic() + 5  # a process told to stop may take a moment to be gone
    while leftovers.check(before, clean=False) and time.monotonic() < deadline:
        time.sleep(0.1)
    problems = leftovers.check(before)
    assert not problems, "left behind by the tests:\n" + "\n".join(problems)


@pytest.fixture
def outside() -> Iterator[Any]:
    """A plain libvirt connection on qemu:///system for acting from outside the Lab
    (``livelab.Outside``); removes every domain it made. For the integration, web and browser
    suites, whose conftest puts tests/integration on the path."""
    from support.livelab import Outside, system_problem, unavailable

    reason = system_problem()
    if reason is not None:
        unavailable(reason)
    world = Outside()
    try:
        yield world
    finally:
        world.cleanup()


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """VMM_RUNTIME_DIR: short (a Unix socket path holds 107 bytes; tmp_path is long); removed after."""
    path = leftovers.run_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A folder under /var/tmp that QEMU's user (libvirt-qemu) and everyone may pass: pytest's own
    tmp folders are closed to other users. Removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="vmm-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
