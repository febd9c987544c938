"""The browser console end to end: ``vm-manager share`` -> share link -> cookie -> console page in
headless Chromium -> ``vm-manager serve`` (its own process, one per module) -> its endpoint
process (websockify) -> a real VM's VNC.

Each test starts a tiny SeaBIOS domain (VGA, VNC on loopback) and opens its share link.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.consolelab import (
    Serve,
    canvas_rgb,
    compare,
    lit_share,
    open_console,
    settled_screen,
    until,
    vm_screen,
    wait_state,
)
from support.livelab import Outside

pytestmark = pytest.mark.integration


async def test_share_link_opens_the_vm_screen(outside: Outside, serve: Serve, browser: Any) -> None:
    dom = outside.define("screen", start=True)
    url, _link = await serve.share(dom)
    page, errors = await open_console(browser, url)
    assert page.url == f"{serve.url}/console/{dom.UUIDString()}"
    await settled_screen(page, dom)

    # QEMU names the desktop after the domain: the page shows this VM, not another one.
    await until(page, "document.getElementById('name').textContent !== ''")
    assert dom.name() in await page.text_content("#name")
    # The canvas is the VM's screen, pixel for pixel (a blank, an error page or another picture
    # fails); the VGA cursor blinks, so a few tries may be needed to catch both in the same phase.
    best = (255.0, 1.0)
    for _ in range(10):
        canvas = await canvas_rgb(page)
        assert canvas[0] > 0, "the page has no noVNC canvas"
        mean, share = compare(canvas, await vm_screen(page, dom))
        best = min(best, (mean, share))
        if mean < 1.0 and share < 0.001:
            break
        await asyncio.sleep(0.3)
    else:
        pytest.fail(f"the canvas does not show the VM's screen: best mean difference {best[0]:.2f}, "
                    f"{best[1]:.2%} of the pixels differ")
    assert lit_share(canvas) > 0.005, "the canvas is blank"
    assert errors == []


async def test_ctrl_alt_del_button_resets_the_guest(outside: Outside, serve: Serve, browser: Any,
                                                    reboot_watch: Any) -> None:
    dom = outside.define("cad", start=True)
    watch = reboot_watch(dom)
    page, errors = await open_console(browser, (await serve.share(dom))[0])
    # SeaBIOS answers Ctrl+Alt+Del with a reset, which libvirt reports as the domain's REBOOT event.
    assert not await watch.wait(1.0), "the guest reset before the button was pressed"
    await page.click("#ctrlaltdel")
    assert await watch.wait(15), "no reset after Ctrl+Alt+Del"
    # The page sends the three keys exactly once (test_console_keys proves it on the wire). SeaBIOS
    # answers with up to three reset attempts (keyboard controller, PCI 0xCF9, triple fault); on a
    # loaded machine QEMU may carry out more than one of them, and libvirt reports each as a REBOOT
    # event (1 to 4 have been seen). What must not happen is a storm: the resets stop.
    assert await watch.quiet(3.0, within=30.0), f"the guest is still resetting ({watch.count} resets)"
    assert await asyncio.to_thread(dom.isActive)
    assert errors == []


async def test_reconnects_when_the_vm_stops_and_starts(outside: Outside, serve: Serve, browser: Any) -> None:
    dom = outside.define("again", start=True)
    page, errors = await open_console(browser, (await serve.share(dom))[0])
    assert await page.evaluate("document.body.dataset.connects") == "1"

    await asyncio.to_thread(dom.destroy)
    await wait_state(page, "disconnected")
    assert "Disconnected" in await page.text_content("#status")
    assert await page.is_visible("#overlay")
    # While the VM is off the page keeps trying, with back-off, and stays in the disconnected loop.
    await asyncio.sleep(3)
    assert await page.evaluate("document.body.dataset.state") in ("disconnected", "connecting")
    assert await page.evaluate("document.body.dataset.connects") == "1"

    await asyncio.to_thread(dom.create)
    await wait_state(page, "connected", connects=2, within_ms=30_000)
    assert await page.is_hidden("#overlay")
    await settled_screen(page, dom)
    mean, _share = compare(await canvas_rgb(page), await vm_screen(page, dom))
    assert mean < 5, "after reconnecting, the canvas is not the VM's screen"
    assert errors == []


async def test_revoked_link_ends_the_console_for_good(outside: Outside, serve: Serve, browser: Any) -> None:
    dom = outside.define("revoke", start=True)
    url, link = await serve.share(dom)
    page, errors = await open_console(browser, url)
    assert await serve.viewers(dom) == 1
    assert f"revoked link {link}" in await serve.revoke(link)
    # The server closes the viewers of a revoked link at once (code 4001): the page stops, it does not retry.
    await wait_state(page, "ended", within_ms=10_000)
    assert "revoked" in await page.text_content("#status")
    await asyncio.sleep(2.5)
    state = await page.evaluate("[document.body.dataset.state, document.body.dataset.connects]")
    assert state == ["ended", "1"]
    assert await serve.viewers(dom) == 0
    # A reload ends on the server's refusal (after its one cookie retry), and so does the link itself.
    await page.reload()
    await page.wait_for_url("**/console/*?retry=1")
    assert "does not work" in await page.text_content("h1")
    assert (await page.goto(url)).status == 403
    assert errors == []


async def test_screen_scales_to_the_window_without_scrollbars(outside: Outside, serve: Serve,
                                                              browser: Any) -> None:
    dom = outside.define("scale", start=True)
    page, errors = await open_console(browser, (await serve.share(dom))[0], width=1280, height=800)
    await until(page, "document.querySelector('#screen canvas').width > 0")
    fb = await page.evaluate("[document.querySelector('#screen canvas').width,"
                             " document.querySelector('#screen canvas').height]")

    for width, height in ((1280, 800), (480, 360), (1600, 600), (800, 1000)):
        await page.set_viewport_size({"width": width, "height": height})
        # noVNC rescales on the animation frame after its container resized: wait for a fit.
        await until(page, """(() => {
                const box = document.getElementById('screen').getBoundingClientRect();
                const canvas = document.querySelector('#screen canvas').getBoundingClientRect();
                return Math.abs(canvas.width - box.width) < 2 || Math.abs(canvas.height - box.height) < 2;
            })()""", 5000, f"the canvas to fit {width}x{height}")
        box, canvas, scroll = await page.evaluate("""() => {
                const r = (e) => {
                    const b = e.getBoundingClientRect();
                    return [b.left, b.top, b.width, b.height];
                };
                const root = document.documentElement;
                return [r(document.getElementById('screen')), r(document.querySelector('#screen canvas')),
                        [root.scrollWidth, root.scrollHeight, innerWidth, innerHeight]];
            }""")
        assert canvas[2] <= box[2] + 1, f"{width}x{height}: canvas wider than the window"
        assert canvas[3] <= box[3] + 1, f"{width}x{height}: canvas taller than the window"
        assert abs(canvas[2] / canvas[3] - fb[0] / fb[1]) < 0.02, f"{width}x{height}: aspect ratio lost"
        assert scroll[0] <= scroll[2], f"{width}x{height}: horizontal scrollbar {scroll}"
        assert scroll[1] <= scroll[3], f"{width}x{height}: vertical scrollbar {scroll}"
    assert errors == []


async def test_the_console_speaks_the_browsers_language(outside: Outside, serve: Serve, browser: Any) -> None:
    dom = outside.define("french", start=True)
    page, errors = await open_console(browser, (await serve.share(dom))[0], locale="fr-FR")
    assert await page.evaluate("document.documentElement.lang") == "fr"
    assert await page.text_content("#status") == "Connecté"
    assert await page.text_content("#ctrlaltdel") == "Ctrl+Alt+Suppr"
    assert await page.get_attribute("#paste-toggle", "title") == (
        "Taper du texte dans la VM, touche par touche (la VM n’a pas de presse-papiers partagé)")
    english, _ = await open_console(browser, (await serve.share(dom))[0])
    assert await english.text_content("#status") == "Connected"
    assert errors == []
