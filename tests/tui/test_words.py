"""Words and small behaviours an operator tripped over in the first week (issue 12, item 15)."""

from __future__ import annotations

from support.tuitest import SIZE, shown_names, wait_until
from textual.widgets import Button, Input, Static
from textual.widgets._toast import Toast

from core.lab import Lab
from core.lifecycle import confirmation_word
from core.metadata import LabMeta
from core.model import VM, VMState
from core.records.requests import Kind, RequestStore
from tui.app import VMManagerApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.prompt import PromptScreen
from tui.screens.requests import RequestsScreen


async def test_one_pending_request_and_one_vcpu_are_singular(lab: Lab) -> None:
    alice = next(vm for vm in lab.vms() if vm.name == "net101-alice")
    store = RequestStore(lab.settings.database_path)
    try:
        made = store.create("alice", Kind.VCPUS, vm_uuid=alice.uuid, vm_name=alice.name, amount=1,
                            reason="a single core is enough")
        assert made.summary() == "1 vCPU for net101-alice"
        app = VMManagerApp(lab=lab)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            await pilot.press("ctrl+r")
            await wait_until(lambda: isinstance(app.screen, RequestsScreen))
            await pilot.pause()
            detail = str(app.screen.query_one("#requests-detail", Static).render())
            assert detail.splitlines()[0] == "1 pending request"  # then the selected request, whole
    finally:
        store.close()


async def test_resume_refuses_a_shut_off_vm_as_suspend_does(lab: Lab) -> None:
    chloe = [vm for vm in lab.vms() if vm.name == "net101-chloe"]  # shut off
    (suspended,) = await lab.act("suspend", chloe)
    (resumed,) = await lab.act("resume", chloe)
    assert not suspended.ok
    assert not resumed.ok
    assert resumed.message == "it is shut off: start it instead"


async def test_the_share_prompt_says_what_the_duration_means(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        assert prompt.error == "= 4 hours"  # the default, VMM_SHARE_TTL, in words
        explanation = str(prompt.query_one("#prompt-explanation", Static).render())
        assert "30m, 4h, 2d" in explanation
        assert "minutes, hours or days" in explanation
        prompt.query_one(Input).value = "1h30m"
        await pilot.pause()
        assert prompt.error == "= 1 hour 30 minutes"
        prompt.query_one(Input).value = "4x"
        await pilot.pause()
        assert "write it like 30m, 4h or 2d" in prompt.error
        await pilot.press("escape")


async def test_a_notification_leaves_a_dialogs_buttons_in_view(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+a", "h")  # a halt of every VM: a tall dialog
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        app.notify("a long message that takes a few lines " * 3, title="Something", timeout=30)
        await pilot.pause()
        toasts = [toast.region for toast in dialog.query(Toast)]
        assert toasts
        buttons = [dialog.query_one(f"#{name}", Button).region for name in ("cancel", "confirm")]
        assert all(not toast.overlaps(button) for toast in toasts for button in buttons)
        await pilot.press("n")


async def test_the_vms_in_a_confirmation_are_in_columns(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+a", "h")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        lines = [line.plain for line in dialog.lines]
        by_name = {line.split()[0]: line for line in lines}
        # the state, the owner and the class start at the same column on every line
        for word in ("running", "alice", "net101"):
            assert by_name["net101-alice"].index(word) == by_name["net101-bob"].index(
                word.replace("alice", "bob"))
        assert by_name["net101-alice"].index("running") == by_name["sys202-nathan"].index("crashed")
        await pilot.press("n")


async def test_an_unknown_filter_field_is_said(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"foo:bar")
        await pilot.pause()
        status = str(app.main.query_one("#status", Static).render())
        assert "unknown field 'foo'" in status
        assert shown_names(app) == []


async def test_deleting_a_whole_class_asks_for_its_name(make_app, lab: Lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"class:sys202", "enter", "ctrl+a", "ctrl+d")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.word == "sys202"
        confirm = dialog.query_one("#confirm", Button)
        assert confirm.disabled
        await pilot.press("y", "enter")  # a y (typed into the box) does not delete a class
        assert app.screen is dialog
        dialog.query_one(Input).value = ""
        await pilot.press(*"sys202")
        assert not confirm.disabled
        await pilot.press("enter")
        await wait_until(lambda: not any(vm.meta.lab_class == "sys202" for vm in lab.vms()))


def test_a_few_vms_deleted_take_a_y_and_many_the_count() -> None:
    vms = [VM("h", f"u{n}", f"v{n}", VMState.SHUTOFF, 1, 512, LabMeta(lab_class=c))
           for n, c in enumerate(["a", "a", "b", "b", "b", "b"])]
    assert confirmation_word("delete", vms[:1], vms) == ""  # one VM: y
    assert confirmation_word("halt", vms, vms) == ""  # not a delete: y
    assert confirmation_word("delete", vms[:2], vms) == "a"  # the whole class a
    assert confirmation_word("delete", vms[2:4], vms) == ""  # half of b: y
    assert confirmation_word("delete", vms[1:6], vms) == "5"  # many VMs of two classes: the count
