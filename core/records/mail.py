"""Mail about resource requests: to the operators when one is made, to the student when it is answered.

Sent with the standard library's smtplib off the event loop; nothing is sent without SMTP_HOST.
smtplib and email are imported by the send itself: every start-up imports this module, few send.
A failed send is logged and never fails the action that caused it (the request is stored either way).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from core.records.requests import Request, Status
from core.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 10.0


def _addresses(text: str | None) -> list[str]:
    return [a.strip() for a in (text or "").split(",") if a.strip()]


def send(settings: Settings, to: list[str], subject: str, body: str) -> bool:
    """Blocking. True when the server took the message; False when SMTP is not set up or it failed."""
    if not settings.smtp.host or not to:
        return False
    import smtplib
    from email.message import EmailMessage
    from email.utils import make_msgid

    message = EmailMessage()
    message["From"] = settings.smtp.sender or f"vm-manager@{settings.smtp.host}"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="vm-manager")
    message.set_content(body)
    try:
        with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=TIMEOUT) as smtp:
            if settings.smtp.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp.user:
                smtp.login(settings.smtp.user, settings.smtp.password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail %r to %s not sent: %s", subject, ", ".join(to), exc)
        return False
    log.info("mail %r sent to %s", subject, ", ".join(to))
    return True


def new_request_message(request: Request) -> tuple[str, str]:
    subject = f"[VM Manager] request #{request.id} from {request.username}: {request.summary()}"
    body = (f"{request.username} asks for {request.summary()}.\n\nReason: {request.reason}\n\n"
            "Answer it in the VM Manager TUI (requests view).\n")
    return subject, body


def answer_message(request: Request) -> tuple[str, str]:
    verdict = "approved" if request.status is Status.APPROVED else "rejected"
    subject = f"[VM Manager] your request #{request.id} was {verdict}"
    lines = [f"Your request for {request.summary()} was {verdict} by {request.answered_by}."]
    if request.answer:
        lines.append(f"\nTheir word: {request.answer}")
    if request.status is Status.APPROVED and request.vm_name:
        lines.append("\nThe change takes effect the next time the VM starts: halt it, then start it.")
    return subject, "\n".join(lines) + "\n"


async def notify_new_request(settings: Settings, request: Request) -> None:
    """Tell the operators (VMM_OPERATOR_EMAIL); a no-op without SMTP_HOST."""
    subject, body = new_request_message(request)
    await asyncio.to_thread(send, settings, _addresses(settings.smtp.operator_email), subject, body)


async def notify_answer(settings: Settings, request: Request) -> None:
    """Tell the student who asked (the address they had when they asked)."""
    subject, body = answer_message(request)
    await asyncio.to_thread(send, settings, _addresses(request.email), subject, body)
