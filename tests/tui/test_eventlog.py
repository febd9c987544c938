"""The event log follows the table's filter, counts repeats, and sets the operator's own lines apart."""

from __future__ import annotations

from support.tuitest import log_text, vm_named, wait_until

from core.lab import Lab
from tui.widgets.eventlog import MINE_STAMP


async def test_the_log_follows_the_filter_counts_repeats_and_marks_my_actions(make_app, lab: Lab) -> None:
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        log = app.main.event_log
        for name in ("net101-alice", "sys202-manon"):  # running: "already running", twice each
            assert app.main.table.move_to(vm_named(app, name).key)
            await pilot.press("s")
            await wait_until(lambda n=name: f"✓ start {n}: already running" in log_text(app))
            await pilot.press("s")
            await wait_until(lambda n=name: f"✓ start {n}: already running ×2" in log_text(app))
        text = log.text
        assert text.count("✓ start net101-alice: already running") == 1  # one line, counted
        assert "start requested on 1 VM ×4" in text  # alternating lines collapse too

        mine = [e for e in log.entries if "already running" in e.line.plain]
        assert [e.mine for e in mine] == [True, True]
        theirs = [e for e in log.entries if "connected" in e.line.plain]  # the host's: not mine
        assert theirs
        assert not any(e.mine for e in theirs)
        assert mine[0].text().spans[0].style == MINE_STAMP  # drawn apart: the time in reverse

        await pilot.press("slash", *"class:sys202", "enter")
        await pilot.pause()
        shown = log.shown_text
        assert "sys202-manon: already running" in shown
        assert "net101-alice" not in shown  # not in the table, not in the log
        assert "start requested on 1 VM" in shown  # lines about no VM stay
        assert "connected" in shown

        await pilot.press("escape")  # the filter cleared: every line again
        await pilot.pause()
        assert "net101-alice: already running" in log.shown_text
