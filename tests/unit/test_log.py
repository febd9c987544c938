"""The log file: what reaches it from any logger, escaped and masked, and who may read it."""

import logging
import logging.handlers
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.log import CONTINUATION, setup_logging
from core.settings import Settings

FORGED = "2026-12-07 15:49:00,000 INFO core.web.app: share link deadbeef opened"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """setup_logging as the CLI calls it; its handler taken off the root logger afterwards."""
    yield setup_logging(Settings(data_dir=tmp_path))
    drop_our_handlers()


def drop_our_handlers() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "vm-manager"]:
        root.removeHandler(handler)
        handler.close()


def written(path: Path) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text()


def ours(path: Path) -> logging.handlers.RotatingFileHandler:
    return next(h for h in logging.getLogger().handlers
                if isinstance(h, logging.handlers.RotatingFileHandler) and h.baseFilename == str(path))


def test_log_file_gets_actions_but_not_secrets(log_file: Path) -> None:
    log = logging.getLogger("core.test")
    log.info("halt done on %s", "net101-alice")
    log.warning("bind failed password=%s token: %s", "hunter2", "abcdef123")
    text = written(log_file)
    assert "halt done on net101-alice" in text
    assert "hunter2" not in text
    assert "abcdef123" not in text
    assert "password=***" in text


def test_a_record_is_one_line_whatever_its_message_holds(log_file: Path) -> None:
    """Control characters from outside, in the arguments or in text a library put together,
    whatever logger: written out, so that no line is forged and no terminal is driven."""
    logging.getLogger("core.web.access").info('%s "GET %s" 404', "127.0.0.1", "/nothing\n" + FORGED)
    hostile = "/esc\x1b[2J/bel\x07/nul\x00/cr\r/csi\x9b/ls\u2028/del\x7f/undecodable\udcff"
    logging.getLogger("aiohttp.server").warning(f"path {hostile}")  # put together before it is logged
    text = written(log_file)
    lines = text.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith('"GET /nothing\\n' + FORGED + '" 404')
    assert lines[1].endswith(r"/esc\x1b[2J/bel\x07/nul\x00/cr\r/csi\x9b/ls\u2028/del\x7f/undecodable\udcff")
    assert not any(c in text for c in "\x1b\x07\x00\r\x9b\u2028\x7f")


def test_a_traceback_keeps_its_lines_but_forges_none(log_file: Path) -> None:
    """A traceback stays readable, line by line; a line break inside its exception's message
    (text from outside) starts a marked continuation, never a line that reads as a record."""
    try:
        raise ValueError(f"bad name 'x\n{FORGED}\x1b[2J'")
    except ValueError:
        logging.getLogger("core.test").exception("provision failed")
    text = written(log_file)
    head, *below = text.splitlines()
    assert head.endswith("ERROR core.test: provision failed")
    assert below[0] == CONTINUATION + "Traceback (most recent call last):"
    assert all(line.startswith(CONTINUATION) for line in below), below
    assert CONTINUATION + FORGED + "\\x1b[2J'" in below
    assert "\x1b" not in text


def test_tokens_are_masked_in_messages_and_tracebacks(log_file: Path) -> None:
    token, cookie = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    log = logging.getLogger("aiohttp.server")
    log.info("opened %s", f"/c/{token}")
    try:
        raise ValueError(f"Invalid header value char:\n\n    b'GET /c/{token[:20]}\\x00 HTTP/1.1'\n"
                         f"    b'Cookie: vmm_console={cookie}'")
    except ValueError:
        log.exception("Error handling request from %s", "127.0.0.1")
    text = written(log_file)
    assert token[:20] not in text
    assert cookie not in text
    assert "opened /c/<redacted>" in text
    assert CONTINUATION + "    b'GET /c/<redacted> HTTP/1.1'" in text
    assert "vmm_console=<redacted>" in text


def test_long_names_in_lower_case_stay_readable(log_file: Path) -> None:
    name = "networking-fundamentals-2026-alice-martin-group-b"  # a VM name may be 63 characters long
    logging.getLogger("core.lifecycle").info("halt done on %s", name)
    assert f"halt done on {name}" in written(log_file)


def test_log_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """0600 when made (here under umask 0), an older 0644 file and its rotated files made 0600,
    and so is every file a rollover makes."""
    path = tmp_path / "vm-manager.log"
    for old in (path, tmp_path / "vm-manager.log.1"):
        old.write_text("before\n")
        old.chmod(0o644)
    umask = os.umask(0)
    try:
        assert setup_logging(Settings(data_dir=tmp_path)) == path
        fresh = setup_logging(Settings(data_dir=tmp_path / "new"))
        logging.getLogger("core.test").warning("written")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
        ours(fresh).doRollover()
        ours(fresh).doRollover()
        logging.getLogger("core.test").warning("after the rollover")
    finally:
        os.umask(umask)
        drop_our_handlers()
    def modes(folder: Path) -> dict[str, int]:
        return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.glob("vm-manager.log*")}

    assert modes(tmp_path) == {"vm-manager.log": 0o600, "vm-manager.log.1": 0o600}
    assert modes(fresh.parent) == dict.fromkeys(["vm-manager.log", "vm-manager.log.1", "vm-manager.log.2"],
                                                0o600)
    assert (fresh.parent / "vm-manager.log.2").read_text().endswith("written\n")
