"""``vm-manager user add|passwd|del|list``: the local accounts (core.auth).

Passwords are asked twice on the terminal (never echoed), or read from the first line of stdin with
``--password-stdin`` for scripts; never taken as an argument, where ``ps`` would show them.
Exit codes as the rest of the CLI: 0 done; 1 refused (no such account, the name is taken, not
confirmed); 2 bad usage (an invalid name, a short password, no terminal to ask on).

Every change is in the audit log as the other CLI actions are (who: the user behind sudo, from
where: the SSH client or ``local``): ``user-add`` (with the role: granting ``--operator`` shows),
``user-passwd``, ``user-del``, ``ok`` when done and ``failed`` when refused (no such account, the
name is taken). Bad usage changes nothing and is not recorded; a password never is.

``passwd`` and ``del`` end the account's portal sessions, through the database the server shares
(``session-end`` in the audit log), and revoke the console links those sessions opened: through
the server's admin API when one answers, which closes their consoles at once (else the server
closes them at its next check of the links).

core.auth is imported inside the handlers: its face loads ldap3 and argon2 (~40 ms), which no other
command (``vm-manager list`` above all) should wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.errors import InvalidInput, NotFound
from core.names import check_username, recorded_username
from core.records import Actor, Item, record
from core.settings import Settings
from core.text import count, format_time, json_text, printable
from tui.cli.common import EXIT_FAILED, EXIT_OK, Commands, print_table, yes

if TYPE_CHECKING:
    from core.auth import Account, Accounts

Change = Callable[[argparse.Namespace, "Accounts", Settings], int]


def add_parsers(commands: Commands) -> None:
    """Add ``user`` and its sub-commands to the CLI's sub-parsers."""
    user = commands.add_parser("user", help="local accounts: sign-in without LDAP, or a break-glass operator")
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="make a local account (asks the password twice)")
    add.add_argument("username", metavar="NAME", help="lowercase letters, digits, '_', '.', '-'")
    add.add_argument("--operator", action="store_true", help="an operator (default: a student)")
    add.add_argument("--name", dest="display_name", default="", metavar="FULL NAME", help="display name")
    add.add_argument("--email", metavar="E", help="email address")
    _password_stdin(add)
    add.set_defaults(handler=_changing(_add))

    passwd = actions.add_parser("passwd", help="give a local account a new password")
    passwd.add_argument("username", metavar="NAME")
    _password_stdin(passwd)
    passwd.set_defaults(handler=_changing(_passwd))

    delete = actions.add_parser("del", help="delete a local account (asks first)")
    delete.add_argument("username", metavar="NAME")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_changing(_delete))

    listing = actions.add_parser("list", help="list the local accounts")
    listing.add_argument("--json", action="store_true", help="one JSON array of account objects")
    listing.set_defaults(handler=list_accounts)


