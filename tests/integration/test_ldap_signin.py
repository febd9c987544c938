"""LDAP sign-in (core.auth.signin) against real slapds of our own (tests/slapd.py), plain, LDAPS and
StartTLS, with certificates from a test CA (tests/tlsca.py).

slapd not starting is a failure, never a skip: the packages are part of the setup.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port
from support.slapd import (
    GROUPS,
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    Entry,
    Slapd,
    group_of_names,
    lab_entries,
    person,
    posix_group,
)
from support.tlsca import TestCA

from core.auth import ldap as ldapconn
from core.auth.ldap import DirectoryError
from core.auth.ldapgroups import group_members
from core.auth.signin import REFUSED, Identity, Role, SigninRefused, authenticate, current_role
from core.errors import ConfigError
from core.settings import LdapSettings, Settings

pytestmark = pytest.mark.integration

ALICE = Identity("alice", Role.STUDENT, "Alice Liddell", "alice@lab.test", "ldap")
TEACHERS = f"cn=teachers,{GROUPS}"


def entries() -> list[Entry]:
    base = lab_entries()
    next(e for e in base if e.dn == f"uid=alice,{PEOPLE}").attrs["mail"] = ["alice@lab.test"]
    return [
        *base,
        person("dan", "Dan Twin", "dan-Pa55", sn=["Twin"]),
        person("dora", "Dora Twin", "dora-Pa55", sn=["Twin"]),
        person("tim", "Tim Trip", "tim-Pa55", sn=["Trip"]),
        person("tom", "Tom Trip", "tom-Pa55", sn=["Trip"]),
        person("tess", "Tess Trip", "tess-Pa55", sn=["Trip"]),
        person("Mallory", "Mallory Upper", "mallory-Pa55"),
        # carol, with her DN spelled otherwise: the server compares DNs, not strings
        group_of_names("teachers", ["UID=Carol, OU=People,DC=lab,DC=test"]),
        Entry(f"cn=staff,{GROUPS}", {"objectClass": ["groupOfUniqueNames"], "cn": ["staff"],
                                     "uniqueMember": [f"uid=bob,{PEOPLE}"]}),
        posix_group("admins", 5010, ["alice"]),
    ]



def with_ldap(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with other LDAP settings."""
    return dataclasses.replace(settings, ldap=dataclasses.replace(settings.ldap, **changes))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    # stats: every connection and operation in the log, to prove what never reached the server;
    # bind_anon_dn: a DN with an empty password binds (anonymously) here, as on many servers.
    with Slapd(tmp_path_factory.mktemp("slapd"), entries(), loglevel="stats",
               config="allow bind_anon_dn") as running:
        yield running


@pytest.fixture
def settings(server: Slapd, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        ldap=LdapSettings(
            host=server.url, base_dn=SUFFIX, bind_user_dn=SERVICE_DN, bind_user_password=SERVICE_PASSWORD
        ),
    )


def test_alice_signs_in(settings: Settings) -> None:
    assert authenticate(settings, "alice", PASSWORDS["alice"]) == ALICE


@pytest.mark.parametrize("typed", ["ALICE", "  alice ", "Alice\t"])
def test_the_identity_is_the_entrys_uid_not_what_was_typed(settings: Settings, typed: str) -> None:
    assert authenticate(settings, typed, PASSWORDS["alice"]) == ALICE


def test_a_user_is_found_again_by_the_name_that_found_them(settings: Settings) -> None:
    """What a session's re-read asks: sign-in's own search (LDAP_USER_FILTER, here by mail), with
    the name typed then, must find that very user again."""
    by_mail = with_ldap(settings, user_filter="(&(objectClass=inetOrgPerson)(mail={username}))")
    identity = authenticate(by_mail, " alice@lab.test", PASSWORDS["alice"])
    assert identity == ALICE
    assert identity.found_by == "alice@lab.test"
    assert current_role(by_mail, "alice", identity.found_by) is Role.STUDENT
    assert current_role(by_mail, "alice") is None  # this filter finds nobody by the uid alone
    assert current_role(by_mail, "bob", identity.found_by) is None  # the entry found is not bob's
    assert current_role(settings, "alice") is Role.STUDENT  # the default filter: by the uid


def test_a_wrong_password_and_an_unknown_user_get_the_same_refusal(settings: Settings) -> None:
    with pytest.raises(SigninRefused) as wrong:
        authenticate(settings, "alice", PASSWORDS["bob"])
    with pytest.raises(SigninRefused) as unknown:
        authenticate(settings, "zoe", PASSWORDS["alice"])
    assert wrong.value.message == unknown.value.message == REFUSED
    assert wrong.value.title == "Sign-in refused"


