"""Helpers of the portal tests: a browser that signs in, reads the forms of a page and posts them."""

from __future__ import annotations

from dataclasses import dataclass
from http.cookies import Morsel

from core.auth.accounts import Accounts
from core.auth.signin import Role
from core.records.audit import AuditLog, Entry
from core.settings import Settings
from core.testing.forms import Form, forms
from support.webtest import Console

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "olga": "olga-secret-333"}


def add_accounts(settings: Settings) -> None:
    """alice and bob (students) and olga (an operator), as ``vm-manager user add`` makes them."""
    accounts = Accounts(settings.database_path)
    try:
        accounts.add("alice", PASSWORDS["alice"], display_name="Alice Martin", email="alice@example.org")
        accounts.add("bob", PASSWORDS["bob"], display_name="Bob")
        accounts.add("olga", PASSWORDS["olga"], role=Role.OPERATOR, display_name="Olga")
    finally:
        accounts.close()


def audit_entries(settings: Settings, **query: str) -> list[Entry]:
    log = AuditLog(settings.database_path)
    try:
        return log.entries(**query)  # type: ignore[arg-type]
    finally:
        log.close()


@dataclass
class Page:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def form(self, action: str) -> Form:
        found = [f for f in forms(self.text) if f.action == action]
        assert found, f"no form posting to {action} on the page ({self.status})"
        return found[0]

    @property
    def csrf(self) -> str:
        tokens = {f.fields.get("csrf") for f in forms(self.text) if f.method == "post"}
        assert len(tokens) == 1, f"expected one CSRF token on the page, found {tokens}"
        return str(tokens.pop())


class Student:
    """One browser on the portal (its own cookie jar), optionally from a given client address."""

    def __init__(self, server: Console, address: str | None = None, language: str | None = None) -> None:
        self.server = server
        self.browser = server.browser()
        self.headers: dict[str, str] = {}
        if address:
            self.headers["X-Forwarded-For"] = address
        if language:
            self.headers["Accept-Language"] = language

    def cookie(self, name: str) -> Morsel[str] | None:
        return next((c for c in self.browser.cookie_jar if c.key == name), None)

    async def get(self, path: str, **headers: str) -> Page:
        async with self.browser.get(self.server.base + path, allow_redirects=False,
                                    headers={**self.headers, **headers}) as response:
            return Page(response.status, await response.text(), dict(response.headers))

    async def post(self, path: str, data: dict[str, str]) -> Page:
        async with self.browser.post(self.server.base + path, data=data, allow_redirects=False,
                                     headers=self.headers) as response:
            return Page(response.status, await response.text(), dict(response.headers))

    async def sign_in(self, username: str, password: str | None = None) -> Page:
        """Load the sign-in form and post it (its CSRF token included)."""
        form = (await self.get("/login")).form("/login")
        return await self.post("/login", {"csrf": form.fields["csrf"], "username": username,
                                          "password": PASSWORDS.get(username, "x") if password is None
                                          else password})

    async def csrf(self) -> str:
        page = await self.get("/")
        assert page.status == 200, f"/ answered {page.status}"
        return page.csrf

    async def submit(self, path: str, **data: str) -> Page:
        """Post a portal form with this session's CSRF token."""
        return await self.post(path, {"csrf": await self.csrf(), **data})
