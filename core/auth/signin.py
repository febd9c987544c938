"""Who signs in: a local account (core.auth.accounts) or an LDAP user, as an :class:`Identity` with a role.

The order: a local account of that name, when one exists, decides (labs without LDAP, a break-glass
operator); otherwise LDAP when LDAP_HOST is set; otherwise the sign-in is refused. For LDAP the bind
account searches LDAP_BASE_DN with LDAP_USER_FILTER (the typed name escaped), exactly one entry must
match, then a connection of its own binds as that entry with the password. The identity is the
entry's own LDAP_UID_ATTRIBUTE value, never what was typed; members of LDAP_OPERATOR_GROUP are
operators. Every refusal says the same thing; the reason goes to the log, never the password, and
never a typed name that names no account (it may be a password typed into the name field): only
an account's own name, when the name found one. :func:`current_role` finds an LDAP user again for
a session that outlasts VMM_LDAP_RECHECK_INTERVAL, by the same search with the name that found
them at sign-in (:attr:`Identity.found_by`): a user the filter no longer finds (moved out of its
scope, e.g. disabled) loses the session, as they could no longer sign in.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidFilterError,
    LDAPNoSuchObjectResult,
    LDAPOperationResult,
    LDAPSizeLimitExceededResult,
)
from ldap3.utils.conv import escape_filter_chars

from core.auth import ldap as ldapconn
from core.auth.accounts import Accounts, Role
from core.auth.ldap import DirectoryError, check_dn, values
from core.errors import ConfigError, InvalidInput, VMManagerError
from core.names import check_username
from core.settings import Settings
from core.text import CONTROL

REFUSED = "wrong username or password"
MAX_PASSWORD = 1024
# What a person may type as a sign-in name: a login or an email address. Filter metacharacters
# (* ( ) \ NUL), spaces and control characters never pass, and the name is escaped anyway.
SIGNIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}")

log = logging.getLogger(__name__)

__all__ = ["DirectoryError", "Identity", "Role", "SigninRefused", "authenticate"]


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    """The entry's own uid (LDAP) or the account's name (local): never what was typed."""
    role: Role
    display_name: str
    """cn (LDAP) or the account's display name; "" when none."""
    email: str | None
    source: str
    """"ldap" or "local"."""
    found_by: str | None = field(default=None, compare=False)
    """LDAP: the name, as typed, that LDAP_USER_FILTER found the entry by (how it is found again)."""