def test_a_password_of_spaces_is_checked_by_the_server(settings: Settings) -> None:
    with pytest.raises(SigninRefused):
        authenticate(settings, "alice", " ")


def test_an_empty_password_is_refused_without_any_bind(server: Slapd, settings: Settings) -> None:
    # On this server a DN with an empty password binds (anonymously): sent, it would let alice in.
    probe = subprocess.run(["ldapwhoami", "-x", "-H", server.url, "-D", f"uid=alice,{PEOPLE}", "-w", ""],
                           capture_output=True, text=True, check=False, timeout=30)
    assert (probe.returncode, probe.stdout.strip()) == (0, "anonymous"), probe.stderr
    before = server.seen()
    with pytest.raises(SigninRefused) as info:
        authenticate(settings, "alice", "")
    assert info.value.message == REFUSED
    authenticate(settings, "bob", PASSWORDS["bob"])  # two connections: the search, the bind
    assert server.settle(before + 2) == before + 2


HOSTILE = ["*", ")(", "\\", "\0", "alice*", "*)(uid=*", "alice)(|(uid=*", "al\\2aice", "alice\0",
           "al\nice", "al ice", "alice\x7f", "(uid=alice)", "a" * 200, "", "   "]


def test_names_with_filter_characters_never_reach_the_server(server: Slapd, settings: Settings) -> None:
    before = server.seen()
    for typed in HOSTILE:
        with pytest.raises(SigninRefused) as info:
            authenticate(settings, typed, PASSWORDS["alice"])
        assert info.value.message == REFUSED, typed
    authenticate(settings, "bob", PASSWORDS["bob"])
    assert server.settle(before + 2) == before + 2
    assert "(uid=\\2a" not in server.log()


def test_a_filter_matching_two_entries_is_refused(settings: Settings) -> None:
    by_sn = with_ldap(settings, user_filter="(&(objectClass=inetOrgPerson)(sn={username}))")
    for typed in ("Twin", "Trip"):  # two entries; three (over the size limit of the search)
        with pytest.raises(SigninRefused):
            authenticate(by_sn, typed, "dan-Pa55")
    assert authenticate(by_sn, "Liddell", PASSWORDS["alice"]).username == "alice"


def test_an_entry_whose_uid_is_not_a_valid_username_is_refused(settings: Settings,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SigninRefused):
        authenticate(settings, "mallory", "mallory-Pa55")
    assert "invalid username 'Mallory'" in caplog.text


@pytest.mark.parametrize(("group", "operators"), [
    (TEACHERS, {"carol"}),                   # groupOfNames, member DN spelled in capitals
    (f"cn=staff,{GROUPS}", {"bob"}),         # groupOfUniqueNames
    (f"cn=admins,{GROUPS}", {"alice"}),      # posixGroup memberUid
    (f"cn=info1,{GROUPS}", {"alice", "bob"}),
])
def test_operators_are_the_members_of_the_operator_group(settings: Settings, group: str,
                                                         operators: set[str]) -> None:
    with_group = with_ldap(settings, operator_group=group)
    roles = {name: authenticate(with_group, name, PASSWORDS[name]).role for name in PASSWORDS}
    assert {name for name, role in roles.items() if role is Role.OPERATOR} == operators
    assert all(role is Role.STUDENT for name, role in roles.items() if name not in operators)


def test_without_an_operator_group_everyone_is_a_student(settings: Settings) -> None:
    assert authenticate(settings, "carol", PASSWORDS["carol"]).role is Role.STUDENT


