"""The server's languages: the .po catalogues, read at start, and which language a request gets.

The catalogues are read from ``core/web/locale/<lang>/LC_MESSAGES/messages.po`` and compiled in
memory (no .mo file in the tree). English is the source language: its catalogue is empty.
A request's language: ``?lang=`` (the switch, kept in a cookie), else the cookie, else the
browser's Accept-Language, else English. The portal's pages, the server's own pages
(``core.web.pages``) and the console's messages (``core.web.console``: its routes, endpoints and
bridge) are translated alike: strings are marked with ``N_`` (or ``_`` in the portal and its
templates) where they are written.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from core.model import VMState
from core.text import N_, printable

if TYPE_CHECKING:
    from aiohttp import web

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "fr")  # the first is the default
LANGUAGE_NAMES = {"en": "English", "fr": "Français"}
COOKIE = "vmm_lang"


def load(locale_dir: Path = LOCALE_DIR) -> dict[str, NullTranslations]:
    """Every language's translations (English: none needed)."""
    found: dict[str, NullTranslations] = {"en": NullTranslations()}
    for lang in LANGUAGES[1:]:
        path = locale_dir / lang / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=lang)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        found[lang] = Translations(compiled)
    return found


@functools.cache
def translations() -> dict[str, NullTranslations]:
    """:func:`load`, once per process."""
    return load()


def of_request(request: web.BaseRequest) -> str:
    """The language a request gets (see the module's docstring)."""
    return choose(request.query.get("lang"), request.cookies.get(COOKIE),
                  request.headers.get("Accept-Language", ""))


def gettext(lang: str, text: str, **values: object) -> str:
    """``text`` in ``lang``, with ``values`` put in (``%(name)s``) after translating, through the one
    rule of :func:`core.text.printable` (a VM's name may hold a bidi override): the server's own
    pages and the console page's status messages show it escaped, as the portal's pages do."""
    translated = translations()[lang].gettext(text)
    return printable(translated % values, multiline=True) if values else translated


STATE_LABELS = {
    VMState.NOSTATE: N_("unknown"), VMState.RUNNING: N_("running"), VMState.BLOCKED: N_("blocked"),
    VMState.PAUSED: N_("paused"), VMState.SHUTDOWN: N_("shutting down"), VMState.SHUTOFF: N_("off"),
    VMState.CRASHED: N_("crashed"), VMState.PMSUSPENDED: N_("suspended"),
}


def from_accept_language(header: str) -> str | None:
    """The first of our languages the browser asks for (``fr-FR,fr;q=0.9,en;q=0.8``), by weight."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and 0 < weight <= 1:
            choices.append((-weight, index, primary))
    return min(choices)[2] if choices else None


def choose(query: str | None, cookie: str | None, accept_language: str) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return str(candidate)
    return from_accept_language(accept_language) or LANGUAGES[0]