def _password_stdin(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (for scripts)")


def _changing(change: Change) -> Callable[[argparse.Namespace, Settings], int]:
    """The handler of add, passwd or del: ``change`` on the open accounts; a refusal (no such
    account, the name is taken) is recorded and exits 1. Other errors are main's: exit 2."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from core.auth import AccountExists, Accounts  # ldap3 and argon2: see the module docstring

        try:
            accounts = Accounts(settings.database_path)
            try:
                return change(args, accounts, settings)
            finally:
                accounts.close()
        except (NotFound, AccountExists) as exc:
            why = "exists already" if isinstance(exc, AccountExists) else "no such account"
            _record(settings, args, "failed", f"account {recorded_username(args.username)}: {why}")
            print(f"vm-manager: {printable(exc.message)}", file=sys.stderr)
            return EXIT_FAILED

    return handler


def _record(settings: Settings, args: argparse.Namespace, outcome: str, detail: str) -> None:
    """One audit entry for this ``user`` command (the account's name and the role in the detail)."""
    record(settings.database_path, Actor.local("cli"),
           [Item(f"user-{args.user_command}", outcome=outcome, detail=detail)])


def _add(args: argparse.Namespace, accounts: Accounts, settings: Settings) -> int:
    """The name is checked before a password is asked."""
    from core.auth import AccountExists, Role  # ldap3 and argon2: see the module docstring

    check_username(args.username)
    if accounts.get(args.username) is not None:
        raise AccountExists(f"a local account {args.username!r} exists already")
    role = Role.OPERATOR if args.operator else Role.STUDENT
    account = accounts.add(args.username, _password(args), role=role, display_name=args.display_name,
                           email=args.email)
    _record(settings, args, "ok", f"account {account.username}, role {account.role.value}")
    print(f"{printable(account.username)}: local {account.role.value} account added")
    return EXIT_OK


def _passwd(args: argparse.Namespace, accounts: Accounts, settings: Settings) -> int:
    if accounts.get(args.username) is None:
        raise NotFound(f"no local account {args.username!r}")
    accounts.set_password(args.username, _password(args))
    _record(settings, args, "ok", f"account {args.username}")
    ended = _end_sessions(settings, args.username, "password changed")
    print(f"{printable(args.username)}: password changed{ended}")
    return EXIT_OK


def _delete(args: argparse.Namespace, accounts: Accounts, settings: Settings) -> int:
    gone = accounts.get(args.username)
    if gone is None:
        raise NotFound(f"no local account {args.username!r}")
    if not args.yes and not _confirm(args.username):
        print("nothing done", file=sys.stderr)
        return EXIT_FAILED
    accounts.delete(args.username)
    _record(settings, args, "ok", f"account {gone.username}, role {gone.role.value}")
    ended = _end_sessions(settings, gone.username, "account deleted")
    print(f"{printable(args.username)}: deleted{ended}")
    return EXIT_OK


def _end_sessions(settings: Settings, username: str, why: str) -> str:
    """End the portal sessions of local account ``username`` and revoke the console links they
    opened; what was ended, for the command's message ("" when nothing was)."""
    from core.auth import SessionStore  # ldap3 and argon2: see the module docstring
    from core.links import Consoles

    store = SessionStore(settings.database_path, "")  # ending by name hashes nothing: no key needed
    try:
        ended, links = store.end_user(username, "local")
    finally:
        store.close()
    if not ended:
        return ""
    detail = f"account {username}: {count(ended, 'session')} ({why})"
    record(settings.database_path, Actor.local("cli"), [Item("session-end", outcome="ok", detail=detail)])
    said = f"; {count(ended, 'portal session')} ended"
    if links:
        result = asyncio.run(Consoles(settings, source="cli").revoke(ids=links))
        said += f", {count(len(result.revoked), 'console link')} revoked"
        if result.via_server:
            said += f", {count(result.closed, 'console')} closed"
    return said


def _password(args: argparse.Namespace) -> str:
    """The new password: stdin's first line with --password-stdin, else asked twice on the terminal."""
    from core.auth import check_password  # ldap3 and argon2: see the module docstring

    if args.password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise InvalidInput("no password on stdin")
        return check_password(password)
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask the password on: pass --password-stdin and write it to stdin")
    password = getpass.getpass(f"Password for {printable(args.username)}: ")
    check_password(password)
    if getpass.getpass("Again: ") != password:
        raise InvalidInput("the two passwords differ: nothing changed")
    return password


def _confirm(username: str) -> bool:
    if not sys.stdin.isatty():
        raise InvalidInput("del asks for confirmation: pass --yes when not on a terminal")
    return yes(f"Delete the local account {printable(username)}? [y/N] ")


def list_accounts(args: argparse.Namespace, settings: Settings) -> int:
    from core.auth import Accounts  # ldap3 and argon2: see the module docstring

    # Listing opens no database that is not there: a lab without local accounts stays without a file.
    found: list[Account] = []
    if settings.database_path.exists():
        accounts = Accounts(settings.database_path)
        try:
            found = accounts.list()
        finally:
            accounts.close()
    if args.json:
        print(json_text([{**a.as_json(), "created": format_time(a.created)} for a in found]))
        return EXIT_OK
    if not found:
        print("no local accounts: add one with `vm-manager user add NAME`")
        return EXIT_OK
    print_table(("USERNAME", "ROLE", "NAME", "EMAIL", "CREATED"),
                [(a.username, a.role.value, a.display_name or "—", a.email or "—", format_time(a.created))
                 for a in found])
    return EXIT_OK
