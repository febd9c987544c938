"""A real SMTP server for tests (aiosmtpd on a loopback port) that keeps what it receives.

    with smtp_inbox() as inbox:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=inbox.port, smtp_starttls=False, ...)
        ...
        assert inbox.messages[0]["To"] == "alice@lab.test"
"""

from __future__ import annotations

import contextlib
import email.message
from collections.abc import Iterator

from aiohttp.test_utils import unused_port
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[email.message.Message] = []
        self.port = 0

    def handle_message(self, message: email.message.Message) -> None:
        self.messages.append(message)



@contextlib.contextmanager
def smtp_inbox() -> Iterator[Inbox]:
    inbox = Inbox()
    inbox.port = unused_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
