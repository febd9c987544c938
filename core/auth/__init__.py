"""Who signs in: local accounts, LDAP sign-in and LDAP groups, and the portal's sign-in sessions.

:mod:`accounts` holds local accounts (argon2id); :mod:`signin` decides who someone is (a local
account, else LDAP); :mod:`ldap` makes every LDAP connection (TLS checked) and reads its values;
:mod:`ldapgroups` reads a group's members as a class's students; :mod:`sessions` keeps the
portal's sign-in sessions and the slowed failures; :mod:`standing` says whether a session's
account is still what it signed in as.
"""

from core.auth.accounts import Account, AccountExists, Accounts, Role, check_password
from core.auth.ldap import DirectoryError
from core.auth.ldapgroups import group_members
from core.auth.sessions import DEVICE_TTL, Session, SessionStore, attempt_keys
from core.auth.signin import MAX_PASSWORD, Identity, SigninRefused, authenticate, current_role
from core.auth.standing import ldap_due, ldap_ended, local_ended

__all__ = ["DEVICE_TTL", "MAX_PASSWORD", "Account", "AccountExists", "Accounts",
           "DirectoryError", "Identity", "Role", "Session", "SessionStore", "SigninRefused", "attempt_keys",
           "authenticate", "check_password", "current_role", "group_members", "ldap_due", "ldap_ended",
           "local_ended"]