def test_a_missing_operator_group_makes_students_and_says_so(settings: Settings,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    missing = with_ldap(settings, operator_group=f"cn=nobody,{GROUPS}")
    assert authenticate(missing, "carol", PASSWORDS["carol"]).role is Role.STUDENT
    assert "does not exist" in caplog.text


def test_a_local_account_of_the_same_name_decides(settings: Settings) -> None:
    from core.auth.accounts import Accounts

    store = Accounts(settings.database_path)
    store.add("alice", "local-alice-pass", role=Role.OPERATOR)
    store.close()
    assert authenticate(settings, "alice", "local-alice-pass").source == "local"
    with pytest.raises(SigninRefused):  # no fallback to LDAP once a local account answered
        authenticate(settings, "alice", PASSWORDS["alice"])
    assert authenticate(settings, "bob", PASSWORDS["bob"]).source == "ldap"


@pytest.mark.parametrize(("change", "variable"), [
    ({"user_filter": "(uid=alice)"}, "LDAP_USER_FILTER"),
    ({"user_filter": "(uid={username}"}, "LDAP_USER_FILTER"),
    ({"base_dn": None}, "LDAP_BASE_DN"),
    ({"operator_group": "not a dn"}, "LDAP_OPERATOR_GROUP"),
    ({"starttls": True, "host": "ldaps://127.0.0.1:1"}, "LDAP_STARTTLS"),
    ({"ca_file": Path("/nonexistent/ca.pem")}, "LDAP_CA_FILE"),
])
def test_unusable_settings_are_config_errors(settings: Settings, change: dict[str, object],
                                             variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        authenticate(with_ldap(settings, **change), "alice", PASSWORDS["alice"])


def test_an_unreachable_server_is_a_directory_error(settings: Settings) -> None:
    url = f"ldap://127.0.0.1:{unused_port()}"
    with pytest.raises(DirectoryError, match="cannot reach the LDAP server") as info:
        authenticate(
            with_ldap(settings, host=url),
            "alice",
            PASSWORDS["alice"],
        )
    assert url in info.value.message


def test_a_server_that_never_answers_times_out(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ldapconn, "RECEIVE_TIMEOUT", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    thread = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    thread.start()
    began = time.monotonic()
    try:
        with pytest.raises(DirectoryError):
            authenticate(with_ldap(settings, host=f"ldap://127.0.0.1:{listener.getsockname()[1]}"),
                         "alice", PASSWORDS["alice"])
    finally:
        listener.close()
        thread.join(5)
        for sock in held:
            sock.close()
    assert time.monotonic() - began < 5


def test_a_refused_service_account_is_a_directory_error(settings: Settings) -> None:
    wrong = with_ldap(settings, bind_user_password="not-the-service-S3cret")
    with pytest.raises(DirectoryError, match="refused the bind") as info:
        authenticate(wrong, "alice", PASSWORDS["alice"])
    assert "not-the-service-S3cret" not in info.value.message


def test_secrets_stay_out_of_logs_reprs_and_errors(settings: Settings, server: Slapd,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [repr(settings), str(settings)]
    seen.append(repr(authenticate(settings, "alice", PASSWORDS["alice"])))
    for user, password in (("alice", PASSWORDS["bob"]), ("zoe", PASSWORDS["carol"]), ("alice", "")):
        with pytest.raises(SigninRefused) as refused:
            authenticate(settings, user, password)
        seen += [repr(refused.value), str(refused.value)]
    for broken in (with_ldap(settings, bind_user_dn=f"uid=alice,{PEOPLE}"),
                   with_ldap(settings, host=f"ldap://127.0.0.1:{unused_port()}")):
        with pytest.raises(DirectoryError) as failed:
            authenticate(broken, "bob", PASSWORDS["bob"])
        seen += [repr(failed.value), str(failed.value), repr(failed.value.__cause__)]
    assert "sign-in: alice (ldap, student)" in caplog.text
    assert "sign-in refused for 'alice'" in caplog.text  # an account's own name: it found one
    assert "zoe" not in caplog.text  # a typed name that found no account is no one's to log
    text = caplog.text + "\n".join(seen)
    for secret in (SERVICE_PASSWORD, *PASSWORDS.values()):
        assert secret not in text


def test_a_name_that_fails_the_check_stays_out_of_the_log(settings: Settings,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A password typed into the name field is refused without being written anywhere: neither
    one that is not a sign-in name (spaces, symbols) nor one that is but finds no entry (it may be
    a password too); the name of an entry that refused the password is logged, so that refusals
    can be followed."""
    caplog.set_level(logging.DEBUG)
    typed = ["Tr0ub4dor&3 horse", "p@ss word!", "*)(uid=*", "al\\ice\0", "x" * 200]
    for name in typed:
        with pytest.raises(SigninRefused):
            authenticate(settings, name, PASSWORDS["alice"])
    with pytest.raises(SigninRefused):
        authenticate(settings, "Hunter2-horse", PASSWORDS["alice"])
    with pytest.raises(SigninRefused) as refused:
        authenticate(settings, "ALICE", PASSWORDS["bob"])
    assert refused.value.account == "alice"  # the entry's own name, for the audit log
    assert caplog.text.count("sign-in refused for an invalid name") == len(typed)
    assert "sign-in refused for a name: no LDAP entries match" in caplog.text
    assert "Hunter2" not in caplog.text
    assert "sign-in refused for 'alice'" in caplog.text
    for name in typed:
        assert name not in caplog.text
        assert repr(name)[1:-1] not in caplog.text
    assert "Tr0ub4dor" not in caplog.text
    assert PASSWORDS["alice"] not in caplog.text


# -- TLS --
@dataclasses.dataclass
class TlsLab:
    ca: TestCA
    other: TestCA
    server: Slapd
    misnamed: Slapd  # its certificate, from the right CA, names another host


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsLab]:
    work = tmp_path_factory.mktemp("tls")
    ca = TestCA.make(work / "ca")
    other = TestCA.make(work / "other", "Another test CA")
    good = ca.issue(work / "good")  # 127.0.0.1 and localhost
    wrong_name = ca.issue(work / "misnamed", dns=["ldap.elsewhere.test"], ips=[])
    with Slapd(work / "slapd", entries(), tls=(good.cert, good.key), loglevel="stats") as server, \
            Slapd(work / "misnamed-slapd", entries(), tls=(wrong_name.cert, wrong_name.key)) as misnamed:
        yield TlsLab(ca, other, server, misnamed)


def tls_settings(host: str, ca_file: Path | None, *, starttls: bool = False) -> Settings:
    return Settings(
        data_dir=Path("/nonexistent/vmm-data"),
        ldap=LdapSettings(
            host=host,
            base_dn=SUFFIX,
            bind_user_dn=SERVICE_DN,
            bind_user_password=SERVICE_PASSWORD,
            ca_file=ca_file,
            starttls=starttls,
            operator_group=TEACHERS,
        ),
    )


def test_ldaps_with_the_servers_ca(tls: TlsLab) -> None:
    settings = tls_settings(tls.server.ldaps_url, tls.ca.cert)
    assert authenticate(settings, "alice", PASSWORDS["alice"]) == ALICE
    assert authenticate(settings, "carol", PASSWORDS["carol"]).role is Role.OPERATOR
    with pytest.raises(SigninRefused):
        authenticate(settings, "alice", PASSWORDS["bob"])
    localhost = tls_settings(tls.server.ldaps_url.replace("127.0.0.1", "localhost"), tls.ca.cert)
    assert authenticate(localhost, "bob", PASSWORDS["bob"]).username == "bob"


def test_group_members_use_the_same_tls_settings(tls: TlsLab) -> None:
    good = tls_settings(tls.server.ldaps_url, tls.ca.cert)
    assert [s.username for s in group_members(good, f"cn=info1,{GROUPS}")] == ["alice", "bob"]
    with pytest.raises(DirectoryError, match="certificate"):
        group_members(tls_settings(tls.server.ldaps_url, tls.other.cert), f"cn=info1,{GROUPS}")


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_a_certificate_from_another_ca_is_refused(tls: TlsLab, starttls: bool) -> None:
    url = tls.server.url if starttls else tls.server.ldaps_url
    for ca_file, where in ((tls.other.cert, f"LDAP_CA_FILE {tls.other.cert}"), (None, "the system's CAs")):
        with pytest.raises(DirectoryError) as info:
            authenticate(tls_settings(url, ca_file, starttls=starttls), "alice", PASSWORDS["alice"])
        message = info.value.message
        assert "certificate" in message
        assert "was refused" in message
        assert where in message
        assert url in message
        assert SERVICE_PASSWORD not in message


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_a_certificate_for_another_host_is_refused(tls: TlsLab, starttls: bool) -> None:
    url = tls.misnamed.url if starttls else tls.misnamed.ldaps_url
    with pytest.raises(DirectoryError, match="not made out to that host name"):
        authenticate(tls_settings(url, tls.ca.cert, starttls=starttls), "alice", PASSWORDS["alice"])


def test_starttls_with_the_servers_ca(tls: TlsLab) -> None:
    settings = tls_settings(tls.server.url, tls.ca.cert, starttls=True)
    before = tls.server.seen(" STARTTLS")
    assert authenticate(settings, "alice", PASSWORDS["alice"]) == ALICE
    # the search and the bind, both over TLS
    assert tls.server.settle(before + 2, " STARTTLS") == before + 2


def test_starttls_on_a_server_without_tls_is_a_directory_error(server: Slapd) -> None:
    settings = tls_settings(server.url, None, starttls=True)
    with pytest.raises(DirectoryError, match="StartTLS"):
        authenticate(settings, "alice", PASSWORDS["alice"])
