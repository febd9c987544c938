"""What the crash tests share: the checks of a database a killed process wrote to, and a student's
browser on a ``vm-manager serve`` process (plain HTTP, its own cookies) that notes which of its
steps the server answered.
"""

from __future__ import annotations

import html.parser
import http.client
import secrets
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from core.auth.accounts import Accounts
from core.auth.sessions import SessionStore
from core.links.shares import TokenStore
from core.records.audit import AuditLog
from core.records.requests import RequestStore

KEY = secrets.token_urlsafe(32)
"""The SECRET_KEY of the crash tests' programs."""
PASSWORD = "alice-secret-1"


@contextmanager
def checked(path: Path) -> Iterator[sqlite3.Connection]:
    """The database at ``path``, once SQLite says it is whole: ``PRAGMA integrity_check`` is ok and
    no row points at one that is gone (``PRAGMA foreign_key_check``), checked on a plain SQLite
    connection before any store opens it. Then every store opens it as the next program would
    (making the tables a killed program had not made yet) and it is yielded for reading."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        for store in (AuditLog(path), TokenStore(path, ""), SessionStore(path, ""), RequestStore(path),
                      Accounts(path)):
            store.close()
        yield db
    finally:
        db.close()


def audited(db: sqlite3.Connection, action: str, **where: str) -> int:
    """How many audit entries of ``action`` there are (with the columns ``where`` says)."""
    clause = "".join(f" AND {column} = ?" for column in where)
    return int(db.execute(f"SELECT count(*) FROM audit WHERE action = ?{clause}",
                          (action, *where.values())).fetchone()[0])


class _Fields(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "input" and "name" in found:
            self.values.setdefault(found["name"], found.get("value", ""))


@dataclass
class Browser:
    """A student's browser on ``http://127.0.0.1:port``: each step is a request; ``answered``
    holds the steps the server answered with a 2xx or a redirect (what reached the client)."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    answered: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, body, Location); OSError when the server is gone (killed mid-request)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            body = None
            if form is not None:
                body = urllib.parse.urlencode(form)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            for header in response.headers.get_all("Set-Cookie") or []:
                cookie: SimpleCookie = SimpleCookie(header)
                for name, morsel in cookie.items():
                    if morsel.value:
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
            return response.status, text, response.headers.get("Location", "")
        finally:
            connection.close()

    def step(self, name: str, method: str, path: str, form: dict[str, str] | None = None) -> int:
        status, _, _ = self.request(method, path, form)
        if status < 400:
            self.answered.append(name)
        return status

    def fields(self, path: str) -> dict[str, str]:
        status, text, _ = self.request("GET", path)
        assert status == 200, f"{path} answered {status}"
        parser = _Fields()
        parser.feed(text)
        return parser.values

    def sign_in(self, username: str, password: str) -> int:
        csrf = self.fields("/login")["csrf"]
        form = {"csrf": csrf, "username": username, "password": password}
        return self.step("signin", "POST", "/login", form)

    def post(self, name: str, path: str, **form: str) -> int:
        """A portal form, with the CSRF token of the page it is on."""
        return self.step(name, "POST", path, {"csrf": self.fields("/")["csrf"], **form})

    def visit(self, password: str, vm_uuid: str, reason: str) -> None:
        """alice's visit: sign in, open her VM's console, file a request (``reason``), sign out;
        it stops where the server goes away (killed while answering: no answer reached it)."""
        try:
            self.sign_in("alice", password)
            self.post("console", f"/vms/{vm_uuid}/console")
            self.post("request", "/requests", kind="new_vm", reason=reason)
            self.post("signout", "/logout")
        except OSError:
            pass
