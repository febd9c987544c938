"""Fixtures of the integration tests: a real libvirtd on qemu:///system (``make test`` starts one).

Without one the tests skip, except in CI or under ``make test`` (``CI=true`` or
``VMM_REQUIRE_INTEGRATION=1``), where they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.livelab import (
    URI,
    OpenLab,
    Outside,
    Watch,
    built_tiny_template,
    sweep_run_domains,
    system_problem,
)

from core.lab import Lab
from core.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _sweep_strays() -> Iterator[None]:
    """At the end of the session, remove any domain of this run that a failed test left behind."""
    yield
    if system_problem() is None:
        sweep_run_domains()


@pytest.fixture
def disk_dir(outside: Outside) -> Path:
    """A temp dir QEMU (as libvirt-qemu) can read, for qcow2 files made with qemu-img.

    ``outside`` removes it, after the domains using it (a fixture of its own would go first).
    """
    return outside.shared_dir()


@pytest.fixture
async def open_lab(outside: Outside, tmp_path: Path) -> AsyncIterator[OpenLab]:
    """``lab, watch = await open_lab(halt_timeout=3)``: a Lab on qemu:///system with these settings.

    ``outside`` comes first, so a missing libvirtd skips (or fails) before anything connects.
    """
    opened: list[tuple[Lab, Watch]] = []

    async def open_(**overrides: Any) -> tuple[Lab, Watch]:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("config_dir", tmp_path / "config")
        lab = await asyncio.wait_for(Lab.open(Settings(**overrides), URI), 30)
        watch = Watch(lab)
        opened.append((lab, watch))
        return lab, watch

    yield open_
    for lab, watch in opened:
        watch.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lab.close(), 15)
    opened.clear()
    # Collect the closed Lab now: a core task that failed unobserved is then logged here, not
    # whenever the GC next runs -- which can be inside pytest's ast.parse of a traceback, where
    # CPython 3.11's AST recursion-depth bug (gh-106905) turns the nested logging into an
    # INTERNALERROR that ends the whole session.
    gc.collect()


@pytest.fixture(scope="session")
def tiny_template() -> Iterator[Path]:
    """The tiny template (``vmlinuz``, ``initrd.img``, ``base.qcow2``), built once per session by
    ``scripts/build_template_tiny.sh`` into a temp dir libvirt-qemu can read. A template that
    cannot be built fails the tests that need it, never skips them."""
    with built_tiny_template() as out:
        yield out
