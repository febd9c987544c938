"""The few pages the server writes itself: refusals, errors, and the cookie retry.

Plain HTML with no script and no inline style (the CSP allows neither); text is escaped. Titles
and messages are msgids of the catalogue (marked ``N_`` where they are written), shown in the
request's language (:func:`core.web.i18n.of_request`); ``values`` are put in after translating.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from aiohttp import web

from core.text import N_
from core.web import i18n

NO_STORE = {"Cache-Control": "no-store"}


def page(request: web.BaseRequest, status: int, title: str, message: str,
         values: Mapping[str, object] | None = None, *, head: str = "") -> web.Response:
    """A page of the server's own: ``title`` and ``message`` (msgids, ``%(name)s`` filled from
    ``values``) in the request's language."""
    values = values or {}
    lang = i18n.of_request(request)
    shown_title = i18n.gettext(lang, title, **values)
    shown_message = i18n.gettext(lang, message, **values)
    suffix = i18n.gettext(lang, N_("VM Manager"))
    body = (f"<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">{head}"
            f"<title>{html.escape(shown_title)} — {html.escape(suffix)}</title></head>\n"
            f"<body><h1>{html.escape(shown_title)}</h1>\n<p>{html.escape(shown_message)}</p></body></html>\n")
    return web.Response(status=status, text=body, content_type="text/html", headers=NO_STORE)


def refused(request: web.BaseRequest, reason: str = "") -> web.Response:
    """403 for a link or session that does not open this console; says no more than needed."""
    return page(request, 403, N_("This console link does not work"),
                reason or N_("The link is wrong, has expired or was revoked, or its VM no longer exists. "
                             "Ask your teacher for a new one."))


def retry_with_cookie(request: web.BaseRequest, url: str) -> web.Response:
    """A page that loads ``url`` once more, now as a same-site navigation.

    A browser that followed a share link from another site (a mail, a chat) does not send the
    SameSite=Strict session cookie on that navigation, not even after our redirect; a navigation
    this page starts itself is same-site and carries it.
    """
    return page(request, 200, N_("Opening the console…"), N_("If nothing happens, reload this page."),
                head=f"<meta http-equiv=\"refresh\" content=\"0;url={html.escape(url)}\">")


def not_found(request: web.BaseRequest) -> web.Response:
    return page(request, 404, N_("Not found"), N_("There is nothing at this address."))

