"""What the console page sends as keys, read off the wire: the stand-in server (consolelab.Harness) parses
the browser's RFB messages on their way to a real VM's VNC.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.consolelab import Harness, Key, open_console, until
from support.livelab import Outside

pytestmark = pytest.mark.integration

# A US keyboard by PC set-1 scancode: (plain, with Shift) -- what a guest reading scancodes types.
US_SCANCODES = {
    0x02: "1!", 0x03: "2@", 0x04: "3#", 0x05: "4$", 0x06: "5%", 0x07: "6^", 0x08: "7&", 0x09: "8*",
    0x0A: "9(", 0x0B: "0)", 0x0C: "-_", 0x0D: "=+", 0x10: "qQ", 0x11: "wW", 0x12: "eE", 0x13: "rR",
    0x14: "tT", 0x15: "yY", 0x16: "uU", 0x17: "iI", 0x18: "oO", 0x19: "pP", 0x1A: "[{", 0x1B: "]}",
    0x1E: "aA", 0x1F: "sS", 0x20: "dD", 0x21: "fF", 0x22: "gG", 0x23: "hH", 0x24: "jJ", 0x25: "kK",
    0x26: "lL", 0x27: ";:", 0x28: "'\"", 0x29: "`~", 0x2B: "\\|", 0x2C: "zZ", 0x2D: "xX", 0x2E: "cC",
    0x2F: "vV", 0x30: "bB", 0x31: "nN", 0x32: "mM", 0x33: ",<", 0x34: ".>", 0x35: "/?", 0x39: "  ",
    0x1C: "\n\n", 0x0F: "\t\t",
}
SHIFT_SCANCODES = {0x2A, 0x36}
XK_SHIFT_L = 0xFFE1


def typed_by_scancodes(keys: list[Key]) -> str:
    """The text a guest with a US layout reads from these key events (QEMU extended key events)."""
    shift = False
    out = []
    for key in keys:
        assert key.scancode is not None, f"keysym {key.keysym:#x} sent without a scancode"
        if key.scancode in SHIFT_SCANCODES:
            shift = key.down
        elif key.down:
            out.append(US_SCANCODES[key.scancode][shift])
    assert not shift, "Shift left held down"
    return "".join(out)


async def test_paste_types_text_as_keystrokes_with_shift(outside: Outside, harness: Harness,
                                                         browser: Any) -> None:
    dom = outside.define("paste", start=True)
    page, errors = await open_console(browser, harness.console_url(dom))
    text = 'echo "Hello, World!" | tr a-z A-Z  # ~`@$%^&*()_+{}|:<>?\r\n\tdone'
    before = len(harness.keys(dom.UUIDString()))

    assert await page.is_hidden("#paste-text")
    await page.click("#paste-toggle")
    await page.fill("#paste-text", text)
    await page.click("#paste-send")
    typed = len(text) - 1  # CR LF is one Enter
    await until(page, f"Number(document.body.dataset.typed) === {typed}", 20_000)
    assert "Typed" in await page.text_content("#paste-note")
    await page.wait_for_timeout(300)  # the last events cross the relay

    keys = harness.keys(dom.UUIDString())[before:]
    # QEMU offers its extended key events: every key goes with its scancode, Shift included, so the
    # guest sees the characters whatever keymap QEMU was given.
    assert typed_by_scancodes(keys) == text.replace("\r\n", "\n")
    # Each press also names its character (keysym) for servers that map keysyms themselves.
    downs = [k.keysym for k in keys if k.down and k.keysym != XK_SHIFT_L]
    assert downs[:7] == [ord(c) for c in 'echo "H']
    assert downs[-6:] == [0xFF0D, 0xFF09, *map(ord, "done")]  # Return, Tab
    # Every press is released, and Shift is held only around the characters that need it.
    assert sum(k.down for k in keys) == sum(not k.down for k in keys)
    shifted = sum(c.isupper() or c in '~!@#$%^&*()_+{}|:"<>?' for c in text)
    assert sum(k.down for k in keys if k.keysym == XK_SHIFT_L) == shifted
    assert errors == []


async def test_ctrl_alt_del_sends_the_three_keys(outside: Outside, harness: Harness, browser: Any) -> None:
    dom = outside.define("cadkeys", start=True)
    page, errors = await open_console(browser, harness.console_url(dom))
    await page.click("#ctrlaltdel")
    await page.wait_for_timeout(300)
    keys = [(k.keysym, k.down) for k in harness.keys(dom.UUIDString())]
    assert keys[-6:] == [(0xFFE3, True), (0xFFE9, True), (0xFFFF, True), (0xFFFF, False), (0xFFE9, False),
                         (0xFFE3, False)]
    assert errors == []
