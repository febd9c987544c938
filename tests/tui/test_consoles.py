"""Browser consoles from the TUI: share links (c), the share screen (QR code, copy), revoke (C),
viewer counts, and the console server run inside the TUI (``serve=``).

Without a server the TUI writes the links to the database as the CLI does; with one (started
here with ``core.web.app.serve`` on the test's loop, on a Lab of libvirt's test driver) it goes
through the admin API. Viewers are stand-ins added to the server's own register: the test
driver has no VNC to open.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import segno
from aiohttp import web
from aiohttp.test_utils import unused_port
from support.tuitest import SIZE, log_text, notifications, vm_named, wait_until
from textual.geometry import Region
from textual.widgets import DataTable, Input

from core.lab import Lab
from core.links import client as admin_client
from core.links.shares import TokenStore
from core.records.audit import AuditLog
from core.settings import ActionSettings, Settings, WebSettings
from core.text import format_time
from core.web import app as web_app
from core.web.app import VIEWERS
from core.web.console.proxy import Viewer, Viewers
from tui import format as fmt
from tui.app import VMManagerApp
from tui.screens.main import MainScreen
from tui.screens.prompt import PromptScreen
from tui.screens.share import QUIET_ZONE, QRCode, RevokeScreen, ShareScreen, qr_lines
from tui.tablemodel import NO_COUNT

KEY = "test-secret-key-5e0c3a9f1b7d2e4c8a6f0b1d3e5c7a9f"


@pytest.fixture
def settings(tmp_path: Path, run_dir: Path) -> Settings:
    """Overrides conftest's: a SECRET_KEY and a run dir for the admin socket."""
    return Settings(
        config_dir=tmp_path / "config",
        data_dir=tmp_path / "data",
        runtime_dir=run_dir,
        actions=ActionSettings(halt_timeout=5.0),
        web=WebSettings(secret_key=KEY),
    )


def store_of(settings: Settings) -> TokenStore:
    return TokenStore(settings.database_path, KEY)


def token_of(url: str) -> str:
    return url.rpartition("/c/")[2]


async def mark(app: VMManagerApp, pilot, *names: str) -> None:  # noqa: ANN001
    table = app.main.table
    for name in names:
        assert table.move_to(vm_named(app, name).key)
        await pilot.press("space")
    assert len(table.marked) == len(names)


async def share(app: VMManagerApp, pilot, ttl: str | None = None) -> ShareScreen:  # noqa: ANN001
    """Press c, answer the duration prompt (its default when ``ttl`` is None), wait for the links."""
    await pilot.press("c")
    prompt = app.screen
    assert isinstance(prompt, PromptScreen)
    if ttl is not None:
        prompt.query_one(Input).value = ""
        await pilot.press(*ttl)
    await pilot.press("enter")
    await wait_until(lambda: isinstance(app.screen, ShareScreen))
    await pilot.pause()
    return app.screen  # type: ignore[return-value]


def row_of(app: VMManagerApp, name: str) -> str:
    """The row as the screen shows it: from the widget's line cache, so a count that changed
    without a repaint shows its old value."""
    table = app.main.table
    y = next(i for i, vm in enumerate(table.visible_vms()) if vm.name == name) + 1 - round(table.scroll_y)
    return table.render_lines(Region(0, y, table.size.width, 1))[0].text


