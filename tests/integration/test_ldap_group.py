"""Members of LDAP groups, read from a real slapd of our own (tests/slapd.py).

slapd not starting is a failure, never a skip: the packages are part of the setup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
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

from core.auth import ldap as ldapconn
from core.auth.ldap import DirectoryError, check_dn
from core.auth.ldapgroups import group_members
from core.errors import ConfigError, InvalidInput, NotFound
from core.model import Student
from core.settings import LdapSettings, Settings

pytestmark = pytest.mark.integration

ALICE = Student("alice", "Alice Liddell")
BOB = Student("bob", "Bob Builder")
CAROL = Student("carol", "Carol Danvers")
ODD_GROUP = r"cn=a*)(b\5c,ou=groups,dc=lab,dc=test"  # cn "a*)(b\": filter characters, a backslash


def entries() -> list[Entry]:
    """The standard lab plus the awkward cases."""
    return [
        *lab_entries(),
        person("Mallory", "Mallory Upper"),
        person("dave", "Dave\nTwo Lines"),
        Entry(f"cn=nouid,{PEOPLE}", {"objectClass": ["organizationalRole"], "cn": ["nouid"]}),
        Entry(f"cn=info3,{GROUPS}", {"objectClass": ["groupOfUniqueNames"], "cn": ["info3"],
                                     "uniqueMember": [f"uid=alice,{PEOPLE}#'0101'B", f"uid=carol,{PEOPLE}"]}),
        group_of_names("a*)(b\\", [f"uid=carol,{PEOPLE}"], rdn=r"cn=a*)(b\5c"),
        group_of_names("bad", [f"uid=alice,{PEOPLE}", f"uid=Mallory,{PEOPLE}", f"uid=ghost,{PEOPLE}",
                               f"uid=dave,{PEOPLE}", f"cn=nouid,{PEOPLE}"]),
        posix_group("badposix", 5003, ["bob", "*)(uid=*", "ghost"]),
        posix_group("empty", 5004, []),
    ]



def with_ldap(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with other LDAP settings."""
    return dataclasses.replace(settings, ldap=dataclasses.replace(settings.ldap, **changes))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with Slapd(tmp_path_factory.mktemp("slapd"), entries()) as running:
        yield running


@pytest.fixture
def settings(server: Slapd) -> Settings:
    return Settings(
        ldap=LdapSettings(
            host=server.url, base_dn=SUFFIX, bind_user_dn=SERVICE_DN, bind_user_password=SERVICE_PASSWORD
        )
    )


def test_members_of_a_group_of_names(settings: Settings) -> None:
    assert group_members(settings, f"cn=info1,{GROUPS}") == [ALICE, BOB]


def test_members_of_a_posix_group(settings: Settings) -> None:
    assert group_members(settings, f" cn=info2,{GROUPS} ") == [BOB, CAROL]


def test_members_of_a_group_of_unique_names(settings: Settings) -> None:
    assert group_members(settings, f"cn=info3,{GROUPS}") == [ALICE, CAROL]


def test_an_empty_group_has_no_members(settings: Settings) -> None:
    assert group_members(settings, f"cn=empty,{GROUPS}") == []


def test_a_group_whose_name_holds_filter_characters(settings: Settings) -> None:
    assert group_members(settings, ODD_GROUP) == [CAROL]


@pytest.mark.parametrize("dn", [
    f"cn=*,{GROUPS}",
    f"cn=info1)(|(cn*,{GROUPS}",
    r"cn=info1\2a,ou=groups,dc=lab,dc=test",
    r"cn=\5c,ou=groups,dc=lab,dc=test",
    "cn=info1,ou=groups,dc=nowhere",
])
def test_dns_with_special_characters_find_nothing(settings: Settings, dn: str) -> None:
    with pytest.raises(NotFound, match="no LDAP group"):
        group_members(settings, dn)


@pytest.mark.parametrize("dn", [
    f"cn=*)(uid=*,{GROUPS}",
    f"cn=info1)(cn=*,{GROUPS}",
    "cn=info1,ou=groups,dc=lab,dc=test\\",
    "cn=info1\0,ou=groups,dc=lab,dc=test",
    "cn=info1\n,ou=groups,dc=lab,dc=test",
    "(cn=info1)",
    "info1",
    "",
    "cn=info1,,dc=lab",
])
def test_invalid_dns_are_refused_before_any_request(dn: str) -> None:
    # No server at all: an invalid DN is refused before anything connects.
    settings = Settings(
        ldap=LdapSettings(
            host=f"ldap://127.0.0.1:{unused_port()}",
            base_dn=SUFFIX,
            bind_user_dn=SERVICE_DN,
            bind_user_password=SERVICE_PASSWORD,
        )
    )
    with pytest.raises(InvalidInput, match="invalid group DN") as info:
        group_members(settings, dn)
    assert "\0" not in info.value.message
    with pytest.raises(InvalidInput):
        check_dn(dn)


