"""Fixtures of the browser tests: headless Debian Chromium through Playwright, real VMs, a console server.

Chromium is Debian's (``/usr/bin/chromium``), never one Playwright downloads. A missing libvirtd,
Chromium or noVNC install skips these tests, and fails them under ``make test`` / CI
(``VMM_REQUIRE_INTEGRATION=1`` or ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1] / "integration"))
from consolelab import CHROMIUM, CHROMIUM_ARGS, VENDOR, ConsoleServer, Harness, RebootWatch  # noqa: E402
from livelab import URI, Outside, built_tiny_template, system_answers, unavailable  # noqa: E402


@pytest.fixture
def outside() -> Iterator[Outside]:
    """A plain libvirt connection on qemu:///system; removes every domain it made."""
    if not system_answers():
        unavailable("qemu:///system is unreachable; run `make test`")
    world = Outside()
    try:
        yield world
    finally:
        world.cleanup()


@pytest.fixture
def novnc() -> Path:
    """The installed noVNC (scripts/install_novnc.sh)."""
    if not (VENDOR / "core" / "rfb.js").is_file():
        unavailable(f"noVNC is not installed in {VENDOR}: run scripts/install_novnc.sh")
    return VENDOR


@pytest.fixture
async def server(outside: Outside, novnc: Path, tmp_path: Path) -> AsyncIterator[ConsoleServer]:
    """The real console server (``core.web``) on a loopback port, its own data dir and Lab."""
    from core.settings import Settings

    # A short runtime dir: the endpoints' Unix sockets must fit in sun_path (pytest's tmp_path does not).
    run = Path(tempfile.mkdtemp(prefix="vmm-run-"))
    settings = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config", runtime_dir=run)
    console = ConsoleServer(settings, URI)
    try:
        await console.start()
        yield console
    finally:
        await console.close()
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
async def harness(outside: Outside, novnc: Path) -> AsyncIterator[Harness]:
    """The stand-in server: the page and noVNC as the real one serves them, and the RFB traffic."""
    server = Harness(outside.conn)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium (never a Playwright download)."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("the playwright package is missing (the dev dependency group has it)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def reboot_watch() -> Iterator[Callable[[libvirt.virDomain], RebootWatch]]:
    watches: list[RebootWatch] = []

    def make(dom: libvirt.virDomain) -> RebootWatch:
        watches.append(RebootWatch(dom))
        return watches[-1]

    yield make
    for watch in watches:
        watch.close()




@pytest.fixture(scope="session")
def tiny_template() -> Iterator[Path]:
    """The tiny template (kernel + busybox initramfs), built once per session into a dir QEMU can read
    (as the integration suite's fixture of the same name does). A failed build fails, never skips."""
    with built_tiny_template() as out:
        yield out
