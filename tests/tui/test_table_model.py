"""The VM table's model without Textual: filter, sort, marks, the cursor by key, the layout.

No app and no Pilot here: :class:`tui.tablemodel.TableModel` is fed plain VM records, as the
widget feeds it the inventory's.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from support.cli import CHECKOUT

from core.metadata import LabMeta
from core.model import VM, Change, Figures, VMState
from tui import format as fmt
from tui.screens.detail import summary_text
from tui.screens.help import help_text
from tui.tablemodel import COLUMNS, NO_COUNT, TableModel, compute_layout, fit, line_pieces

LONG = "net101-" + "x" * 33  # 40 characters: a name column's most


def vm(name: str, state: VMState = VMState.RUNNING, owner: str = "", lab_class: str = "", *,
       host: str = "localhost", vcpus: int = 1, memory_mib: int = 1024, ips: tuple[str, ...] = (),
       started_at: float | None = None) -> VM:
    return VM(host, f"uuid-{host}-{name}", name, state, vcpus, memory_mib, LabMeta(owner, lab_class),
              ips=ips, started_at=started_at)


ALICE = vm("net101-alice", VMState.RUNNING, "alice", "net101", vcpus=2, memory_mib=2048, ips=("10.0.0.5",))
BOB = vm("net101-bob", VMState.SHUTOFF, "bob", "net101")
CHLOE = vm("sys202-chloe", VMState.PAUSED, "chloe", "sys202", vcpus=4, memory_mib=4096)
DAVID = vm("Sys202-david", VMState.CRASHED, "", "sys202")  # no owner; a capital sorts as lowercase


def model_of(*vms: VM) -> TableModel:
    model = TableModel()
    model.set_vms(vms or (ALICE, BOB, CHLOE, DAVID))
    return model


def names(model: TableModel) -> list[str]:
    return [v.name for v in model.visible_vms()]


# -- filter --
def test_the_query_language_filters_the_rows() -> None:
    model = model_of()
    assert names(model) == ["net101-alice", "net101-bob", "sys202-chloe", "Sys202-david"]
    for text, expected in [
        ("state:running", ["net101-alice"]),
        ("class:sys202", ["sys202-chloe", "Sys202-david"]),
        ("owner:bob", ["net101-bob"]),
        ("!state:running net101", ["net101-bob"]),
        ("re:^sys", ["sys202-chloe", "Sys202-david"]),  # regular expressions ignore case too
        ("ip:10.0.0", ["net101-alice"]),
        ("zzz", []),
        ("", ["net101-alice", "net101-bob", "sys202-chloe", "Sys202-david"]),
    ]:
        model.set_query(text)
        assert names(model) == expected, text
    status = model.status()
    assert (status.total, status.shown) == (4, 4)


def test_the_same_query_again_does_nothing_and_a_bad_regex_is_reported() -> None:
    model = model_of()
    assert model.set_query("net101") is True
    assert model.set_query("net101") is False
    model.set_query("re:net101-(")
    assert "bad regex" in model.status().query_error
    assert names(model) == []


def test_a_change_enters_and_leaves_the_filter() -> None:
    model = model_of()
    model.set_query("state:running")
    applied = model.apply([Change("changed", dataclasses.replace(BOB, state=VMState.RUNNING))])
    assert applied.reordered
    assert names(model) == ["net101-alice", "net101-bob"]
    applied = model.apply([Change("changed", dataclasses.replace(ALICE, state=VMState.PAUSED))])
    assert applied.reordered
    assert names(model) == ["net101-bob"]


def test_a_shown_figure_that_moves_repaints_its_row_in_place() -> None:
    model = model_of()
    applied = model.apply([Change("changed", dataclasses.replace(ALICE, vcpus=3))])
    assert applied == (False, False, [ALICE.key], [])  # same width, same place: only its row
    applied = model.apply([Change("changed", dataclasses.replace(ALICE, vcpus=3))])
    assert applied.dirty == []  # nothing shown moved: nothing to repaint


# -- sort --
def test_sort_by_column_and_reverse() -> None:
    model = model_of()
    model.sort_by("state")
    assert [v.state.value for v in model.visible_vms()] == ["crashed", "paused", "running", "shutoff"]
    assert model.reverse_sort() is True
    assert [v.state.value for v in model.visible_vms()] == ["shutoff", "running", "paused", "crashed"]
    model.sort_by("owner", reverse=False)
    assert names(model) == ["net101-alice", "net101-bob", "sys202-chloe", "Sys202-david"]  # no owner: last
    model.sort_by("vcpus")
    assert names(model)[-1] == "sys202-chloe"  # 4 vCPUs
    assert names(model)[:2] == ["net101-bob", "Sys202-david"]  # 1 each: then by name
    model.sort_by("memory", reverse=True)
    assert names(model)[:2] == ["sys202-chloe", "net101-alice"]


def test_the_sort_cycles_over_the_columns_the_host_column_only_with_hosts() -> None:
    model = model_of()
    seen = [model.cycle_sort() for _ in range(12)]
    assert seen == ["state", "owner", "class", "template", "ip", "vcpus", "memory", "cpu", "uptime",
                    "created", "disk", "name"]
    model.layout(60)  # only the columns shown are sorted by: no template, uptime or creation day
    assert [model.cycle_sort() for _ in range(8)] == ["state", "owner", "class", "ip", "vcpus", "memory",
                                                      "cpu", "name"]
    model.apply([Change("added", vm("lab2-vm", host="lab2"))])
    assert model.multi_host
    model.layout(60)  # drawn again: with two hosts, the host column shows at any width
    assert model.cycle_sort() == "host"


def test_uptime_sorts_the_shortest_first_and_the_stopped_last() -> None:
    model = model_of(vm("a-old", started_at=100.0), vm("b-stopped", VMState.SHUTOFF),
                     vm("c-new", started_at=900.0))
    model.sort_by("uptime")
    assert names(model) == ["c-new", "a-old", "b-stopped"]
    model.reverse_sort()
    assert names(model) == ["b-stopped", "a-old", "c-new"]


# -- marks --
def test_marks_survive_a_filter_and_act_on_hidden_vms_too() -> None:
    model = model_of()
    assert model.toggle_mark() == ALICE.key  # the cursor starts on the first row
    model.move_cursor(2)
    assert model.toggle_mark() == CHLOE.key
    model.set_query("class:net101")
    assert model.marked == {ALICE.key, CHLOE.key}
    status = model.status()
    assert (status.marked, status.marked_hidden) == (2, 1)
    assert [v.name for v in model.targets()] == ["net101-alice", "sys202-chloe"]  # shown first
    model.set_query("")
    assert model.status().marked_hidden == 0
    assert model.toggle_mark() == ALICE.key  # again: unmarked
    assert model.marked == {CHLOE.key}


def test_marks_of_a_removed_vm_go_with_it() -> None:
    model = model_of()
    assert model.mark_visible() == 4
    applied = model.apply([Change("removed", BOB)])
    assert applied.reordered
    assert applied.removed == [BOB.key]
    assert model.marked == {ALICE.key, CHLOE.key, DAVID.key}
    model.set_vms([ALICE, CHLOE])  # after a reconnection: the marks of VMs still there stay
    assert model.marked == {ALICE.key, CHLOE.key}
    assert model.clear_marks() == 2
    assert model.targets() == [ALICE]  # no marks: the cursor's VM


def test_without_marks_the_target_is_the_cursor_vm_or_nothing() -> None:
    model = model_of()
    model.move_cursor(1)
    assert model.targets() == [BOB]
    model.set_query("zzz")
    assert model.targets() == []
    assert model.cursor_vm is None
    assert model.toggle_mark() is None


# -- cursor --
def test_the_cursor_follows_its_vm_across_a_resort() -> None:
    model = model_of()
    model.move_cursor(1)
    assert model.cursor_vm == BOB
    model.sort_by("state")  # crashed, paused, running, shutoff: bob goes last
    assert model.cursor_vm == BOB
    assert model.cursor == 3
    model.reverse_sort()
    assert (model.cursor, model.cursor_vm) == (0, BOB)
    crashed = dataclasses.replace(BOB, state=VMState.CRASHED)
    applied = model.apply([Change("changed", crashed)])  # bob moves in the sort: last now
    assert applied.reordered
    assert names(model) == ["net101-alice", "sys202-chloe", "Sys202-david", "net101-bob"]
    assert (model.cursor, model.cursor_vm) == (3, crashed)


def test_the_cursor_goes_to_the_first_match_of_a_new_filter_and_is_clamped() -> None:
    model = model_of()
    model.move_cursor(99)
    assert model.cursor == 3
    assert model.move_cursor(-5) == DAVID.key  # the key it left
    assert model.cursor == 0
    model.move_cursor(3)
    model.set_query("sys")
    assert (model.cursor, model.cursor_vm) == (0, CHLOE)
    model.apply([Change("removed", CHLOE)])  # its VM gone: the cursor stays on the line
    assert model.cursor_vm == DAVID


# -- layout --
def test_layout_at_80_columns_one_host() -> None:
    model = model_of()
    assert model.columns(80) == ["name", "state", "owner", "class", "template", "ip", "vcpus", "memory",
                                 "cpu", "uptime", "viewers"]  # short names: room for the template too
    widths = dict(zip(model.columns(80), (w for _, w in model.layout(80)), strict=True))
    # the widest cell of each column, at least its title (the sorted one's with its arrow)
    assert widths == {"name": 12, "state": 7, "owner": 5, "class": 6, "template": 8, "ip": 8, "vcpus": 4,
                      "memory": 3, "cpu": 4, "uptime": 6, "viewers": 4}
    line = model.row_text(0, 80, now=0.0)
    assert len(line) == 80
    assert line.split() == ["net101-alice", "running", "alice", "net101", "—", "10.0.0.5", "2", "2G", "—",
                            "—", NO_COUNT]
    assert model.header_text(80).split() == ["NAME▲", "STATE", "OWNER", "CLASS", "TEMPLATE", "IP", "VCPU",
                                             "MEM", "CPU%", "UPTIME", "VIEW"]


def test_a_long_name_drops_the_least_useful_columns_before_it_is_cut() -> None:
    model = model_of(ALICE, vm(LONG, owner="bob", lab_class="net101"))
    narrow = dict(zip(model.columns(80), (w for _, w in model.layout(80)), strict=True))
    # VIEW, then the template and the creation day went; the name took the room they left
    assert list(narrow) == ["name", "state", "owner", "class", "ip", "vcpus", "memory", "cpu", "uptime"]
    assert 1 + len(narrow) + sum(narrow.values()) == 80
    assert narrow["name"] == 80 - 10 - (7 + 5 + 6 + 8 + 4 + 3 + 4 + 6) > 24
    line = model.row_text(names(model).index(LONG), 80, now=0.0)
    assert len(line) == 80
    assert line.split()[0] == LONG[:narrow["name"] - 1] + "…"
    assert model.columns(60) == ["name", "state", "owner", "class", "memory", "cpu"]  # IP, VCPU, UPTIME gone
    wide = dict(zip(model.columns(160), (w for _, w in model.layout(160)), strict=True))
    assert wide["name"] == 40
    assert LONG in model.row_text(names(model).index(LONG), 160, now=0.0)
    assert len(model.row_text(0, 160, now=0.0)) == 160


def test_headers_are_never_cut_the_sorted_one_keeps_room_for_its_arrow() -> None:
    model = model_of()
    for column in ("name", "vcpus", "cpu", "created"):
        model.sort_by(column)
        for width in (40, 60, 80, 120, 200):
            titles = model.header_text(width).split()
            assert all(title.rstrip("▲") in {c.title for c in COLUMNS} for title in titles), (width, titles)


def test_a_wide_terminal_shows_template_and_creation_day_and_widens_the_gaps() -> None:
    made = dataclasses.replace(ALICE, meta=LabMeta("alice", "net101", "debian12", "2026-09-01T08:00:00Z"))
    model = model_of(made, BOB)
    assert model.columns(80)[-1] == "viewers"
    assert "created" not in model.columns(80)
    assert model.columns(200)[-4:] == ["uptime", "viewers", "created", "disk"]
    assert model.layout(80).gap == 1
    assert model.layout(200).gap == 3
    row = model.row_text(0, 200, now=0.0)
    assert "   debian12   " in row
    assert row.split()[-2:] == ["2026-09-01", "—"]  # then its disks: not running, no figures
    assert model.row_text(1, 200, now=0.0).split()[4] == "—"  # no template in its metadata


def test_a_second_host_adds_the_host_column() -> None:
    model = model_of()
    assert "host" not in model.columns(160)
    applied = model.apply([Change("added", vm("lab2-vm", host="lab2"))])
    assert applied.widths
    assert model.columns(160)[:3] == ["name", "host", "state"]
    assert "lab2" in model.row_text(names(model).index("lab2-vm"), 160, now=0.0).split()
    model.apply([Change("removed", vm("lab2-vm", host="lab2"))])
    assert "host" not in model.columns(160)


def test_the_layout_is_kept_until_something_it_depends_on_changes() -> None:
    model = model_of()
    first = model.layout(80)
    assert model.layout(80) is first
    assert model.layout(81) is not first
    model.apply([Change("added", vm("a-much-longer-name-than-the-others"))])
    assert model.layout(160)[0][1] == len("a-much-longer-name-than-the-others")


def test_the_flexible_columns_shrink_to_their_minimum_and_no_further() -> None:
    content = [c.maximum for c in COLUMNS]
    layout = compute_layout(content, multi_host=True, width=20)
    assert {COLUMNS[i].key: w for i, w in layout}["name"] == COLUMNS[0].minimum
    assert all(w >= COLUMNS[i].minimum for i, w in layout)
    assert [COLUMNS[i].key for i, _ in layout] == ["name", "host", "state"]  # the ones never dropped


def test_cells_are_fitted_and_cut_by_display_width() -> None:
    assert fit("abc", 5, right=False) == "abc  "
    assert fit("abc", 5, right=True) == "  abc"
    assert fit("abcdef", 4, right=False) == "abc…"
    assert fit("日本語", 4, right=False) == "日 …"  # two cells a glyph: the second would not fit
    pieces = line_pieces("●", ["abc", "defgh"], 8)
    assert pieces == ["●", " abc", " de"]  # cut at the edge
    assert "".join(line_pieces(" ", ["a"], 6)) == "  a   "


def test_uptime_and_viewers_are_the_clock_and_the_console_server() -> None:
    model = model_of(vm("a", started_at=1000.0))
    assert model.row_text(0, 80, now=1042.0).split()[-2:] == ["42s", NO_COUNT]
    assert model.set_viewers({"uuid-localhost-a": 2})
    assert not model.set_viewers({"uuid-localhost-a": 2})
    assert model.row_text(0, 80, now=1042.0).split()[-1] == "2"


def test_the_model_loads_no_textual() -> None:
    code = "import sys, tui.tablemodel; print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=CHECKOUT)
    assert out.stdout.strip() == "[]"


def test_memory_shows_the_guests_use_only_when_it_reports_one_and_says_which() -> None:
    reported = dataclasses.replace(ALICE, figures=Figures(mem_used_mib=310))
    model = model_of(reported, BOB)
    assert model.row_text(0, 80, now=0.0).split()[6] == "310M/2G"  # used/allocated
    assert model.row_text(1, 80, now=0.0).split()[6] == "1G"  # allocated alone
    assert fmt.memory_detail(reported) == "310M used of 2G"
    assert fmt.memory_detail(ALICE) == "2G allocated (no use reported)"
    assert fmt.memory_detail(BOB) == "1G allocated"  # shut off: nothing to report
    help_lines = help_text([], "keymap.toml").plain.splitlines()
    assert any(line.split()[:2] == ["MEM", "used/allocated"] and "allocation alone" in line
               for line in help_lines)


def test_a_vm_being_halted_shows_halting_and_the_time_left() -> None:
    halting = dataclasses.replace(ALICE, halting_until=1042.4)
    model = model_of(halting, BOB)
    row = model.row_text(0, 80, now=1000.0)
    assert "halting… 42s " in row
    assert "running" not in row
    assert "halting… 2s " in model.row_text(0, 80, now=1040.0)  # the clock's, as the uptime
    assert model.row_text(1, 80, now=1000.0).split()[1] == "shutoff"
    summary = summary_text(halting, 1000.0).plain
    assert "net101-alice  halting… 42s  (ACPI shutdown sent; powered off then" in summary
    off = dataclasses.replace(halting, state=VMState.SHUTOFF)  # a stopped VM is no longer halting
    assert fmt.state(off, 1000.0) == "shutoff"


def test_disk_shows_on_wide_terminals_what_a_running_vms_disks_take_and_their_size() -> None:
    written = dataclasses.replace(ALICE, figures=Figures(disk_used_mib=12, disk_size_mib=1024))
    model = model_of(written, BOB)
    assert "disk" not in model.columns(80)  # the first to go
    assert model.columns(200)[-1] == "disk"
    assert model.row_text(0, 200, now=0.0).split()[-1] == "12M/1G"
    assert model.row_text(1, 200, now=0.0).split()[-1] == "—"  # shut off: no bulk stats
    fresh = dataclasses.replace(ALICE, figures=Figures(disk_used_mib=0.35, disk_size_mib=1024))
    assert fmt.disk(fresh) == "<1M/1G"  # an overlay nothing was written to yet
    help_lines = help_text([], "keymap.toml").plain.splitlines()
    assert any(line.split()[:1] == ["DISK"] for line in help_lines)
