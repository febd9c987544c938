"""``make screenshots``: real screenshots of the real TUI, as SVG (Textual's own) and PNG.

On real diskless VMs when qemu:///system answers (so live figures and sparklines show), else on
the built-in demo lab. PNGs are rendered from the SVGs by headless Chromium (Debian's).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lab import DEMO_URI, Lab  # noqa: E402
from core.lab import SYSTEM_URI as SYSTEM  # noqa: E402
from core.metadata import LabMeta  # noqa: E402
from core.model import VM  # noqa: E402
from core.records.audit import Actor, AuditLog  # noqa: E402
from core.records.requests import Kind, RequestStore  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.testing.domains import tiny_domain  # noqa: E402
from tui.app import VMManagerApp  # noqa: E402

OUT = ROOT / "screenshots"
CLASSES = {"net101": ["alice", "bob", "chloe", "david", "emma"], "sys202": ["farid", "gabriel", "hugo"]}


def make_real_lab(conn: libvirt.virConnect, prefix: str) -> list[libvirt.virDomain]:
    doms = []
    for lab_class, users in CLASSES.items():
        for i, user in enumerate(users):
            meta = LabMeta(user, lab_class, "tiny-bios", "2026-11-24T08:00:00Z")
            dom = conn.defineXML(tiny_domain(f"{prefix}{lab_class}-{user}", meta=meta,
                                             memory_mib=64 + 32 * (i % 3)))
            if i % 4 != 3:
                dom.create()
            doms.append(dom)
    doms[1].suspend()
    return doms


async def shoot(settings: Settings, uri: str, live: bool) -> list[Path]:
    shots: list[Path] = []

    def save(app: VMManagerApp, name: str) -> None:
        shots.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(OUT))))

    for size in ((80, 24), (140, 42)):
        app = VMManagerApp(lab=await Lab.open(settings, uri))  # the app closes it on exit
        async with app.run_test(size=size) as pilot:
            await pilot.pause(6.0 if live else 0.5)  # a few stats ticks for CPU % and sparklines
            save(app, f"main-{size[0]}x{size[1]}")
            if size == (80, 24):
                continue
            await pilot.press("down", "down", "enter")
            await pilot.pause(4.0 if live else 0.5)
            save(app, "detail")
            await pilot.press("escape", "space", "down", "space", "h")
            await pilot.pause(0.3)
            save(app, "confirm-halt")
            await pilot.press("n", "question_mark")
            await pilot.pause(0.3)
            save(app, "help")
            await pilot.press("escape", "escape", "slash", *"net101")
            await pilot.pause(0.3)
            save(app, "filter")
            ask_for_resources(settings, app.main.table.all_vms())
            await pilot.press("escape", "escape", "ctrl+r")
            await pilot.pause(0.5)
            save(app, "requests")
            await pilot.press("escape", "a")
            await pilot.pause(0.5)
            save(app, "audit")
    return shots


def ask_for_resources(settings: Settings, vms: list[VM]) -> None:
    """A few students' requests, as the portal stores them, and a sign-in or two in the audit log."""
    owned = {vm.meta.owner: vm for vm in vms if vm.meta.owner}
    store = RequestStore(settings.database_path)
    audit = AuditLog(settings.database_path)
    try:
        for user, kind, amount, reason in (("alice", Kind.MEMORY, 2048, "the database exercise swaps"),
                                           ("chloe", Kind.VCPUS, 4, "parallel kernel builds"),
                                           ("farid", Kind.NEW_VM, None, "a second VM for the router lab")):
            vm = owned.get(user) if amount else None
            audit.record(Actor(user, "web", "192.0.2.10"), "signin")
            store.create(user, kind, reason=reason, amount=amount, email=f"{user}@lab.example",
                         vm_uuid=vm.uuid if vm else None, vm_name=vm.name if vm else None)
    finally:
        store.close()
        audit.close()


async def shoot_portal(settings: Settings, uri: str) -> list[Path]:
    """The student portal in headless Chromium (Debian's, through Playwright): alice's "My VMs" in
    English and her requests in French, from the real server on a loopback port."""
    from aiohttp import web
    from aiohttp.test_utils import unused_port
    from playwright.async_api import async_playwright

    from core.auth.accounts import Accounts
    from core.web.app import make_app, runner_options

    accounts = Accounts(settings.database_path)
    try:
        accounts.add("alice", "alice-password", display_name="Alice Martin", email="alice@lab.example")
    finally:
        accounts.close()
    port = unused_port()
    lab = await Lab.open(settings, uri)
    runner = web.AppRunner(make_app(settings, lab, secret_key=secrets.token_urlsafe(48), port=port),
                           **runner_options(settings))  # type: ignore[arg-type]
    await runner.setup()
    shots = []
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1100, "height": 640}, locale="en-GB")
            await page.goto(f"{base}/login")
            shots.append(await _page_shot(page, "portal-login"))
            await page.fill("#username", "alice")
            await page.fill("#password", "alice-password")
            await page.click("form.signin button[type=submit]")
            await page.wait_for_url(f"{base}/")
            shots.append(await _page_shot(page, "portal-my-vms"))
            await page.goto(f"{base}/requests?lang=fr")
            shots.append(await _page_shot(page, "portal-requests-fr"))
            await browser.close()
    finally:
        await runner.cleanup()
        await lab.close()
    return shots


async def _page_shot(page: Any, name: str) -> Path:
    path = OUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def to_png(svg: Path) -> Path:
    png = svg.with_suffix(".png")
    chromium = shutil.which("chromium")
    if chromium is None:
        print(f"no chromium: kept {svg.name} only (apt-get install chromium)", file=sys.stderr)
        return svg
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update",
                        f"--user-data-dir={profile}", "--window-size=1400,900",
                        f"--screenshot={png}", svg.as_uri()],
                       check=True, capture_output=True, timeout=60)
    return png


def main() -> None:
    OUT.mkdir(exist_ok=True)
    libvirt.registerErrorHandler(lambda *_: None, None)
    with tempfile.TemporaryDirectory(prefix="vmm-shots-") as tmp:
        settings = Settings(data_dir=Path(tmp), config_dir=Path(tmp) / "config")
        try:
            conn = libvirt.open(SYSTEM)
        except libvirt.libvirtError:
            conn = None
        if conn is None:
            print(f"{SYSTEM} does not answer: screenshots of the demo lab")
            shots = asyncio.run(shoot(settings, DEMO_URI, live=False))
            shots += asyncio.run(shoot_portal(settings, DEMO_URI))
        else:
            doms = make_real_lab(conn, f"lab{secrets.token_hex(1)}-")
            try:
                shots = asyncio.run(shoot(settings, SYSTEM, live=True))
                shots += asyncio.run(shoot_portal(settings, SYSTEM))
            finally:
                for dom in doms:
                    with contextlib.suppress(libvirt.libvirtError):
                        if dom.isActive():
                            dom.destroy()
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.undefine()
                conn.close()
    for shot in shots:
        print((to_png(shot) if shot.suffix == ".svg" else shot).relative_to(ROOT))


if __name__ == "__main__":
    main()
