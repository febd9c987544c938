"""The token store (share links, console sessions) and SECRET_KEY handling: fast, no libvirt."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import stat
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.clock import Clock
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from core.errors import ConfigError, InvalidInput
from core.links.secret import OLD_DEFAULT_KEY, generate_secret_key, key_file, key_problem, load_secret_key
from core.links.shares import TOKEN, TokenStore, parse_ttl
from core.settings import Settings, WebSettings

# Keys made by hand: issue 11's four first (all were accepted), then other shapes of the same.
GUESSABLE_KEYS = [
    "abcdefghabcdefghabcdefghabcdefgh", "12345678901234567890123456789012",
    "passwordpasswordpasswordpassword1234", "correcthorsebatterystaplecorrect",
    "qwertyuiopasdfghjklzxcvbnmqwertyuiop", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",  # keyboard runs
    "abcdefghijklmnopqrstuvwxyz0123456789",  # runs
    "correct horse battery staple mountain river", "Correct-Horse-Battery-Staple-Mountain-River-7",
    "the quick brown fox jumps over the lazy dog", "mysupersecretkeyforthevmmanagerapp",
    "vm-manager-secret-key-2024-production", "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",  # l33t, repeated
    "1987-03-12 1999-12-31 2024-01-01 2020-06-15",  # dates
]
# zxcvbn prices a run of many short matches high (its sequence term grows with their number): eight
# words of three letters ("the and each the name the the and") can pass; words of four and more do not.
COMMON_WORDS = [w for w in FREQUENCY_LISTS["english_wikipedia"][:2000] if len(w) >= 4]

KEY = "s" * 40  # the store takes any key; only load_secret_key judges them
KEY_HEX = "9f3b1c0e7a5d4f2e8b6c1a0d3e5f7a9b"  # a key load_secret_key accepts
VM_A = "11111111-1111-4111-8111-111111111111"
VM_B = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def clock() -> Clock:
    return Clock(start=1_800_000_000.0)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> TokenStore:
    made = TokenStore(tmp_path / "db.sqlite3", KEY, clock)
    yield made
    made.close()


def test_token_is_random_and_stored_only_as_its_hmac(store: TokenStore, tmp_path: Path) -> None:
    link, token = store.create_link(VM_A, "net101-alice", 3600)
    assert TOKEN.fullmatch(token)
    assert len(token) == 43
    assert store.create_link(VM_A, "net101-alice", 3600)[1] != token
    raw = (tmp_path / "db.sqlite3").read_bytes() + (tmp_path / "db.sqlite3-wal").read_bytes()
    assert token.encode() not in raw
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        stored = db.execute("SELECT token_hash FROM links WHERE id = ?", (link.id,)).fetchone()[0]
    assert stored == hmac.new(KEY.encode(), f"link:{token}".encode(), hashlib.sha256).digest()
    assert store.link_for_token(token) == link
    assert stat.S_IMODE((tmp_path / "db.sqlite3").stat().st_mode) == 0o600


def test_another_key_does_not_open_a_link(store: TokenStore, tmp_path: Path, clock: Clock) -> None:
    _, token = store.create_link(VM_A, "a", 3600)
    other = TokenStore(tmp_path / "db.sqlite3", "t" * 40, clock)
    try:
        assert other.link_for_token(token) is None
    finally:
        other.close()


def test_bad_tokens_find_nothing(store: TokenStore) -> None:
    store.create_link(VM_A, "a", 3600)
    for token in ("", "x", "a" * 43, "../../etc/passwd", "' OR 1=1 --" + "a" * 32):
        assert store.link_for_token(token) is None


def test_link_expires(store: TokenStore, clock: Clock) -> None:
    link, token = store.create_link(VM_A, "a", 1800)
    secret = store.open_session(link)
    clock.offset += 1799
    assert store.link_for_token(token) is not None
    assert store.session_link(secret, VM_A, vm_owner="alice") is not None
    clock.offset += 1
    assert store.link_for_token(token) is None
    assert store.session_link(secret, VM_A, vm_owner="alice") is None
    assert store.link_for_token(token, active_only=False) == link
    assert store.inactive([link.id]) == {link.id}


def test_revoke_by_id_token_and_vm(store: TokenStore) -> None:
    by_id, t1 = store.create_link(VM_A, "a", 3600)
    by_token, t2 = store.create_link(VM_A, "a", 3600)
    other_vm, t3 = store.create_link(VM_B, "b", 3600)
    kept, t4 = store.create_link(VM_B, "b", 3600)
    session = store.open_session(by_id)

    assert [link.id for link in store.revoke(ids=[by_id.id])] == [by_id.id]
    assert store.link_for_token(t1) is None
    assert store.session_link(session, VM_A, vm_owner="alice") is None  # its sessions end with it
    assert [link.id for link in store.revoke(tokens=[t2])] == [by_token.id]
    assert store.revoke(ids=[by_id.id]) == []  # already revoked
    assert store.revoke_one("vm", VM_B)[1] != []
    assert store.link_for_token(t3) is None
    assert store.link_for_token(t4) is None
    assert store.revoke_one("id", "deadbeef") == (False, [])
    assert store.revoke_one("token", t2) == (True, [])
    assert store.inactive([by_id.id, kept.id, "gone0000"]) == {by_id.id, kept.id, "gone0000"}


def test_session_is_bound_to_its_vm(store: TokenStore) -> None:
    """A VM made again under the same name has a new UUID: the old link's session opens nothing."""
    link, _ = store.create_link(VM_A, "net101-alice", 3600)
    secret = store.open_session(link)
    assert store.session_link(secret, VM_A, vm_owner="alice") == link
    assert store.session_link(secret, VM_B, vm_owner="alice") is None
    assert store.session_link("x" * 43, VM_A, vm_owner="alice") is None
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert store.session_link(wrong, VM_A, vm_owner="alice") is None


