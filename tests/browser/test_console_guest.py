"""Keys typed in the browser arrive in a real Linux guest as the characters meant.

The guest is the tiny template's kernel with one more initramfs layer: an ``/init`` that reads lines
from the VGA console's terminal (tty1, where the keyboard types) and writes each one, bracketed, to
the serial port, which libvirt logs to a file.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path
from typing import Any

import pytest
from support.consolelab import Serve, open_console, until
from support.livelab import Outside, domain_type

from core.provision.domainbuild import kernel_domain

pytestmark = pytest.mark.integration

ECHO_INIT = b"""#!/bin/sh
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "vmm-keys: ready" >/dev/ttyS0
while :; do
    if IFS= read -r line </dev/tty1; then echo "vmm-keys: [$line]" >/dev/ttyS0; fi
done
"""


def cpio_newc(files: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc): (name, mode, data) entries."""
    out = bytearray()

    def entry(ino: int, name: str, mode: int, data: bytes) -> None:
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out.extend(b"070701" + b"".join(b"%08X" % value for value in fields) + raw)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(files, 1):
        entry(ino, name, mode, data)
    entry(0, "TRAILER!!!", 0, b"")
    return bytes(out)


def boot_echo_guest(outside: Outside, template: Path) -> tuple[Any, Path]:
    """Start the tiny kernel with ECHO_INIT laid over its initramfs; returns the domain and its serial log."""
    directory = outside.shared_dir()
    initrd = directory / "initrd.img"
    # Concatenated archives unpack in order: this /init replaces the template's.
    initrd.write_bytes((template / "initrd.img").read_bytes()
                       + gzip.compress(cpio_newc([("init", 0o100755, ECHO_INIT)])))
    initrd.chmod(0o644)
    log = directory / "serial.log"
    xml = kernel_domain(outside.name("keys"), template / "vmlinuz", initrd, "console=tty0 console=ttyS0",
                        None, log, domain_type=domain_type())
    dom = outside.conn.defineXML(xml)
    outside.uuids.append(dom.UUIDString())
    dom.create()
    return dom, log


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def serial_line(log: Path, line: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(read_log, log)
        if line in text.splitlines():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{line!r} never showed on the guest's serial port; it shows:\n{text[-2000:]}")


async def test_pasted_and_typed_text_reaches_a_linux_guest(outside: Outside, serve: Serve,
                                                           browser: Any, tiny_template: Path) -> None:
    dom, log = boot_echo_guest(outside, tiny_template)
    await serial_line(log, "vmm-keys: ready")
    page, errors = await open_console(browser, (await serve.share(dom))[0])

    # Paste: symbols and capitals need Shift, which the page holds around them.
    text = "Hello, World! ~`@#$%^&*()_+{}|:\"<>? [x] 'q' \\ ; = -/.,\tend"
    await page.click("#paste-toggle")
    await page.fill("#paste-text", f"{text}\nsecond line\n")
    await page.click("#paste-send")
    await serial_line(log, f"vmm-keys: [{text}]")
    await serial_line(log, "vmm-keys: [second line]")
    await until(page, "document.getElementById('paste-note').textContent.startsWith('Typed')")

    # Keys typed with the canvas focused go through noVNC's keyboard handling.
    await page.click("#paste-cancel")
    await page.click("#screen canvas")
    await page.keyboard.type("typed 123")
    await page.keyboard.press("Enter")
    await serial_line(log, "vmm-keys: [typed 123]", within=20)
    assert errors == []
