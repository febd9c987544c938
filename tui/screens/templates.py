"""The templates of ``templates.toml``: their settings, and whether QEMU can read each file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from core.errors import VMManagerError
from core.provision import FileCheck, Template, check_files, load_templates
from core.text import count
from tui import format as fmt

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class TemplateInfo:
    template: Template
    files: list[FileCheck]

    @property
    def ok(self) -> bool:
        return not any(check.problem for check in self.files)


def read_templates(settings: Settings, demo: bool = False) -> list[TemplateInfo]:
    """Every template with its file checks (blocking: file system and account lookups); the demo
    lab's files are fictional, never checked."""
    templates = load_templates(settings.templates_file, settings.templates_path)
    return [TemplateInfo(t, [] if demo else check_files(t))
            for t in sorted(templates.values(), key=lambda t: t.name)]


DEMO_FILES = "demo: fictional, none read"


def template_summary(template: Template) -> str:
    """One line: os, vCPUs and memory (for pickers)."""
    return (f"{template.name}  {template.os}, {count(template.vcpus, 'vCPU')}, "
            f"{fmt.size_mib(template.memory_mib)}")


def files_cell(files: list[FileCheck]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if not files:
        text.append(DEMO_FILES, "dim")
    for n, check in enumerate(files):
        if n:
            text.append("  ")
        if check.problem:
            text.append(f"✗ {check.role}: {fmt.printable(check.problem)}", "red")
        else:
            text.append(f"✓ {check.role}", "green")
    return text


def files_text(info: TemplateInfo) -> Text:
    """The files of one template in full: role, path, and ok or the problem."""
    text = Text()
    text.append(info.template.name, "bold")
    if info.template.cmdline:
        text.append("  cmdline ", "dim")
        text.append(fmt.printable(info.template.cmdline))
    if not info.files:
        text.append(f"\n  {DEMO_FILES}", "dim")
    for check in info.files:
        text.append(f"\n  {check.role:<7}", "bold")
        text.append(fmt.printable(str(check.path)))
        if check.problem:
            text.append(f"  {fmt.printable(check.problem)}", "red")
        else:
            text.append("  ok", "green")
    return text


class TemplatesScreen(Screen[None]):
    """Escape goes back; ``r`` reads the file again (after editing it)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="templates_back"),
        Binding("r", "reload", "Reload", id="templates_reload"),
    ]

    COLUMNS = ("Name", "OS", "Type", "vCPUs", "Memory", "Disk", "Files (QEMU can read?)")

    def __init__(self, settings: Settings, *, demo: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.demo = demo
        self.infos: list[TemplateInfo] = []
        self.error = ""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Templates", "bold"), ("  from ", "dim"),
                                   fmt.printable(str(self.settings.templates_file))),
                     id="templates-title")
        table: DataTable[Text | str] = DataTable(id="templates-table", cursor_type="row",
                                                 zebra_stripes=True)
        table.add_columns(*self.COLUMNS)
        yield table
        yield Static(Text("reading the templates…", "dim italic"), id="templates-detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.action_reload()

    @work(exclusive=True, group="templates", exit_on_error=False)
    async def action_reload(self) -> None:
        try:
            self.infos, self.error = await asyncio.to_thread(read_templates, self.settings, self.demo), ""
        except VMManagerError as exc:
            self.infos, self.error = [], exc.message
        except Exception as exc:  # never a traceback: say what went wrong
            self.infos, self.error = [], f"{type(exc).__name__}: {exc}"
        self.loaded = True
        self._show()

    def _show(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for info in self.infos:
            t = info.template
            table.add_row(Text(t.name, "bold"), t.os, t.domain_type, str(t.vcpus),
                          fmt.size_mib(t.memory_mib), f"{t.disk_size_gib} GiB", files_cell(info.files),
                          key=t.name)
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#templates-detail", Static)
        if self.error:
            detail.update(Text(fmt.printable(self.error, multiline=True), "red"))
        elif not self.infos:
            detail.update(Text(f"No templates: declare them in {self.settings.templates_file} "
                               "(see the README).", "yellow"))
        else:
            row = self.query_one(DataTable).cursor_row
            detail.update(files_text(self.infos[min(max(row, 0), len(self.infos) - 1)]))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        if self.infos:
            self._show_detail()
