"""Whether a portal session still stands: the account it signed in as is still the same.

A local account's session is checked at every use (one row read): it ends when the account is
gone, has another role, or had its password set since the sign-in (``vm-manager user passwd|del``
also ends the sessions at once, through the database: :meth:`core.auth.SessionStore.end_user`).
An LDAP user's session is checked against the directory once VMM_LDAP_RECHECK_INTERVAL has
passed since its sign-in or its last check: it ends when sign-in's search (LDAP_USER_FILTER,
with the name that found the user then) no longer finds the user, or the role (membership of
LDAP_OPERATOR_GROUP) changed. Each function answers why the session ended, or None.
"""

from __future__ import annotations

from core.auth.accounts import Accounts
from core.auth.sessions import Session
from core.auth.signin import current_role
from core.settings import Settings


def local_ended(accounts: Accounts, session: Session) -> str | None:
    """Why the local account's session ``session`` no longer stands, or None."""
    standing = accounts.standing(session.username)
    if standing is None:
        return "the account was deleted"
    role, password_set = standing
    if role != session.role:
        return f"the account's role is now {role.value}"
    if password_set > session.created:
        return "the account's password was changed"
    return None


def ldap_due(settings: Settings, session: Session, now: float) -> bool:
    """Whether the directory must be asked again about ``session``'s user."""
    return now - (session.checked or session.created) >= settings.ldap.recheck_interval


def ldap_ended(settings: Settings, session: Session) -> str | None:
    """Why the LDAP user's session ``session`` no longer stands, or None. Blocking; raises
    DirectoryError when the directory does not answer (ConfigError: LDAP settings unusable)."""
    role = current_role(settings, session.username, session.found_by)
    if role is None:
        return "the user is no longer in the directory"
    if role != session.role:
        return f"the user's role is now {role.value}"
    return None
