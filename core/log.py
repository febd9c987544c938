"""The log file: every action and error, rotated, private (0600), with secrets kept out and nothing
from outside able to forge a line or drive a terminal.

What goes through the root handler, whatever logger wrote it (ours, ``aiohttp.server``,
``asyncio``…), is formatted by :class:`LogFormatter`: secrets and tokens masked (:func:`redact`),
the message kept on the record's one line with its control characters escaped, and a traceback on
the lines below, each begun with ``| ``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import re
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings
from core.text import printable

_SECRET = re.compile(r"(?i)((?:password|passwd|secret|token|key)[\"']?[ \t]*[=:][ \t]*[\"']?)([^\s\"',;&]+)")
"""``password=…``, ``token: …`` and the like, on one line (an error message's ``token:`` at the end
of a line does not take the next line's first word)."""
_SHARE_LINK = re.compile(r"/c/[^/\s\"']*")
"""A share link's path, whatever follows ``/c/`` (a token cut short in an error message too)."""
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z_])[A-Za-z0-9_-]{40,}")
"""A share token, a session or console cookie (43 URL-safe characters), a generated SECRET_KEY (64):
40 or more of those characters, an upper-case letter or ``_`` among them (a random token lacks
both once in 10^10), so that VM names (up to 63 characters) and Python's names, written in lower
case, stay readable."""

CONTINUATION = "| "
"""What begins every line of a record after its first (its traceback): no record starts so."""


def redact(text: str) -> str:
    """``text`` with ``password=…``-like values, share-link paths and token-like strings masked."""
    text = _SECRET.sub(r"\1***", text)
    return _TOKEN_LIKE.sub("<redacted>", _SHARE_LINK.sub("/c/<redacted>", text))


class LogFormatter(logging.Formatter):
    """A record in one line, then its traceback, each of whose lines begins with :data:`CONTINUATION`.

    Outside values reach a record in two places: its message (arguments, or text a library put
    together) and its exception's text (``str(exc)``, which may hold the line of a malformed
    request). Neither can be told apart from the rest once interpolated, so the rule is by
    place: the message is one line, all its control characters escaped (a ``%0a`` in a path
    shows as ``\\n``); the traceback keeps its own line breaks, every other control character is
    escaped, and each of its lines is marked as a continuation, so that a line break inside an
    exception's message cannot start a line that reads as a record. Masking comes after the
    escaping (a token has no control character, so it stays whole; a secret after a line break
    in a message is on the same line by then). The record is not changed, so other handlers see
    it as it was.
    """

    def format(self, record: logging.LogRecord) -> str:
        record.message = redact(printable(record.getMessage()))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        below = []
        if record.exc_info:
            below.append(self.formatException(record.exc_info))
        elif record.exc_text:
            below.append(record.exc_text)
        if record.stack_info:
            below.append(self.formatStack(record.stack_info))
        for block in below:
            for line in redact(printable(block, multiline=True)).split("\n"):
                text += "\n" + CONTINUATION + line
        return text


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose file is 0600 whoever opens it and whatever the umask: made so
    when created (at the start and at each rollover; the rotated files are renames of it), and
    an existing file of this user set to 0600 when opened."""

    def _open(self) -> io.TextIOWrapper:  # logging's hook: called to open the file, at each rollover too
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with contextlib.suppress(OSError):  # another user's file, which this one may write to: as it is
            os.fchmod(fd, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def make_backups_private(self) -> None:
        """The rotated files written before this version, under the umask: 0600 as well."""
        for number in range(1, self.backupCount + 1):
            with contextlib.suppress(OSError):
                os.chmod(self.rotation_filename(f"{self.baseFilename}.{number}"), 0o600)


_OURS = "vm-manager"  # the name of the handlers this module adds
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: Settings) -> Path:
    """Send every logger's records to the rotated log file."""
    path = settings.log_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = PrivateRotatingFileHandler(path, maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}: {exc.strerror or exc} "
                          "(set VMM_LOG_FILE, or VMM_DATA_DIR, to a place this user can write)") from None
    handler.make_backups_private()
    handler.setFormatter(LogFormatter(_FORMAT))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _OURS]:  # set up again: replaced
        root.removeHandler(existing)
        existing.close()
    handler.set_name(_OURS)
    root.addHandler(handler)
    root.setLevel(settings.log_level.strip().upper())
    return path
