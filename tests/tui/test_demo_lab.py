"""The demo lab shows the headline features: templates, provisioning a class, share links, all
without touching the operator's own data (its database, its folders) or making any file."""

from __future__ import annotations

from pathlib import Path

from support.tuitest import SIZE, wait_until
from textual.widgets import DataTable, Input, Select

from core.demo import DEMO_NOTE
from core.lab import DEMO_URI
from core.settings import ConsoleSettings, ProvisionSettings, Settings
from tui.app import VMManagerApp
from tui.screens.prompt import PromptScreen
from tui.screens.provision import ProvisionScreen
from tui.screens.share import ShareScreen
from tui.screens.templates import TemplatesScreen


async def test_the_demo_lists_templates_provisions_a_class_and_shares_a_link(tmp_path: Path) -> None:
    real = Settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config",
                    provision=ProvisionSettings(student_vms_dir=tmp_path / "students"),
                    consoles=ConsoleSettings(socket_dir=tmp_path / "consoles"))
    users = tmp_path / "demo1.csv"
    users.write_text("username,full_name,password,ssh_key\nzoe,Zoé Martin,,\nyann,Yann,,\n")
    app = VMManagerApp(real, DEMO_URI, log_visible=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.lab is not None and bool(app.main.table.all_vms()))
        assert app.lab is not None and app.lab.demo  # noqa: PT018

        await pilot.press("t")  # templates: the demo's own
        templates = app.screen
        assert isinstance(templates, TemplatesScreen)
        await wait_until(lambda: templates.loaded)
        assert [info.template.name for info in templates.infos] == ["demo-linux", "demo-windows"]
        assert templates.query_one(DataTable).row_count == 2
        await pilot.press("escape")

        await pilot.press("n")  # a class, "provisioned" in the test driver's memory
        screen = app.screen
        assert isinstance(screen, ProvisionScreen)
        await wait_until(lambda: screen.templates_loaded)
        screen.query_one("#template", Select).value = "demo-linux"
        screen.query_one("#class", Input).value = "demo1"
        screen.query_one("#users", Input).value = str(users)
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_until(lambda: not screen.busy)
        await pilot.press("ctrl+g")
        await wait_until(lambda: screen.report is not None, limit=30)
        assert screen.report is not None and not screen.report.failed, screen.output_lines  # noqa: PT018
        await pilot.press("escape")
        await wait_until(lambda: {"demo1-zoe", "demo1-yann"} <= {vm.name for vm in app.main.table.all_vms()})

        await pilot.press("c")  # a share link, under a throwaway key
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, ShareScreen))
        share = app.screen
        assert isinstance(share, ShareScreen)
        assert len(share.links) == 1
        assert DEMO_NOTE in str(share.query_one("#share-notes").render())
        scratch = app.lab.settings.data_dir
        assert scratch != real.data_dir
        assert app.lab.settings.database_path.exists()
    # nothing of the demo in the operator's own data, no file made for its VMs, its scratch gone
    assert not real.database_path.exists()
    assert not real.provision.student_vms_dir.exists()
    assert not real.consoles.socket_dir.exists()
    assert not scratch.exists()
