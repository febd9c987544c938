"""Fixtures of the browser tests: headless Debian Chromium through Playwright, real VMs, the console server.

Chromium is Debian's (``/usr/bin/chromium``), never one Playwright downloads. A missing libvirtd,
Chromium or noVNC install skips these tests, and fails them under ``make test`` / CI
(``VMM_REQUIRE_INTEGRATION=1`` or ``CI=true``). After the session nothing of theirs may be left
(``nothing_left_behind``, tests/conftest.py).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from support import leftovers
from support.consolelab import CHROMIUM, CHROMIUM_ARGS, VENDOR, ConsoleServer, Harness, RebootWatch, Serve
from support.livelab import URI, Outside, built_tiny_template, system_answers, unavailable


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind(nothing_left_behind: None) -> None:
    """Nothing of ours may be left after the session (tests/conftest.py)."""


def _need_system() -> None:
    if not system_answers():
        unavailable("qemu:///system is unreachable; run `make test`")


def _need_novnc() -> None:
    if not (VENDOR / "core" / "rfb.js").is_file():
        unavailable(f"noVNC is not installed in {VENDOR}: run scripts/install_novnc.sh")


@pytest.fixture
def novnc() -> Path:
    """The installed noVNC (scripts/install_novnc.sh)."""
    _need_novnc()
    return VENDOR


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """``vm-manager serve`` as an operator runs it (its own dirs, SECRET_KEY, PUBLIC_URL on a loopback
    port), one per test module: each test makes its own VMs and links. SIGTERM must end it cleanly."""
    _need_system()
    _need_novnc()
    run = leftovers.run_dir()  # short: the endpoints' Unix sockets must fit in sun_path
    server = Serve(tmp_path_factory.mktemp("serve"), run, URI)
    try:
        server.start()
        yield server
        status = server.stop()
        assert status == 0, f"vm-manager serve ended with {status}: {server.last_words()}"
        assert "stopped" in server.stderr, server.last_words()
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
async def server(outside: Outside, novnc: Path, tmp_path: Path) -> AsyncIterator[ConsoleServer]:
    """The same server in this process (``core.web`` on a loopback port, its own data dir and Lab),
    for a test that needs its insides; ``serve`` otherwise."""
    from core.settings import Settings

    run = leftovers.run_dir()  # short: the endpoints' Unix sockets must fit in sun_path
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