def test_a_students_link_opens_only_while_the_vm_is_theirs(store: TokenStore, clock: Clock) -> None:
    """The portal's link for alice names her: given to bob, the VM's console no longer opens for her
    (and again if it comes back); a share link and an operator's link name nobody and keep working."""
    hers, _ = store.create_link(VM_A, "net101-alice", 3600, owner="alice")
    shared, _ = store.create_link(VM_A, "net101-alice", 3600)
    hers_secret, shared_secret = store.open_session(hers), store.open_session(shared)
    assert store.session_link(hers_secret, VM_A, vm_owner="alice") == hers
    assert hers.owner == "alice"
    assert store.session_link(hers_secret, VM_A, vm_owner="bob") is None
    assert store.session_link(hers_secret, VM_A, vm_owner="") is None
    assert store.session_link(shared_secret, VM_A, vm_owner="bob") == shared
    assert shared.owner is None
    assert store.get(hers.id) == hers  # the owner is stored, not only carried
    reopened = TokenStore(store.path, KEY, clock)
    try:
        assert reopened.session_link(hers_secret, VM_A, vm_owner="alice") == hers
        assert reopened.session_link(hers_secret, VM_A, vm_owner="bob") is None
    finally:
        reopened.close()


def test_links_of_an_older_database_name_nobody(tmp_path: Path, clock: Clock) -> None:
    """A database written before links named their student: its links keep working as share links."""
    from core.links.shares import _MIGRATIONS
    from core.records import database

    path = tmp_path / "old.sqlite3"
    old = database.open_store(path, "tokens", _MIGRATIONS[:1])
    old.execute("INSERT INTO links (id, token_hash, vm_uuid, vm_name, created, expires) VALUES "
                "('0123abcd', x'00', ?, 'a', ?, ?)", (VM_A, clock(), clock() + 60))
    old.close()
    store = TokenStore(path, KEY, clock)
    try:
        link = store.get("0123abcd")
        assert link is not None
        assert link.owner is None
        assert store.create_link(VM_A, "a", 60, owner="alice")[0].owner == "alice"
    finally:
        store.close()


def test_public_ids_are_short_and_unique(store: TokenStore) -> None:
    ids = {store.create_link(VM_A, "a", 60)[0].id for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 8 for i in ids)


def test_schema_version_and_reopen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "db.sqlite3"
    first = TokenStore(path, KEY, clock)
    _, token = first.create_link(VM_A, "a", 3600)
    first.close()
    again = TokenStore(path, KEY, clock)
    try:
        assert again.link_for_token(token) is not None
    finally:
        again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_versions WHERE store = 'tokens'").fetchone()[0] == 2
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE schema_versions SET version = 99 WHERE store = 'tokens'")
    with pytest.raises(ConfigError, match="newer"):
        TokenStore(path, KEY, clock)


def test_purge_drops_old_links_and_their_sessions(store: TokenStore, clock: Clock) -> None:
    old, _ = store.create_link(VM_A, "a", 60)
    store.open_session(old)
    fresh, _ = store.create_link(VM_A, "a", 86400 * 3)
    clock.offset += 86400 * 2
    assert store.purge() == 1
    assert store.get(old.id) is None
    assert store.get(fresh.id) is not None


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("4h", 14400), ("2d", 172800), ("1h30m", 5400),
                                               (" 2H ", 7200), ("45s", 45)])
def test_parse_ttl(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "2", "h", "2x", "-1h", "31d", "2h 30m", "1.5h"])
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ttl(text)


# -- SECRET_KEY --
def _settings(tmp_path: Path, key: str | None = None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", config_dir=tmp_path / "config", web=WebSettings(secret_key=key)
    )


