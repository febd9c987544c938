"""The new-class screen, the templates view, and reset/snapshot/revert from the VM list.

Provisioning runs for real against libvirt's test driver: the overlays (qemu-img), seed ISOs and
student folders are made under a /var/tmp folder QEMU's user can pass, and the domains are defined
on the test driver, so they reach the table through the inventory's own events.
"""

from __future__ import annotations

import dataclasses
import stat
import subprocess
from pathlib import Path

import pytest
from support.tuitest import SIZE, log_text, notifications, vm_named, wait_until
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Input,
    Label,
    ProgressBar,
    RadioButton,
    Select,
    Static,
)

from core.provision.execution import Outcome, Report
from core.provision.kvmprobe import DEADLINE
from core.provision.roster import read_roster
from core.settings import ActionSettings, ConsoleSettings, ProvisionSettings, Settings
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.prompt import ChoiceScreen, PromptScreen
from tui.screens.provision import WINDOWS_NOTE, ProvisionScreen
from tui.screens.templates import TemplatesScreen

HEADER = "username,full_name,password,ssh_key\n"


@pytest.fixture
def settings(tmp_path: Path, world_dir: Path) -> Settings:
    """Overrides conftest's: templates, a student folder root and a console socket folder."""
    image = world_dir / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(image), "16M"], check=True,
                   capture_output=True)
    image.chmod(0o644)
    config = tmp_path / "config"
    config.mkdir()
    (config / "templates.toml").write_text(
        f'[templates.mini]\nimage = "{image}"\ndomain_type = "qemu"\nmemory_mib = 64\n'
        'disk_size_gib = 1\n'
        f'[templates.winmini]\nos = "windows"\nimage = "{image}"\ndomain_type = "qemu"\n'
        'memory_mib = 64\ndisk_size_gib = 1\n'
        '[templates.broken]\nkernel = "/nonexistent/vmm/vmlinuz"\ndomain_type = "qemu"\n')
    return Settings(
        config_dir=config,
        data_dir=tmp_path / "data",
        actions=ActionSettings(halt_timeout=5.0),
        provision=ProvisionSettings(student_vms_dir=world_dir / "students"),
        consoles=ConsoleSettings(socket_dir=world_dir / "consoles"),
    )


