"""The few pages the server writes itself: refusals, errors, and the cookie retry.

Plain HTML with no script and no inline style (the CSP allows neither); text is escaped.
"""

from __future__ import annotations

import html

from aiohttp import web

NO_STORE = {"Cache-Control": "no-store"}


def page(status: int, title: str, message: str, *, head: str = "") -> web.Response:
    body = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">{head}"
            f"<title>{html.escape(title)} — VM Manager</title></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n<p>{html.escape(message)}</p></body></html>\n")
    return web.Response(status=status, text=body, content_type="text/html", headers=NO_STORE)


def refused(reason: str = "") -> web.Response:
    """403 for a link or session that does not open this console; says no more than needed."""
    return page(403, "This console link does not work",
                reason or "The link is wrong, has expired or was revoked, or its VM no longer "
                "exists. Ask your teacher for a new one.")


def retry_with_cookie(url: str) -> web.Response:
    """A page that loads ``url`` once more, now as a same-site navigation.

    A browser that followed a share link from another site (a mail, a chat) does not send the
    SameSite=Strict session cookie on that navigation, not even after our redirect; a navigation
    this page starts itself is same-site and carries it.
    """
    return page(200, "Opening the console…", "If nothing happens, reload this page.",
                head=f"<meta http-equiv=\"refresh\" content=\"0;url={html.escape(url)}\">")


def not_found() -> web.Response:
    return page(404, "Not found", "There is nothing at this address.")