class SigninRefused(VMManagerError):
    """Bad credentials or input; one message whatever the reason (the log has the reason).
    ``account``: the account's own name when the typed name found one (a wrong password), else
    None: for the audit log, which keeps no typed name that names no account."""

    title = "Sign-in refused"

    def __init__(self, message: str = REFUSED, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account


def authenticate(settings: Settings, username: str, password: str) -> Identity:
    """Blocking (the server calls it via asyncio.to_thread). Raises SigninRefused for bad
    credentials or input, DirectoryError (core.auth.ldapgroups) when the LDAP server is unreachable or
    its certificate is refused, ConfigError when the LDAP settings can't be used."""
    name = username.strip()
    if not SIGNIN_NAME.fullmatch(name):
        _refuse("an invalid name", "not a valid sign-in name")
    if not password:  # an empty password is an anonymous bind on many servers: never sent
        _refuse("a name", "empty password")
    if len(password) > MAX_PASSWORD:
        _refuse("a name", "password longer than any we accept")
    identity = _local(settings, name.lower(), password)
    if identity is None and settings.ldap.host:
        identity = _ldap(settings, name, password)
    if identity is None:
        _refuse("an unknown name", "no such local account and no LDAP_HOST")
    log.info("sign-in: %s (%s, %s)", identity.username, identity.source, identity.role.value)
    return identity


def _refuse(who: str, reason: str, account: str | None = None) -> NoReturn:
    """Refuse; the log says ``who`` (how the typed name is described: never the name itself)
    or, when the name found one, the account's own name ``account``."""
    log.info("sign-in refused for %s: %s", repr(account) if account else who, reason)
    raise SigninRefused(account=account)


def _local(settings: Settings, name: str, password: str) -> Identity | None:
    """The identity of a local account ``name``; None when there is none (after the time of one
    password check, when other accounts exist); SigninRefused when it exists and the password is wrong."""
    path = settings.database_path
    if not path.exists():  # no local accounts at all: no name to hide
        return None
    accounts = Accounts(path)
    try:
        exists = accounts.get(name) is not None
        account = accounts.verify(name, password)
    finally:
        accounts.close()
    if account is not None:
        return Identity(account.username, account.role, account.display_name, account.email, "local")
    if exists:
        _refuse("a local account", "wrong password (local account)", name)
    return None


def _ldap(settings: Settings, name: str, password: str) -> Identity:
    base, template = _user_filter(settings)
    group = _operator_group(settings)
    uid_attr = settings.ldap.uid_attribute
    with ldapconn.connect(settings.ldap) as conn:
        entries = _find_user(conn, settings, base, template, name)
        if entries is None:
            _refuse("a name", f"LDAP_USER_FILTER matches more than one entry under {base!r}")
        if len(entries) != 1:
            _refuse("a name", f"{len(entries) or 'no'} LDAP entries match under {base!r}")
        entry = entries[0]
        dn = str(entry["dn"])
        uid = _uid(entry, uid_attr)
        _bind_as(settings, dn, password, uid)
        operator = group is not None and _is_member(conn, group, dn, uid)
    names = values(entry, "cn")
    mails = values(entry, "mail")
    return Identity(uid, Role.OPERATOR if operator else Role.STUDENT,
                    CONTROL.sub("", names[0]).strip() if names else "",
                    mails[0].strip() if mails and not CONTROL.search(mails[0]) else None, "ldap", name)


def current_role(settings: Settings, username: str, found_by: str | None = None) -> Role | None:
    """The role the directory gives ``username`` (an LDAP identity's uid) now, or None when sign-in's
    search, with the name ``found_by`` that found it then (else ``username``), no longer finds
    exactly that one entry (deleted, renamed, out of LDAP_USER_FILTER: its session must end).
    Blocking; DirectoryError when the directory does not answer, ConfigError when the LDAP
    settings can't be used."""
    base, template = _user_filter(settings)
    group = _operator_group(settings)
    uid_attr = settings.ldap.uid_attribute
    with ldapconn.connect(settings.ldap) as conn:
        entries = _find_user(conn, settings, base, template, found_by or username)
        if entries is None or len(entries) != 1 or values(entries[0], uid_attr) != [username]:
            return None  # sign-in would not find this user any more
        operator = group is not None and _is_member(conn, group, str(entries[0]["dn"]), username)
    return Role.OPERATOR if operator else Role.STUDENT


def _user_filter(settings: Settings) -> tuple[str, str]:
    """LDAP_BASE_DN and LDAP_USER_FILTER; ConfigError when unset or the filter has no {username}."""
    base, template = ldapconn.required(settings.ldap, "base_dn", "user_filter")
    if "{username}" not in template:
        raise ConfigError(f"LDAP_USER_FILTER {template!r} has no {{username}} to put the typed name in")
    return base, template


def _find_user(conn: ldap3.Connection, settings: Settings, base: str, template: str,
               name: str) -> list[dict[str, Any]] | None:
    """The entries (two at most) LDAP_USER_FILTER ``template`` finds under ``base`` for ``name``
    (escaped); None when more match than the search may return."""
    query = template.replace("{username}", escape_filter_chars(name))
    return _search(conn, settings, base, query, "LDAP_USER_FILTER", template)


def _search(conn: ldap3.Connection, settings: Settings, base: str, query: str, variable: str,
            value: str) -> list[dict[str, Any]] | None:
    """The entries (two at most) under ``base`` matching ``query``, made from setting ``variable``
    (``value``); None when more match than the search may return."""
    try:
        conn.search(base, query, ldap3.SUBTREE, attributes=[settings.ldap.uid_attribute, "cn", "mail"],
                    size_limit=2)
    except LDAPInvalidFilterError as exc:
        raise ConfigError(f"{variable} {value!r} is not a valid LDAP filter ({exc})") from None
    except LDAPSizeLimitExceededResult:
        return None
    except LDAPNoSuchObjectResult:
        raise ConfigError(f"LDAP_BASE_DN {base!r} does not exist on {settings.ldap.host}") from None
    return [r for r in conn.response or [] if r.get("type") == "searchResEntry"]


def _operator_group(settings: Settings) -> str | None:
    if not settings.ldap.operator_group:
        return None
    try:
        return check_dn(settings.ldap.operator_group, "LDAP_OPERATOR_GROUP")
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def _uid(entry: dict[str, Any], attribute: str) -> str:
    """The entry's one valid username in ``attribute``, or the sign-in is refused."""
    uids = values(entry, attribute)
    if len(uids) != 1:
        log.warning("LDAP entry %r has %s %s values, not one: it can't sign in", entry["dn"],
                    len(uids) or "no", attribute)
        _refuse("a name", f"the entry has {len(uids) or 'no'} {attribute} values")
    try:
        return check_username(uids[0])
    except InvalidInput as exc:
        log.warning("LDAP entry %r can't sign in: %s", entry["dn"], exc.message)
        _refuse("a name", f"the entry's {attribute} is not a valid username")


def _bind_as(settings: Settings, dn: str, password: str, uid: str) -> None:
    """Bind as ``dn`` (the entry of ``uid``) with ``password`` on a connection of its own;
    SigninRefused when refused."""
    conn = ldapconn.open_connection(settings.ldap, dn, password)
    try:
        conn.bind()
    except LDAPOperationResult as exc:
        _refuse("an LDAP user", f"the LDAP server refused the bind as {dn!r} ({exc.description})", uid)
    except LDAPException as exc:
        raise DirectoryError(f"LDAP bind to {settings.ldap.host} failed "
                             f"({ldapconn.scrub(exc, password)})") from None
    except Exception as exc:  # ldap3's decoder on a server that is not LDAP
        raise DirectoryError(f"{settings.ldap.host} does not answer as an LDAP server "
                             f"({type(exc).__name__})") from None
    finally:
        with contextlib.suppress(LDAPException):
            conn.unbind()


def _is_member(conn: ldap3.Connection, group: str, dn: str, uid: str) -> bool:
    """Whether the group lists ``dn`` (member, uniqueMember) or ``uid`` (memberUid); the server
    compares, so DNs match however they are spelled."""
    query = (f"(|(member={escape_filter_chars(dn)})(uniqueMember={escape_filter_chars(dn)})"
             f"(memberUid={escape_filter_chars(uid)}))")
    try:
        conn.search(group, query, ldap3.BASE, attributes=["1.1"])
    except LDAPNoSuchObjectResult:
        log.warning("LDAP_OPERATOR_GROUP %r does not exist (or the bind account may not read it): "
                    "%s signs in as a student", group, uid)
        return False
    return any(r.get("type") == "searchResEntry" for r in conn.response or [])