# -- sharing, without a server --
async def test_c_shares_the_marked_vms_one_hashed_link_each(make_app, settings: Settings) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await mark(app, pilot, "net101-alice", "net101-bob")
        await pilot.press("c")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        assert prompt.query_one(Input).value == settings.consoles.share_ttl  # VMM_SHARE_TTL by default
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

        screen = await share(app, pilot, "90m")
        assert not app.main.table.marked  # cleared once sent, like every action
        alice, bob = vm_named(app, "net101-alice"), vm_named(app, "net101-bob")
        store = store_of(settings)
        try:
            links = store.links()
            assert sorted(link.vm_uuid for link in links) == sorted([alice.uuid, bob.uuid])
            assert all(link.expires - link.created == 90 * 60 for link in links)
            assert [(s.id, s.vm_uuid) for s in screen.links] == [(x.id, x.vm_uuid) for x in links]
            for shown in screen.links:
                token = token_of(shown.url)
                assert shown.url == f"http://127.0.0.1:5000/c/{token}"  # no PUBLIC_URL, no server
                found = store.link_for_token(token)
                assert found is not None and found.id == shown.id  # noqa: PT018
                assert shown.expires == format_time(found.expires)
        finally:
            store.close()
        with sqlite3.connect(settings.database_path) as db:  # only the HMAC of a token is stored
            stored = repr(db.execute("SELECT * FROM links").fetchall())
        assert not any(token_of(s.url) in stored for s in screen.links)
        audit = AuditLog(settings.database_path)
        try:
            assert sorted((e.action, e.source, e.vm_name) for e in audit.entries()) == [
                ("share", "tui", "net101-alice"), ("share", "tui", "net101-bob")]
        finally:
            audit.close()

        # one row per VM: name, URL, expiry, id; the selected link in full; the no-server note
        table = screen.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [[s.vm_name, s.url, s.expires, s.id] for s in screen.links]
        selected = str(screen.query_one("#share-selected").render())
        first = screen.links[0]
        assert first.url in selected.replace("\n", "") and first.expires in selected  # noqa: PT018
        assert "No console server answers" in str(screen.query_one("#share-notes").render())
        assert not any(token_of(s.url) in log_text(app) for s in screen.links)  # the log names ids
        assert all(f"share link {s.id} made" in log_text(app) for s in screen.links)

        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        assert row_of(app, "net101-alice").rstrip().endswith(NO_COUNT)  # no server: no count


async def test_a_bad_duration_stays_in_the_prompt_and_makes_nothing(make_app, settings: Settings) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.main.table.move_to(vm_named(app, "net101-alice").key)
        await pilot.press("c")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        prompt.query_one(Input).value = ""
        await pilot.press(*"forever", "enter")
        assert app.screen is prompt
        assert "bad duration" in prompt.error
        await pilot.press("escape")
        assert "share cancelled" in log_text(app)
    assert not settings.database_path.exists()


