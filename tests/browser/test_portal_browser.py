"""The student portal in Debian's headless Chromium: alice signs in (a local account, or from a real
slapd), sees her VM and not bob's, and opens her VM's console from "My VMs": the real server, a real
libvirtd VM, noVNC."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from support.consolelab import ConsoleServer, canvas_rgb, lit_share, settled_screen, until, wait_state
from support.livelab import RUN_PREFIX, URI, Outside

from core.auth.accounts import Accounts
from core.metadata import LabMeta
from core.settings import LdapSettings, Settings

pytestmark = pytest.mark.integration


async def _in_inventory(server: ConsoleServer, *uuids: str) -> None:
    from core.web.keys import find_vm

    deadline = time.monotonic() + 20
    while any(find_vm(server.lab, uuid) is None for uuid in uuids):
        assert time.monotonic() < deadline, "the VMs never reached the server's inventory"
        await asyncio.sleep(0.05)


async def test_alice_signs_in_and_opens_her_console(outside: Outside, server: ConsoleServer,
                                                    browser: Any) -> None:
    accounts = Accounts(server.settings.database_path)
    try:
        accounts.add("alice", "correct horse battery")
    finally:
        accounts.close()
    await signs_in_and_opens_her_console(outside, server, browser, "correct horse battery")


async def test_alice_signs_in_from_ldap_and_opens_her_console(outside: Outside, novnc: Path, browser: Any,
                                                              tmp_path: Path) -> None:
    """The same through the directory: a real slapd, no local account at all."""
    from support.slapd import PASSWORDS, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, Slapd

    run = Path(tempfile.mkdtemp(prefix="vmm-run-"))  # short: the endpoints' sockets must fit in sun_path
    with Slapd(tmp_path / "slapd") as directory:
        settings = Settings(
            data_dir=tmp_path / "data",
            config_dir=tmp_path / "config",
            runtime_dir=run,
            ldap=LdapSettings(
                host=directory.url,
                base_dn=SUFFIX,
                bind_user_dn=SERVICE_DN,
                bind_user_password=SERVICE_PASSWORD,
            ),
        )
        server = ConsoleServer(settings, URI)
        try:
            await server.start()
            await signs_in_and_opens_her_console(outside, server, browser, PASSWORDS["alice"],
                                                 shown_name="Alice Liddell")
        finally:
            await server.close()
            shutil.rmtree(run, ignore_errors=True)


async def signs_in_and_opens_her_console(outside: Outside, server: ConsoleServer, browser: Any, password: str,
                                         shown_name: str = "alice") -> None:
    """alice signs in with ``password`` in French, sees her VM and not bob's, opens its console."""
    mine = outside.define("alice", start=True, meta=LabMeta("alice", "net101"))
    theirs = outside.define("bob", start=True, meta=LabMeta("bob", "net101"))
    await _in_inventory(server, mine.UUIDString(), theirs.UUIDString())

    context = await browser.new_context(viewport={"width": 1024, "height": 700}, locale="fr-FR")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/")
    assert page.url == f"{server.url}/login"
    assert await page.get_attribute("html", "lang") == "fr"  # from Chromium's Accept-Language
    await page.fill("#username", "alice")
    await page.fill("#password", password)
    await page.click("form.signin button[type=submit]")
    await page.wait_for_url(f"{server.url}/")
    assert await page.text_content("h1") == "Mes VM"
    assert await page.text_content("header .user") == shown_name
    names = await page.locator("table.vms th.name").all_text_contents()
    # bob's VM is not on her page. (Other test runs on the same libvirtd may have an "alice" VM too.)
    assert [n for n in names if n.startswith(RUN_PREFIX)] == [mine.name()]
    assert theirs.name() not in names
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies["vmm_session"]["httpOnly"]
    assert cookies["vmm_session"]["sameSite"] == "Lax"

    # The console button: a POST, then the console page of her VM, with no token in the address.
    row = page.locator(f"tr[data-uuid='{mine.UUIDString()}']")
    await row.locator("form[action$='/console'] button").click()
    await page.wait_for_url(f"{server.url}/console/{mine.UUIDString()}")
    await wait_state(page, "connected")
    await settled_screen(page, mine)
    await until(page, "(() => { const c = document.querySelector('#screen canvas');"
                      " return c && c.width > 0; })()", what="the noVNC canvas")
    for _ in range(40):  # the canvas draws the VM's screen (SeaBIOS's text lights a few % of it)
        canvas = await canvas_rgb(page)
        if lit_share(canvas) > 0.005:
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail("the noVNC canvas stayed blank")
    assert server.viewers() == 1
    assert errors == []
    await context.close()
