import logging
from pathlib import Path

from core.log import setup_logging
from core.settings import Settings


def test_log_file_gets_actions_but_not_secrets(tmp_path: Path) -> None:
    path = setup_logging(Settings(data_dir=tmp_path))
    log = logging.getLogger("core.test")
    log.info("halt done on %s", "net101-alice")
    log.warning("bind failed password=%s token: %s", "hunter2", "abcdef123")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    assert "halt done on net101-alice" in text
    assert "hunter2" not in text
    assert "abcdef123" not in text
    assert "password=***" in text
