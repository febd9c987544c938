"""The log file: every action and error, rotated, with secrets kept out."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings

_SECRET = re.compile(r"(?i)((?:password|passwd|secret|token|key)[\"']?\s*[=:]\s*[\"']?)([^\s\"',;&]+)")


class RedactSecrets(logging.Filter):
    """Masks ``password=…``, ``token: …`` and the like, whatever logged them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_OURS = "vm-manager"  # the name of the handlers this module adds


def setup_logging(settings: Settings, *, stderr: bool = False) -> Path:
    """Send the ``core`` and ``tui`` loggers to the rotated log file (and stderr for the CLI)."""
    path = settings.log_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {path}: {exc.strerror or exc} "
                          "(set VMM_LOG_FILE, or VMM_DATA_DIR, to a place this user can write)") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _OURS]:  # set up again: replaced
        root.removeHandler(existing)
        existing.close()
    handler.set_name(_OURS)
    root.addHandler(handler)
    if stderr:
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.addFilter(RedactSecrets())
        console.set_name(_OURS)
        root.addHandler(console)
    root.setLevel(settings.log_level.upper())
    return path