async def test_without_a_secret_key_sharing_says_why(make_app, lab: Lab, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    monkeypatch.setattr(lab, "settings", Settings(config_dir=lab.settings.config_dir,
                                                  data_dir=lab.settings.data_dir))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c", "enter")
        await wait_until(lambda: any("Share failed" in n for n in notifications(app)))
        assert "SECRET_KEY" in log_text(app)
        assert isinstance(app.screen, MainScreen)


# -- the QR code and the clipboard --
def test_the_qr_code_is_the_matrix_in_half_blocks_within_a_quiet_zone() -> None:
    url = "http://127.0.0.1:5000/c/" + "A1b2C3d4" * 5 + "xyz"
    lines = qr_lines(url)
    code = segno.make(url, error="l", micro=False)
    side = code.symbol_size(scale=1, border=QUIET_ZONE)[0]
    assert len(lines) == math.ceil(side / 2)
    assert {len(line) for line in lines} == {side}
    assert set("".join(lines)) <= set(" ▀▄█")
    top = {" ": (0, 0), "▀": (1, 0), "▄": (0, 1), "█": (1, 1)}
    drawn = [[top[ch][half] for ch in line] for line in lines for half in (0, 1)][:side]
    expected = [[int(bool(m)) for m in row] for row in code.matrix_iter(scale=1, border=QUIET_ZONE)]
    assert drawn == expected
    assert all(not any(row) for row in drawn[:QUIET_ZONE] + drawn[-QUIET_ZONE:])  # the quiet zone
    assert all(not any(row[:QUIET_ZONE] + row[-QUIET_ZONE:]) for row in drawn)
    assert qr_lines(url.replace("A1b2", "Z9y8")) != lines


async def test_the_share_screen_draws_the_selected_link_and_copies_it(make_app,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    copied: list[str] = []
    original = app.copy_to_clipboard

    def record(text: str) -> None:
        copied.append(text)
        original(text)

    monkeypatch.setattr(app, "copy_to_clipboard", record)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await mark(app, pilot, "net101-alice", "sys202-manon")
        screen = await share(app, pilot)
        first, second = screen.links
        qr = screen.query_one(QRCode)
        assert qr.data == first.url
        assert qr.lines == qr_lines(first.url)
        assert qr.region.height == len(qr.lines) and qr.region.width == len(qr.lines[0])  # noqa: PT018
        assert qr.region.right <= SIZE[0]  # all of it shows at 80x24
        assert qr.region.bottom <= SIZE[1]

        await pilot.press("c")
        assert copied == [first.url]
        assert app.clipboard == first.url
        assert any("set-clipboard on" in n for n in notifications(app))

        await pilot.press("down")
        assert qr.data == second.url
        assert qr.lines != qr_lines(first.url)
        assert second.url in str(screen.query_one("#share-selected").render()).replace("\n", "")
        await pilot.press("c")
        assert copied == [first.url, second.url]


# -- revoking --
async def test_shift_c_revokes_every_link_of_the_marked_vms_after_confirming(make_app, lab: Lab,
                                                                            settings: Settings) -> None:
    by_name = {vm.name: vm for vm in lab.vms()}
    store = store_of(settings)
    try:
        mine = [store.create_link(by_name[n].uuid, n, 3600)[0] for n in ("net101-alice", "net101-alice",
                                                                         "net101-bob")]
        other, _ = store.create_link(by_name["sys202-manon"].uuid, "sys202-manon", 3600)
    finally:
        store.close()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await mark(app, pilot, "net101-alice", "net101-bob")
        await pilot.press("C")
        dialog = app.screen
        assert isinstance(dialog, RevokeScreen)
        assert dialog.title_text == "Revoke the console links of 2 VMs?"
        assert [vm.name for vm in dialog.vms] == ["net101-alice", "net101-bob"]
        await pilot.press("n")  # cancel: nothing revoked
        assert "revoke links cancelled" in log_text(app)
        await pilot.press("C", "y")
        await wait_until(lambda: any("3 links revoked" in n for n in notifications(app)))
        assert not app.main.table.marked
        assert all(f"share link {link.id} revoked" in log_text(app) for link in mine)
    store = store_of(settings)
    try:
        assert all(store.get(link.id).revoked is not None for link in mine)  # type: ignore[union-attr]
        assert store.get(other.id).revoked is None  # type: ignore[union-attr]
    finally:
        store.close()


# -- with a console server --
class FakeSocket:
    """A viewer's browser websocket, as far as the server's register uses it."""

    def __init__(self, viewers: Viewers) -> None:
        self.viewers = viewers
        self.viewer: Viewer | None = None
        self.close_code: int | None = None

    async def close(self, code: int, message: bytes) -> None:  # the relay ends: the handler discards it
        self.close_code = code
        if self.viewer is not None:
            self.viewers.discard(self.viewer)


def add_viewer(server: web.Application, link_id: str, uuid: str) -> FakeSocket:
    viewers = server[VIEWERS]
    ws = FakeSocket(viewers)
    ws.viewer = viewers.add(link_id, uuid, ws)  # type: ignore[arg-type]
    return ws


@pytest.fixture
def made_apps(monkeypatch: pytest.MonkeyPatch) -> list[web.Application]:
    """Every console server application ``serve`` makes (to add viewers to it)."""
    made: list[web.Application] = []
    original = web_app.make_app

    def make_app(*args: object, **kwargs: object) -> web.Application:
        made.append(original(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(web_app, "make_app", make_app)
    return made


@pytest.fixture
async def server(lab: Lab, settings: Settings, made_apps: list[web.Application]
                 ) -> AsyncIterator[tuple[web.Application, str]]:
    """``vm-manager serve``'s server on this loop: (its application, its base URL)."""
    stop = asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(web_app.serve(settings, lab, secret_key=KEY, host="127.0.0.1",
                                             port=unused_port(), stop=stop, started=urls.append))
    await wait_until(lambda: bool(urls) or task.done())
    assert urls, task.exception()
    yield made_apps[-1], urls[0]
    stop.set()
    await task


async def test_viewer_counts_and_links_go_through_a_running_server(make_app, server, lab: Lab,
                                                                  settings: Settings) -> None:
    web, base = server
    alice, bob = (next(vm for vm in lab.vms() if vm.name == n) for n in ("net101-alice", "net101-bob"))
    store = store_of(settings)
    try:
        link, _ = store.create_link(alice.uuid, alice.name, 3600)
    finally:
        store.close()
    sockets = [add_viewer(web, link.id, alice.uuid), add_viewer(web, link.id, alice.uuid)]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.table
        await wait_until(lambda: table.viewers is not None)  # polled once the lab is open
        assert table.viewers == {alice.uuid: 2}
        assert row_of(app, "net101-alice").rstrip().endswith(" 2")
        assert row_of(app, "net101-bob").rstrip().endswith(" 0")

        # links made by the server: its base URL, no "no server" note
        table.move_to(bob.key)
        screen = await share(app, pilot, "2h")
        (made,) = screen.links
        assert made.url.startswith(f"{base}/c/")
        assert "No console server" not in str(screen.query_one("#share-notes").render())
        sockets.append(add_viewer(web, made.id, bob.uuid))
        await pilot.press("escape")
        app.main.poll_viewers()
        await wait_until(lambda: table.viewers == {alice.uuid: 2, bob.uuid: 1})
        assert row_of(app, "net101-bob").rstrip().endswith(" 1")

        # revoking through the server closes the consoles at once
        table.move_to(alice.key)
        await pilot.press("C")
        assert isinstance(app.screen, RevokeScreen)
        assert "at once" in app.screen.consequence
        await pilot.press("y")
        await wait_until(lambda: any("1 link revoked; 2 consoles closed" in n for n in notifications(app)))
        assert [s.close_code for s in sockets] == [4001, 4001, None]  # CLOSE_REVOKED; bob's stays
        await wait_until(lambda: table.viewers == {bob.uuid: 1})
        assert row_of(app, "net101-alice").rstrip().endswith(" 0")


async def test_the_tui_runs_the_console_server_itself(lab: Lab, settings: Settings,
                                                      made_apps: list[web.Application]) -> None:
    port = unused_port()
    app = VMManagerApp(lab=lab, log_visible=True, serve=("127.0.0.1", port))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.server_url is not None)
        assert app.server_url == f"http://127.0.0.1:{port}"
        assert f"serving consoles at http://127.0.0.1:{port}" in log_text(app)
        assert settings.admin_socket.exists()
        alice = vm_named(app, "net101-alice")
        await wait_until(lambda: app.main.table.viewers is not None)
        assert row_of(app, "net101-alice").rstrip().endswith(" 0")

        app.main.table.move_to(alice.key)
        screen = await share(app, pilot)
        (made,) = screen.links
        assert made.url.startswith(f"http://127.0.0.1:{port}/c/")
        add_viewer(made_apps[-1], made.id, alice.uuid)
        await pilot.press("escape")
        app.main.poll_viewers()
        await wait_until(lambda: app.main.table.viewers == {alice.uuid: 1})
        assert row_of(app, "net101-alice").rstrip().endswith(" 1")
    # stopped with the app: the consoles closed, the admin socket gone, the port free
    assert app.server_url is None
    assert len(made_apps[-1][VIEWERS]) == 0
    assert not settings.admin_socket.exists()
    assert await admin_client.call(settings, "GET", "/viewers") is None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_second_server_is_refused_and_the_tui_goes_on(server, lab: Lab, settings: Settings) -> None:
    app = VMManagerApp(lab=lab, log_visible=True, serve=("127.0.0.1", unused_port()))
    async with app.run_test(size=SIZE):
        await wait_until(lambda: any("Console server not started" in n for n in notifications(app)))
        assert "a server already runs" in log_text(app)
        assert app.server_url is None
        await wait_until(lambda: app.main.table.viewers is not None)  # it counts the other one's
    assert settings.admin_socket.exists()  # the other server's socket is left alone


async def test_the_share_screen_copies_all_the_links_and_saves_them_as_csv(make_app,
                                                                           settings: Settings) -> None:
    import csv
    import io
    import stat as stat_mod

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        names = [vm.name for vm in app.lab.vms() if vm.meta.lab_class == "net101"]
        await mark(app, pilot, *names)
        screen = await share(app, pilot)
        assert len(screen.links) == len(names)
        await pilot.press("a")  # copy all: a line per link, VM tab URL
        lines = [f"{fmt.printable(link.vm_name)}\t{link.url}\n" for link in screen.links]
        assert app.clipboard == "".join(lines)
        await pilot.press("s")
        await wait_until(lambda: screen.saved is not None)
        saved = screen.saved
        assert saved is not None and saved.parent == settings.data_dir / "share-links"  # noqa: PT018
        assert stat_mod.S_IMODE(saved.stat().st_mode) == 0o600  # the URLs hold the tokens
        rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
        owners = {vm.name: vm.meta.owner for vm in app.lab.vms()}
        assert [(r["vm"], r["owner"], r["url"], r["id"]) for r in rows] == [
            (fmt.printable(link.vm_name), owners[link.vm_name], link.url, link.id) for link in screen.links]
        assert any(f"saved to {saved}" in n for n in notifications(app))