@pytest.mark.parametrize(("key", "problem"), [
    (None, "SECRET_KEY is unset"), (OLD_DEFAULT_KEY, "old default"), ("short-key", "shorter than 32"),
    (" " * 40, "only blanks"), ("\t \n" * 20, "only blanks"), ("k" * 40, "only 1 different character"),
    ("ab" * 32, "only 2 different characters"), ("test-secret-key-" + "k" * 32, "mostly one character"),
    ("0123456789abcdef" + "0" * 32, "mostly one character"),
])
def test_bad_secret_keys_are_refused(tmp_path: Path, key: str | None, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        load_secret_key(_settings(tmp_path, key))
    assert "SECRET_KEY" in caught.value.message
    assert len(load_secret_key(_settings(tmp_path, key), demo=True)) >= 32  # the demo lab: a random one


def test_generated_key_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key, made = generate_secret_key(settings)
    assert made
    assert len(key) >= 32
    path = key_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(settings) == key
    assert generate_secret_key(settings) == (key, False)  # kept: links made with it still work
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_secret_key(settings)
    with pytest.raises(ConfigError, match="SECRET_KEY is set"):
        generate_secret_key(_settings(tmp_path, "x" * 40))


def test_random_keys_pass_the_diversity_rule(tmp_path: Path) -> None:
    """What the README tells to run (``openssl rand -hex 32``), its shortest form, and our own."""
    import subprocess

    for command in (["openssl", "rand", "-hex", "32"], ["openssl", "rand", "-hex", "16"],
                    ["openssl", "rand", "-base64", "32"]):
        for _ in range(20):
            key = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
            assert load_secret_key(_settings(tmp_path, key)) == key
    for _ in range(2000):
        key = secrets.token_hex(16)  # 32 hex digits: the shortest key there is
        assert key_problem(key) == "", key
    assert key_problem(secrets.token_urlsafe(48)) == ""  # what --generate-secret writes


def _hint(tmp_path: Path) -> str:
    """What a refused key's message ends with (the way out), as for a key too short."""
    with pytest.raises(ConfigError) as caught:
        load_secret_key(_settings(tmp_path, "short-key"))
    hint = caught.value.message.partition(": ")[2]
    assert "`vm-manager serve --generate-secret`" in hint
    return hint


@pytest.mark.parametrize("key", GUESSABLE_KEYS)
def test_keys_made_by_hand_are_refused(tmp_path: Path, key: str) -> None:
    """Long and varied enough for the older rules, yet guessable: words, runs, repeated blocks."""
    with pytest.raises(ConfigError) as caught:
        load_secret_key(_settings(tmp_path, key))
    message = caught.value.message
    assert message.startswith("SECRET_KEY is plainly not random: it is made of "), message
    assert message.endswith(f": {_hint(tmp_path)}")
    assert key not in message  # nor any part of it: only what kind of pattern it holds
    assert "10^" in message


def test_a_thousand_random_keys_of_each_kind_are_accepted() -> None:
    """1,000 keys of ``openssl rand -hex 32`` (one run of openssl for all: 32,000 random bytes in hex,
    cut in 64-digit keys) and 1,000 of ``secrets.token_urlsafe(32)``: none refused."""
    out = subprocess.run(["openssl", "rand", "-hex", str(32 * 1000)], capture_output=True, text=True,
                         check=True).stdout.strip()
    hex_keys = [out[i:i + 64] for i in range(0, len(out), 64)]
    assert len(hex_keys) == 1000
    assert all(len(key) == 64 for key in hex_keys)
    urlsafe_keys = [secrets.token_urlsafe(32) for _ in range(1000)]
    assert [key for key in hex_keys + urlsafe_keys if key_problem(key)] == []


@settings(max_examples=150, deadline=None)
@given(st.text(string.ascii_letters + string.digits + "-_!.", min_size=2, max_size=16), st.integers(2, 6))
def test_a_block_repeated_is_refused(block: str, times: int) -> None:
    key = block * max(times, -(-32 // len(block)))  # at least twice, and a key's length
    assert key_problem(key) != ""


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(COMMON_WORDS), min_size=6, max_size=10),
       st.sampled_from(["", " ", "-", ".", "_"]))
def test_a_passphrase_of_common_words_is_refused(words: list[str], separator: str) -> None:
    key = separator.join(words)
    if len(key) >= 32:
        assert key_problem(key) != "", key  # refused (a few by the older rules: "known" five times)


def test_a_weak_key_in_the_key_file_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = key_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text("k" * 40 + "\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"the SECRET_KEY in {path} has only 1 different character"):
        load_secret_key(settings)


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    generate_secret_key(_settings(tmp_path))
    assert load_secret_key(_settings(tmp_path, KEY_HEX)) == KEY_HEX
    with pytest.raises(ConfigError, match="old default"):  # a bad explicit key is not papered over
        load_secret_key(_settings(tmp_path, OLD_DEFAULT_KEY))