def test_an_entry_that_is_not_a_group(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="is not a group"):
        group_members(settings, f"uid=alice,{PEOPLE}")


def test_bad_members_are_all_reported_not_skipped(settings: Settings) -> None:
    with pytest.raises(InvalidInput) as info:
        group_members(settings, f"cn=bad,{GROUPS}")
    message = info.value.message
    assert "cn=bad" in message
    assert "invalid username 'Mallory'" in message
    assert "uid=ghost" in message
    assert "does not exist" in message
    assert "uid=dave" in message
    assert "control character" in message
    assert "cn=nouid" in message
    assert "no uid" in message
    assert "alice" not in message


def test_bad_member_uids_are_refused_before_any_search(settings: Settings) -> None:
    with pytest.raises(InvalidInput) as info:
        group_members(settings, f"cn=badposix,{GROUPS}")
    message = info.value.message
    assert "invalid username '*)(uid=*'" in message
    assert "memberUid 'ghost': no entries" in message
    assert "'bob'" not in message


def test_a_wrong_bind_password_is_a_clear_error_without_the_password(settings: Settings) -> None:
    wrong = "Wr0ng-S3cret-xyzzy"
    with pytest.raises(DirectoryError) as info:
        group_members(
            with_ldap(settings, bind_user_password=wrong),
            f"cn=info1,{GROUPS}",
        )
    message = info.value.message
    assert "refused the bind" in message
    assert SERVICE_DN in message
    assert "invalidCredentials" in message
    assert wrong not in message
    assert wrong not in repr(info.value)
    assert SERVICE_PASSWORD not in message


def test_an_account_that_may_not_read_finds_nothing(settings: Settings) -> None:
    alice = with_ldap(settings, bind_user_dn=f"uid=alice,{PEOPLE}", bind_user_password=PASSWORDS["alice"])
    with pytest.raises(NotFound, match="may not read"):
        group_members(alice, f"cn=info1,{GROUPS}")


def test_an_unreachable_server_is_a_clear_error(settings: Settings) -> None:
    url = f"ldap://127.0.0.1:{unused_port()}"
    with pytest.raises(DirectoryError, match="cannot reach the LDAP server") as info:
        group_members(
            with_ldap(settings, host=url),
            f"cn=info1,{GROUPS}",
        )
    assert url in info.value.message
    assert SERVICE_PASSWORD not in info.value.message


@contextlib.contextmanager
def not_ldap(reply: bytes | None) -> Iterator[str]:
    """A loopback server that answers one connection with ``reply`` and hangs up (None: stays mute)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                if reply is None:
                    done.wait(10)
                else:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ldap://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        listener.close()
        thread.join(5)


def test_a_server_that_is_not_ldap_is_a_clear_error(settings: Settings) -> None:
    # What an HTTP server (or a proxy) says; long enough for ldap3 to try to decode it.
    http = b"HTTP/1.0 426 Upgrade Required\r\nserver: web\r\ncontent-length: 0\r\n" + b"x-pad: 0\r\n" * 10
    with not_ldap(http + b"\r\n") as url, \
            pytest.raises(DirectoryError, match="does not answer as an LDAP server") as info:
        group_members(
            with_ldap(settings, host=url),
            f"cn=info1,{GROUPS}",
        )
    assert SERVICE_PASSWORD not in info.value.message


def test_a_server_that_never_answers_times_out(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ldapconn, "RECEIVE_TIMEOUT", 1)
    with not_ldap(None) as url, pytest.raises(DirectoryError) as info:
        group_members(
            with_ldap(settings, host=url),
            f"cn=info1,{GROUPS}",
        )
    assert url in info.value.message
    assert SERVICE_PASSWORD not in info.value.message


def test_missing_settings_name_their_variables() -> None:
    with pytest.raises(ConfigError) as info:
        group_members(Settings(ldap=LdapSettings(bind_user_dn=SERVICE_DN)), f"cn=info1,{GROUPS}")
    message = info.value.message
    assert "LDAP_HOST" in message
    assert "LDAP_BIND_USER_PASSWORD" in message
    assert "LDAP_BASE_DN" in message
    assert "LDAP_BIND_USER_DN" not in message


def test_a_bad_ldap_host_is_a_config_error(settings: Settings) -> None:
    bad = with_ldap(settings, host="ldap://127.0.0.1:notaport")
    with pytest.raises(ConfigError, match="LDAP_HOST"):
        group_members(bad, f"cn=info1,{GROUPS}")


def test_the_helper_runs_and_stops_its_own_slapd(tmp_path: Path) -> None:
    server = Slapd(tmp_path).start()
    try:
        assert server.process is not None
        assert server.process.poll() is None
        assert server.port not in (389, 636)
        with socket.create_connection(("127.0.0.1", server.port), timeout=1):
            pass
    finally:
        proc = server.process
        server.stop()
    assert proc is not None
    assert proc.poll() is not None
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