def roster(tmp_path: Path, rows: str, name: str = "users.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + rows)
    return path


async def open_provision(app, pilot) -> ProvisionScreen:  # noqa: ANN001
    await pilot.pause()
    await pilot.press("n")
    screen = app.screen
    assert isinstance(screen, ProvisionScreen)
    await wait_until(lambda: screen.templates_loaded)
    return screen


async def fill(pilot, screen: ProvisionScreen, template: str, lab_class: str, where: str) -> None:  # noqa: ANN001
    """Choose the template, type the class as an operator would, paste the roster's path (long
    temporary paths typed key by key would take seconds)."""
    screen.query_one("#template", Select).value = template
    field = screen.query_one("#class", Input)
    field.focus()
    field.value = ""
    await pilot.press(*lab_class)
    screen.query_one("#users", Input).value = where
    await pilot.pause()


async def preview(pilot, screen: ProvisionScreen) -> None:  # noqa: ANN001
    await pilot.press("ctrl+r")
    await wait_until(lambda: not screen.busy)
    await pilot.pause()


def plan_rows(screen: ProvisionScreen) -> list[list[str]]:
    table = screen.query_one("#provision-plan", DataTable)
    return [[str(cell) for cell in table.get_row_at(n)] for n in range(table.row_count)]


def run_button(screen: ProvisionScreen) -> Button:
    return screen.query_one("#run", Button)


async def test_preview_lists_each_student_then_provision_makes_the_vms(make_app, lab, tmp_path: Path,
                                                                       settings: Settings) -> None:
    users = roster(tmp_path, "zoe,Zoé Martin,,\nyann,Yann,Secret123,\nxavier,,,\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        assert run_button(screen).disabled  # nothing previewed yet
        await fill(pilot, screen, "mini", "cls1", str(users))
        await preview(pilot, screen)
        lines = screen.output_lines
        assert lines[0].startswith("capacity: memory 192 MiB")  # capacity on top
        plan = plan_rows(screen)  # a table: VM, owner, host, template, what
        assert [row[0] for row in plan] == ["cls1-zoe", "cls1-yann", "cls1-xavier"]
        assert plan[1][1] == "yann"
        assert plan[1][3] == "mini"
        assert plan[1][4] == "new, password from the roster"
        assert not any(vm.name.startswith("cls1-") for vm in lab.vms())  # a preview makes nothing
        assert not settings.provision.student_vms_dir.exists()
        assert not run_button(screen).disabled

        await pilot.press("ctrl+g")
        await wait_until(lambda: screen.report is not None, limit=30)
        await pilot.pause()
        report = screen.output_lines
        assert report[0] == "class cls1: 3 of 3 VMs made"
        assert report[1:4] == ["✓ cls1-zoe (zoe): made", "✓ cls1-yann (yann): made",
                               "✓ cls1-xavier (xavier): made"]
        passwords = screen.report.passwords_file
        assert passwords is not None and stat.S_IMODE(passwords.stat().st_mode) == 0o600  # noqa: PT018
        assert any(str(passwords) in line for line in report)  # the path, never the passwords
        assert not any("Secret123" in line for line in report + lines)
        bar = screen.query_one(ProgressBar)
        assert (bar.progress, bar.total) == (3, 3)
        assert run_button(screen).disabled  # a plan is made once: preview again for more
        assert (settings.provision.student_vms_dir / "zoe" / "cls1-zoe" / "disk.qcow2").is_file()

        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        for user in ("zoe", "yann", "xavier"):  # through the inventory's events
            await wait_until(lambda u=user: any(vm.name == f"cls1-{u}" for vm in app.main.table.all_vms()))
        zoe = vm_named(app, "cls1-zoe")
        assert (zoe.meta.owner, zoe.meta.lab_class, zoe.meta.template) == ("zoe", "cls1", "mini")
        assert any("3 of 3 VMs made" in n for n in notifications(app))


async def test_a_bad_roster_shows_its_line_numbers_and_makes_nothing(make_app, lab, tmp_path: Path,
                                                                     settings: Settings) -> None:
    bad = roster(tmp_path, "zoe,Zoé,,\nBad User,x,,\nyann,,,not-a-key\n", "bad.csv")
    before = {vm.name for vm in lab.vms()}
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        await fill(pilot, screen, "mini", "cls2", str(bad))
        await preview(pilot, screen)
        lines = screen.output_lines
        assert lines[0] == "Invalid roster"
        assert any(line.startswith("line 3: invalid username 'Bad User'") for line in lines)
        assert any(line.startswith("line 4: not an SSH public key") for line in lines)
        assert "Invalid roster: nothing was made." in str(screen.query_one("#provision-status").render())
        assert run_button(screen).disabled
        await pilot.press("ctrl+g")  # refused: nothing previewed
        await pilot.pause()
        assert screen.report is None
        assert any("Preview first" in n for n in notifications(app))
    assert {vm.name for vm in lab.vms()} == before
    assert not settings.provision.student_vms_dir.exists()


async def test_a_student_root_qemu_cannot_pass_is_asked_about_then_let_through(
        make_app, lab, tmp_path: Path, settings: Settings, world_dir: Path) -> None:
    """As virt-manager asks for a disk QEMU cannot reach: no, and nothing changes; yes, and the preview
    says what the run will grant, and the run grants it (an ACL) before it makes the VMs."""
    home = world_dir / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    lab.settings = dataclasses.replace(
        settings,
        provision=dataclasses.replace(settings.provision, student_vms_dir=home / "checkout" / "student_vms"),
    )
    users = roster(tmp_path, "zoe,Zoé,Secret123,\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        await fill(pilot, screen, "mini", "cls8", str(users))
        for answer in ("n", "y"):
            await pilot.press("ctrl+r")
            await wait_until(lambda: isinstance(app.screen, ConfirmScreen))
            dialog = app.screen
            assert dialog.title_text == "Let QEMU (libvirt-qemu) pass 1 folder?"
            assert f"setfacl -m u:libvirt-qemu:x {home}" in dialog.consequence
            await pilot.press(answer)
            await wait_until(lambda: app.screen is screen and not screen.busy)
            await pilot.pause()
            assert acl_entries(home) == []  # neither an answer nor a preview changes anything
        assert f"folders: libvirt-qemu gets search permission (a POSIX ACL) on {home} before anything " \
               "is made" in screen.output_lines
        assert list(home.iterdir()) == []
        await pilot.press("ctrl+g")
        await wait_until(lambda: screen.report is not None, limit=30)
        await pilot.pause()
        assert screen.output_lines[0] == "class cls8: 1 of 1 VM made"
        assert f"libvirt-qemu may now pass {home} (POSIX ACL)" in screen.output_lines
    assert acl_entries(home) == ["user:libvirt-qemu:--x"]
    assert (home / "checkout" / "student_vms" / "zoe" / "cls8-zoe" / "disk.qcow2").is_file()


def acl_entries(folder: Path) -> list[str]:
    out = subprocess.run(["getfacl", "--omit-header", "--absolute-names", str(folder)], capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.startswith("user:libvirt-qemu")]


async def test_provision_needs_a_preview_of_exactly_the_inputs_shown(make_app, tmp_path: Path) -> None:
    users = roster(tmp_path, "zoe,,,\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        await preview(pilot, screen)  # an empty form: every missing input is named
        assert screen.output_lines == ["Cannot preview yet", "choose a template", "enter a class name",
                                       "enter the roster's path"]
        assert str(screen.query_one("#provision-status", Static).render()) == (  # what to do
            "To preview: choose a template, enter a class name, enter the roster's path, then "
            "Preview (ctrl+r).")
        await fill(pilot, screen, "mini", "cls3", str(users))
        await preview(pilot, screen)
        assert not run_button(screen).disabled
        screen.query_one("#class", Input).focus()
        await pilot.press("end", "x")  # the class is now cls3x: the preview no longer holds
        assert run_button(screen).disabled
        assert "preview again" in str(screen.query_one("#provision-status").render())
        await pilot.press("backspace")  # back to what was previewed
        assert not run_button(screen).disabled
        screen.query_one("#start", Checkbox).value = True
        await pilot.pause()
        assert run_button(screen).disabled
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert screen.report is None


async def test_a_clash_with_an_existing_vm_is_listed(make_app, tmp_path: Path) -> None:
    users = roster(tmp_path, "alice,,,\nzoe,,,\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        await fill(pilot, screen, "mini", "net101", str(users))  # net101-alice exists
        await preview(pilot, screen)
        assert screen.output_lines[0] == "Invalid input"
        assert "net101-alice: a VM of that name exists (it is never overwritten)" in screen.output_lines
        assert run_button(screen).disabled


async def test_only_the_missing_vms_keeps_those_that_exist_and_makes_the_new_one(
        make_app, lab, tmp_path: Path) -> None:
    """A late student joins net101: with the toggle, net101-alice (running) is kept untouched
    and only net101-zoe is made."""
    users = roster(tmp_path, "alice,,,\nzoe,,,\n")
    alice = next(vm for vm in lab.vms() if vm.name == "net101-alice")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        await fill(pilot, screen, "mini", "net101", str(users))
        await preview(pilot, screen)
        assert any("--add" in line and "only the missing VMs" in line for line in screen.output_lines)
        screen.query_one("#add", Checkbox).value = True
        await pilot.pause()
        await preview(pilot, screen)
        rows = plan_rows(screen)
        assert [row[0] for row in rows] == ["net101-zoe", "net101-alice"]
        assert rows[1][4] == "kept: exists, not touched"
        assert "1 VM to make, 1 VM kept" in str(screen.query_one("#provision-status").render())
        await pilot.press("ctrl+g")
        await wait_until(lambda: screen.report is not None, limit=30)
        assert [o.name for o in screen.report.outcomes] == ["net101-zoe"]
        assert screen.output_lines[0] == "class net101: 1 of 1 VM made"
        assert all(o.ok for o in screen.report.outcomes)
    same = next(vm for vm in lab.vms() if vm.name == "net101-alice")
    assert (same.uuid, same.state, same.meta) == (alice.uuid, alice.state, alice.meta)


async def test_an_ldap_group_without_ldap_settings_says_what_to_set(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        screen.query_one("#source-ldap", RadioButton).value = True
        await pilot.pause()
        assert str(screen.query_one("#users-label", Label).render()) == "Group DN"
        await fill(pilot, screen, "mini", "cls4", "cn=info1,ou=groups,dc=example,dc=org")
        await preview(pilot, screen)
        assert screen.output_lines[0] == "Configuration error"
        assert "LDAP is not configured: set LDAP_HOST" in screen.output_lines[1]
        assert run_button(screen).disabled


async def test_a_windows_template_says_first_boot_takes_minutes(make_app, tmp_path: Path) -> None:
    users = roster(tmp_path, "zoe,,,\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_provision(app, pilot)
        note = screen.query_one("#provision-note")
        await fill(pilot, screen, "mini", "cls5", str(users))
        assert not note.display
        screen.query_one("#template", Select).value = "winmini"
        await pilot.pause()
        assert note.display
        assert "5–10 minutes" in WINDOWS_NOTE
        await preview(pilot, screen)
        assert WINDOWS_NOTE in screen.output_lines


async def start_run(app, pilot, template: str, lab_class: str, users: Path) -> ProvisionScreen:  # noqa: ANN001
    """The new-class screen, filled, previewed, and Provision pressed."""
    screen = await open_provision(app, pilot)
    await fill(pilot, screen, template, lab_class, str(users))
    await preview(pilot, screen)
    await pilot.press("ctrl+g")
    return screen


async def test_leaving_is_refused_while_vms_are_being_made(make_app, lab, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    users = roster(tmp_path, "zoe,,,\nyann,,,\n")
    release = asyncio.Event()

    async def provision(plan, progress=None) -> Report:  # noqa: ANN001
        first = Outcome(plan.vms[0].name, "zoe", True, "made")
        progress(1, 2, first)
        await release.wait()
        second = Outcome(plan.vms[1].name, "yann", False, "failed at define: injected")
        progress(2, 2, second)
        return Report([first, second], None)

    monkeypatch.setattr(lab, "provision", provision)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(app, pilot, "mini", "cls6", users)
        await wait_until(lambda: screen.query_one(ProgressBar).progress == 1)
        assert screen.output_lines[-1] == "✓ cls6-zoe (zoe): made"
        assert screen.query_one("#provision-form").disabled
        await pilot.press("escape")
        assert app.screen is screen
        assert any("VMs are being made" in n for n in notifications(app))
        await pilot.press("ctrl+q")  # nor may the app quit
        await pilot.pause()
        assert app.is_running
        assert app.screen is screen
        release.set()
        await wait_until(lambda: screen.report is not None)
        await pilot.pause()
        assert screen.output_lines[:3] == ["class cls6: 1 of 2 VMs made, 1 failed",
                                           "✓ cls6-zoe (zoe): made",
                                           "✗ cls6-yann (yann): failed at define: injected"]
        assert not screen.query_one("#provision-form").disabled
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_a_first_kvm_probe_is_said_while_it_runs(make_app, lab, tmp_path: Path, settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Domain type auto and no probe answer cached: the status says what the wait is (a probe boot
    of up to DEADLINE seconds before the first VM is made), not "Making 0 of 1"."""
    import asyncio

    templates = settings.config_dir / "templates.toml"
    image = next(line for line in templates.read_text().splitlines() if line.startswith("image"))
    templates.write_text(templates.read_text() + f"[templates.automini]\n{image}\nmemory_mib = 64\n")
    users = roster(tmp_path, "zoe,,,\n")
    release = asyncio.Event()
    seen: list[str] = []

    async def provision(plan, progress=None) -> Report:  # noqa: ANN001 - holds the probe's wait open
        seen.append(plan.domain_type)
        await release.wait()
        return Report([Outcome(plan.vms[0].name, "zoe", True, "made")], None)

    monkeypatch.setattr(lab, "provision", provision)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await start_run(app, pilot, "automini", "cls7", users)
        await wait_until(lambda: seen == ["auto"])
        status = str(screen.query_one("#provision-status", Static).render())
        assert "KVM probe boot" in status and f"{DEADLINE:g} s" in status, status  # noqa: PT018
        release.set()
        await wait_until(lambda: screen.report is not None)


async def test_the_templates_view_lists_each_template_and_its_files(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("t")
        screen = app.screen
        assert isinstance(screen, TemplatesScreen)
        await wait_until(lambda: screen.loaded)
        await pilot.pause()
        table = screen.query_one(DataTable)
        rows = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)]
                for i in range(table.row_count)}
        assert set(rows) == {"broken", "mini", "winmini"}
        assert rows["mini"][1:6] == ["linux", "qemu", "1", "64M", "1 GiB"]
        assert rows["mini"][6] == "✓ image"
        assert rows["winmini"][1] == "windows"
        assert rows["broken"][6] == "✗ kernel: missing"
        detail = str(screen.query_one("#templates-detail").render())
        assert "/nonexistent/vmm/vmlinuz" in detail and "missing" in detail  # noqa: PT018
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_snapshot_asks_a_valid_name_then_revert_asks_and_confirms(make_app, lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.main.table.move_to(vm_named(app, "net101-chloe").key)
        await pilot.press("ctrl+s")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        assert prompt.title_text == "Snapshot net101-chloe"
        await pilot.press(*"bad name", "enter")  # refused in the box, with the reason
        assert app.screen is prompt
        assert "invalid snapshot name 'bad name'" in prompt.error
        prompt.query_one(Input).value = ""
        await pilot.press(*"before-lab", "enter")
        assert isinstance(app.screen, MainScreen)  # a snapshot loses nothing: no confirmation
        await wait_until(lambda: "✓ snapshot net101-chloe: snapshot before-lab taken" in log_text(app))

        await pilot.press("V")  # the snapshots the VM has, to pick from: no name to get wrong
        await wait_until(lambda: isinstance(app.screen, ChoiceScreen))
        assert app.screen.values == ["before-lab"]
        await pilot.press("enter")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.title_text == "Revert 1 VM?"
        assert "back to its snapshot before-lab: everything written since is lost" in dialog.consequence
        assert "stays running, paused or shut off" in dialog.consequence
        await pilot.press("y")
        await wait_until(lambda: "✓ revert net101-chloe: reverted to before-lab" in log_text(app))

        app.main.table.move_to(vm_named(app, "net101-alice").key)
        await pilot.press("V")  # a VM without snapshots: said at once, nothing to confirm
        await wait_until(lambda: any("has no snapshot to revert to" in n for n in notifications(app)))
        assert isinstance(app.screen, MainScreen)
        await pilot.press("ctrl+s", "escape")  # cancelled at the prompt: nothing sent
        assert isinstance(app.screen, MainScreen)
        assert "snapshot cancelled" in log_text(app)


async def test_reset_asks_first_then_gives_a_fresh_disk(make_app, lab, tmp_path: Path,
                                                        settings: Settings) -> None:
    from core.provision.templates import load_templates

    template = load_templates(settings.templates_file, settings.templates_path)["mini"]
    students = read_roster(roster(tmp_path, "zoe,,,\n"))
    await lab.provision(await lab.plan_provision(template, "cls7", students))
    disk = settings.provision.student_vms_dir / "zoe" / "cls7-zoe" / "disk.qcow2"
    disk.write_bytes(disk.read_bytes() + b"written by the student")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: any(vm.name == "cls7-zoe" for vm in app.main.table.all_vms()))
        app.main.table.move_to(vm_named(app, "cls7-zoe").key)
        await pilot.press("R")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.title_text == "Reset 1 VM?"
        assert "fresh disk from its template: everything written since is lost" in dialog.consequence
        await pilot.press("n")  # cancelled: the disk keeps what was written
        assert b"written by the student" in disk.read_bytes()
        await pilot.press("R", "y")
        await wait_until(lambda: "✓ reset cls7-zoe: reset to its template" in log_text(app))
        assert b"written by the student" not in disk.read_bytes()


async def test_the_detail_view_lists_the_snapshots(make_app, lab) -> None:
    from core.lifecycle import Action
    from tui.screens.detail import DetailScreen

    chloe = next(vm for vm in lab.vms() if vm.name == "net101-chloe")
    (taken,) = await lab.act(Action.SNAPSHOT, [chloe], snapshot="before-lab")
    assert taken.ok, taken.message
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.main.table.move_to(vm_named(app, "net101-chloe").key)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        section = app.screen.query_one("#detail-snapshots")
        await wait_until(lambda: "before-lab" in str(section.render()))
        assert "current" in str(section.render())
