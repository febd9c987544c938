"""Share tokens, link ids and share URLs: what ``vm-manager revoke`` takes, what the token store looks
up, and the admin API's JSON (the TUI's and the CLI's way to the server): anything that is not a live
token opens nothing, revokes nothing and raises nothing of its own."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import aiohttp
from hypothesis import example, given
from hypothesis import strategies as st

from core.links.shares import LINK_ID, TOKEN, TokenStore, revoke_target
from core.links.urls import share_url
from fuzz.conftest import Portal
from fuzz.strategies import SHARED_FIXTURE, hostile_text

BASES = ("https://vm.example.org", "http://127.0.0.1:5000", "http://[::1]:8080")
KEY = "9f3b1c0e7a5d4f2e8b6c1a0d3e5f7a9b"
VM = "11111111-1111-4111-8111-111111111111"
token_like = st.text(st.sampled_from("ABCxyz019_-"), min_size=40, max_size=46)
link_id_like = st.text(st.sampled_from("0123456789abcdefABG"), min_size=7, max_size=9)
arguments = st.one_of(token_like, link_id_like, hostile_text(max_size=5), st.text(max_size=60),
                      st.builds(share_url, st.sampled_from(BASES), token_like).map(lambda url: url + "/"),
                      st.text(max_size=60).map(lambda text: text + "\udcff"))  # argv's undecodable bytes


@given(arg=arguments)
def test_any_revoke_argument_names_a_token_an_id_or_vms(arg: str) -> None:
    kind, value = revoke_target(arg)
    if kind == "token":
        assert TOKEN.fullmatch(value)
        assert arg.rstrip("/").endswith(value)
    elif kind == "id":
        assert LINK_ID.fullmatch(value)
        assert value == arg
    else:
        assert (kind, value) == ("vm", arg)


@given(base=st.sampled_from(BASES), token=st.from_regex(TOKEN, fullmatch=True), slash=st.booleans())
def test_a_share_url_names_its_token(base: str, token: str, slash: bool) -> None:
    assert revoke_target(share_url(base, token) + ("/" if slash else "")) == ("token", token)


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM links ORDER BY id").fetchall()


@given(texts=st.lists(arguments, min_size=1, max_size=4))
@example(texts=["\ud800"])  # a lone surrogate, as JSON's "\ud800" gives it: sqlite3 cannot bind one
def test_no_text_but_the_token_opens_or_revokes_a_link(texts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db.sqlite3"
        store = TokenStore(path, KEY)
        try:
            link, token = store.create_link(VM, "vm", 3600)
            before = _rows(path)
            for text in texts:
                if text == token:
                    continue
                assert store.link_for_token(text) is None
                assert store.session_link(text, VM, vm_owner="alice") is None
                assert store.revoke(tokens=[text], ids=[text if text != link.id else ""]) == []
                assert store.revoke_many(tokens=[text]) [0].revoked == ()
            assert _rows(path) == before
            assert store.link_for_token(token) == link
        finally:
            store.close()


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     hostile_text(max_size=3), arguments),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)
admin_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={"ids": st.one_of(st.lists(arguments, max_size=3), json_values),
                                        "tokens": st.one_of(st.lists(arguments, max_size=3), json_values),
                                        "vms": st.one_of(st.lists(arguments, max_size=3), json_values),
                                        "ttl": json_values}).map(json.dumps),
    json_values.map(json.dumps), st.text(max_size=30))


@SHARED_FIXTURE
@given(route=st.sampled_from(["/links", "/revoke", "/viewers", "/nope"]),
       method=st.sampled_from(["GET", "POST"]), body=admin_bodies)
@example(route="/revoke", method="POST",  # lone surrogates: sqlite3 could not bind them, a 500
         body='{"ids": ["\\ud800"], "tokens": ["\\udcff"], "vms": ["\\ud800"]}')
@example(route="/links", method="POST", body='{"vms": ["\\ud800"], "ttl": "1' + "0" * 400 + 'd"}')
async def test_the_admin_api_answers_any_json_below_500(portal: Portal, route: str, method: str,
                                                        body: str) -> None:
    """Links made by a POST /links that named a VM are revoked again: only refusals may stay."""
    connector = aiohttp.UnixConnector(path=str(portal.server.settings.admin_socket))
    async with aiohttp.ClientSession(connector=connector) as client, \
            client.request(method, f"http://admin{route}", data=body.encode("utf-8", "surrogatepass"),
                           headers={"Content-Type": "application/json"}) as response:
        answer = await response.read()
        assert response.status < 500, (response.status, answer)
    if response.status == 200 and route == "/links" and method == "POST":
        made = [link["id"] for link in json.loads(answer)["links"]]
        portal.server.store.revoke(ids=made)
