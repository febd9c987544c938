"""The portal's forms and query strings, through aiohttp's test server and client: any method, path,
query, body and cookie gets an answer below 500; without the form's CSRF token nothing changes in
the database (the audit log may note the refusal) nor in the lab; with it, any form field's value
is answered below 500 too."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid as uuidlib

import aiohttp
from hypothesis import example, given
from hypothesis import strategies as st
from yarl import URL

from fuzz.conftest import Portal
from fuzz.strategies import SHARED_FIXTURE, hostile_text

FORM = "application/x-www-form-urlencoded"
FIELDS = ("csrf", "username", "password", "kind", "vm", "amount", "reason", "confirm", "lang")
ROUTES = ("/login", "/logout", "/", "/requests", "/vms/{uuid}/start", "/vms/{uuid}/halt",
          "/vms/{uuid}/reset", "/vms/{uuid}/console", "/console/{uuid}", "/console/{uuid}/status",
          "/console/{uuid}/ws", "/c/{token}", "/static/{text}", "/novnc/{text}", "/{text}")
VM_NAMES = ("alice-on", "alice-off", "bob-on")

field_values = st.one_of(hostile_text(max_size=4), st.text(max_size=30), st.sampled_from(
    ["", "vcpus", "memory", "new_vm", "yes", "fr", "en", "0", "-1", "99999999999999999999", "1e3", "alice"]))
forms = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=5)), field_values, max_size=6)
queries = st.one_of(
    st.dictionaries(st.one_of(st.just("lang"), st.text(max_size=5)), field_values, max_size=3)
    .map(urllib.parse.urlencode),
    st.binary(max_size=20).map(lambda raw: urllib.parse.quote_from_bytes(raw, safe="=&")),
    st.sampled_from(["lang=fr", "lang=de", "lang", "=", "&&", "%", "%zz", "lang=%ff", "a=%00"]))
bodies = st.one_of(
    st.none(), forms,
    st.tuples(st.binary(max_size=200), st.sampled_from(
        [FORM, "multipart/form-data", "multipart/form-data; boundary=x", "application/json",
         "text/plain; charset=utf-8", f"{FORM}; charset=latin-1", "", "x/y; charset=nope"])))
methods = st.sampled_from(["GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"])
cookies = st.one_of(st.none(), st.just("session"), st.dictionaries(
    st.sampled_from(["vmm_session", "vmm_login", "vmm_device", "vmm_lang", "vmm_console"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters=";,\\\""), max_size=120),
    max_size=3))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str]:
    """A method, a path (a route of ours with any UUID, token or text in it, or any path) and a query."""
    route = draw(st.sampled_from(ROUTES))
    path = route.format(
        uuid=draw(st.one_of(st.sampled_from(VM_NAMES), st.uuids().map(str), st.just(str(uuidlib.UUID(int=0))),
                            st.text(max_size=8))),
        token=draw(st.text(st.characters(codec="ascii"), max_size=50)),
        text=draw(st.text(max_size=12)))
    return draw(methods), urllib.parse.quote(path, safe="/{}"), draw(queries)


async def _send(portal: Portal, request: tuple[str, str, str], body: object, cookie: object,
                anonymous: aiohttp.ClientSession) -> int:
    method, path, query = request
    for name, uuid in portal.uuids.items():
        path = path.replace(name, uuid)  # a name picked for the UUID stands for its VM's UUID
    url = URL(f"{portal.server.base}{path}" + (f"?{query}" if query else ""), encoded=True)
    browser = portal.alice.browser if cookie == "session" else anonymous
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookie.items())} if isinstance(cookie, dict) else {}
    data: bytes | None = None
    if isinstance(body, tuple):
        data, headers["Content-Type"] = body
    elif isinstance(body, dict):  # as a browser posts a form
        data, headers["Content-Type"] = urllib.parse.urlencode(body).encode(), FORM
    async with browser.request(method, url, data=data, headers=headers, allow_redirects=False) as response:
        await response.read()
        return response.status


def _all_but_the_audit(rows: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    return {table: found for table, found in rows.items() if table not in ("audit", "sqlite_sequence")}


def _audit_refusals_only(before: list[tuple[object, ...]], after: list[tuple[object, ...]]) -> bool:
    """Whether the audit log changed only by refusals (new entries, or repeats of collapsed ones)."""
    old = set(before)
    return all(row[8] == "refused" for row in after if row not in old)


@SHARED_FIXTURE
@given(request=requests(), body=bodies, cookie=cookies)
@example(request=("POST", "/vms/alice-on/halt", ""), body={"csrf": "x"}, cookie="session")
@example(request=("POST", "/login", ""), body={"username": "alice", "password": "alice-secret-1"},
         cookie=None)
@example(request=("POST", "/logout", ""), body=None, cookie="session")
@example(request=("GET", "/", "lang=%ff"), body=None, cookie="session")
@example(request=("POST", "/login", ""), body=(b"\x80", FORM), cookie=None)  # a 500: not UTF-8
@example(request=("POST", "/requests", ""), body=(b"a=1", f"{FORM}; charset=nope"), cookie="session")
async def test_any_request_is_answered_and_changes_nothing_without_csrf(
        portal: Portal, request: tuple[str, str, str], body: object, cookie: object) -> None:
    anonymous = portal.server.browser()
    states = {vm.name: vm.state for vm in portal.lab.vms()}
    before = portal.rows()
    status = await _send(portal, request, body, cookie, anonymous)
    after = portal.rows()
    await anonymous.close()
    portal.server.sessions.remove(anonymous)
    assert status < 500, status
    assert _all_but_the_audit(after) == _all_but_the_audit(before)
    assert _audit_refusals_only(before["audit"], after["audit"]), after["audit"]
    assert {vm.name: vm.state for vm in portal.lab.vms()} == states


@SHARED_FIXTURE
@given(route=st.sampled_from(["/requests", "/vms/{uuid}/reset", "/vms/{uuid}/console", "/vms/{uuid}/start",
                              "/vms/{uuid}/halt", "/login"]),
       vm=st.sampled_from(VM_NAMES), form=forms, query=queries)
async def test_any_field_of_a_form_with_its_csrf_token_is_answered(portal: Portal, route: str, vm: str,
                                                                   form: dict[str, str], query: str) -> None:
    csrf = await portal.alice.csrf()
    path = route.format(uuid=portal.uuids[vm])
    url = URL(f"{portal.server.base}{path}" + (f"?{query}" if query else ""), encoded=True)
    form = {**form, "csrf": csrf}
    if "vm" in form and form["vm"] in portal.uuids:
        form["vm"] = portal.uuids[form["vm"]]
    async with portal.alice.browser.post(url, data=urllib.parse.urlencode(form).encode(),
                                         headers={"Content-Type": FORM}, allow_redirects=False) as response:
        await response.read()
        assert response.status < 500, response.status
    page = await portal.alice.get("/")
    assert page.status == 200  # still signed in, the page still renders


header_bytes = st.binary(max_size=40).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@SHARED_FIXTURE
@given(path=st.one_of(st.sampled_from([b"/", b"/login", b"/requests", b"/c/"]),
                      header_bytes.map(lambda b: b"/" + b)),
       cookie=st.one_of(st.just(b""), header_bytes, header_bytes.map(lambda b: b"vmm_session=" + b),
                        header_bytes.map(lambda b: b"vmm_lang=" + b)),
       language=st.one_of(st.just(b"fr"), header_bytes))
@example(path=b"/", cookie=b"vmm_session=\xff\xfe", language=b"fr")  # a 500: hashing surrogates failed
async def test_any_bytes_in_the_path_and_the_cookies_are_answered(portal: Portal, path: bytes, cookie: bytes,
                                                                   language: bytes) -> None:
    """What aiohttp's client never sends: bytes that are not UTF-8 in the request line and headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", portal.server.server.port)
    writer.write(b"GET " + path.replace(b" ", b"%20") + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + cookie +
                 b"\r\nAccept-Language: " + language + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), status_line  # 1.0: aiohttp's parser's 400
    assert int(status_line.split()[1]) < 500, status_line
