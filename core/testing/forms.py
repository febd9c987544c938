"""The forms of an HTML page as a browser reads them (action, method, the inputs' names and values),
to post them back: the portal's tests and the soak's sign-ins."""

from __future__ import annotations

import html.parser
from dataclasses import dataclass, field


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(found.get("action", ""), found.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in found:
            self.forms[-1].fields.setdefault(found["name"], found.get("value", ""))


def forms(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms
