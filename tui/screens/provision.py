"""Provisioning a class: template, class name, students (a CSV roster or an LDAP group), a dry-run
preview with the capacity check, then the VMs made with a progress bar and a report.

Every call into the core runs in a worker, so the screen never waits. Provision is enabled only
after a successful preview of exactly the inputs on screen, and it makes that previewed plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    ProgressBar,
    RadioButton,
    RadioSet,
    RichLog,
    Select,
    Static,
)

from core.errors import VMManagerError
from core.model import Student
from core.provision import AUTO, KVM_PROBE_DEADLINE, Unreachable, read_roster
from core.storage import QEMU_USER, grant_command
from core.text import count
from tui import format as fmt
from tui.screens.confirm import ConfirmScreen
from tui.screens.templates import TemplateInfo, read_templates, template_summary

if TYPE_CHECKING:
    from core.lab import Lab
    from core.provision import Outcome, Plan, Report, Template

CSV, LDAP = "csv", "ldap"
WINDOWS_NOTE = ("Windows: each VM's first boot installs Windows and takes 5–10 minutes before "
                "its student can sign in.")
_SOURCE_LABELS = {CSV: ("CSV file", "path of the roster (username,full_name,password,ssh_key)"),
                  LDAP: ("Group DN", "cn=info1,ou=groups,dc=example,dc=org")}


@dataclass(frozen=True)
class Inputs:
    """What the form says; a preview is valid for exactly these."""

    template: str
    lab_class: str
    source: str  # CSV or LDAP
    where: str  # the roster's path, or the group's DN
    start: bool
    overcommit: bool
    add: bool = False  # only the roster's VMs that do not exist yet

    def missing(self) -> list[str]:
        found = []
        if not self.template:
            found.append("choose a template")
        if not self.lab_class:
            found.append("enter a class name")
        if not self.where:
            found.append("enter the roster's path" if self.source == CSV else "enter the group's DN")
        return found


def error_lines(exc: BaseException) -> tuple[str, list[str]]:
    """A title and the problem lines of an error (a core message lists one problem a line)."""
    if isinstance(exc, VMManagerError):
        return exc.title, [line.strip() for line in exc.message.splitlines() if line.strip()]
    return "Unexpected error", [f"{type(exc).__name__}: {exc}"]


class ProvisionScreen(Screen[None]):
    """Escape goes back (not while VMs are being made: they would be left half-made)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="provision_back"),
        Binding("ctrl+r", "preview", "Preview", id="provision_preview"),
        Binding("ctrl+g", "run", "Provision", id="provision_run"),
    ]

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab
        self.templates: dict[str, TemplateInfo] = {}
        self.templates_loaded = False
        self.plan: Plan | None = None
        self.plan_inputs: Inputs | None = None
        self.report: Report | None = None
        self.busy = ""  # "", "preview" or "provision"
        self.output_lines: list[str] = []  # what the output panel shows, as plain text

    # -- layout --
    def compose(self) -> ComposeResult:
        yield Static(Text("New class: a VM for every student, made from a template", "bold"),
                     id="provision-title")
        with Vertical(id="provision-form"):
            with Horizontal(classes="form-row"):
                yield Label("Template", classes="form-label")
                yield Select[str]([], prompt="reading the templates…", id="template", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Class", classes="form-label")
                yield Input(placeholder="class name, e.g. net101", id="class", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Users from", classes="form-label")
                with RadioSet(id="source", compact=True):
                    yield RadioButton("CSV file", value=True, id="source-csv", compact=True)
                    yield RadioButton("LDAP group", id="source-ldap", compact=True)
            with Horizontal(classes="form-row"):
                yield Label(_SOURCE_LABELS[CSV][0], id="users-label", classes="form-label")
                yield Input(placeholder=_SOURCE_LABELS[CSV][1], id="users", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("", classes="form-label")
                yield Checkbox("start when made", id="start", compact=True)
                yield Checkbox("overcommit (ignore the capacity check)", id="overcommit", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("", classes="form-label")
                yield Checkbox("only the missing VMs (keep those that exist)", id="add", compact=True)
            yield Static(Text(WINDOWS_NOTE, "yellow"), id="provision-note")
            with Horizontal(id="provision-buttons"):
                yield Button("Preview (ctrl+r)", id="preview", compact=True)
                yield Button("Provision (ctrl+g)", id="run", variant="primary", compact=True,
                             disabled=True)
        yield Static(id="provision-status")
        yield ProgressBar(total=1, id="provision-progress", show_eta=False)  # not indeterminate: no animation
        yield DataTable[str](id="provision-plan", cursor_type="row", zebra_stripes=True)
        yield RichLog(id="provision-output", wrap=True, min_width=20, markup=False, highlight=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#provision-note").display = False
        self.query_one(ProgressBar).display = False
        self.query_one("#provision-plan", DataTable).display = False
        self._status("Fill in the form, then Preview: nothing is made until you press Provision.")
        self.query_one("#template", Select).focus()
        self.load_templates()

    # -- the form --
    def inputs(self) -> Inputs:
        template = self.query_one("#template", Select).selection
        source = LDAP if self.query_one("#source-ldap", RadioButton).value else CSV
        return Inputs(template or "", self.query_one("#class", Input).value.strip(), source,
                      self.query_one("#users", Input).value.strip(),
                      self.query_one("#start", Checkbox).value,
                      self.query_one("#overcommit", Checkbox).value,
                      self.query_one("#add", Checkbox).value)

    @property
    def selected_template(self) -> Template | None:
        info = self.templates.get(self.inputs().template)
        return info.template if info else None

    @property
    def can_run(self) -> bool:
        return not self.busy and self.plan is not None and self.plan_inputs == self.inputs()

    def on_input_changed(self, _event: Input.Changed) -> None:
        self._sync()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._sync()

    def on_checkbox_changed(self, _event: Checkbox.Changed) -> None:
        self._sync()

    def on_radio_set_changed(self, _event: RadioSet.Changed) -> None:
        label, placeholder = _SOURCE_LABELS[self.inputs().source]
        self.query_one("#users-label", Label).update(label)
        self.query_one("#users", Input).placeholder = placeholder
        self._sync()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_preview()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "preview":
            self.action_preview()
        elif event.button.id == "run":
            self.action_run()

    def _sync(self) -> None:
        """Buttons, bindings and notes that follow the form and what is running."""
        if not self.is_mounted:
            return
        self.query_one("#run", Button).disabled = not self.can_run
        self.query_one("#preview", Button).disabled = bool(self.busy)
        self.query_one("#provision-form").disabled = self.busy == "provision"
        template = self.selected_template
        self.query_one("#provision-note").display = template is not None and template.os == "windows"
        if self.plan is not None and not self.busy and self.plan_inputs != self.inputs():
            self._status(Text("The form changed since the preview: preview again to provision.",
                              "yellow"))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "preview":
            return True if not self.busy else None
        return True

    def action_back(self) -> None:
        if self.busy == "provision":
            self.notify("VMs are being made: wait for the report (leaving now would leave them "
                        "half-made).", title="Provisioning", severity="warning", markup=False)
            return
        self.dismiss(None)

    # -- output --
    def _status(self, text: Text | str) -> None:
        self.query_one("#provision-status", Static).update(
            text if isinstance(text, Text) else Text(text, "dim"))

    def _clear(self) -> None:
        self.output_lines.clear()
        self.query_one(RichLog).clear()
        table = self.query_one("#provision-plan", DataTable)
        table.clear(columns=True)
        table.display = False

    def _out(self, line: str, style: str = "", *, follow: bool = True) -> None:
        """One line in the output panel; ``follow`` scrolls to it."""
        line = fmt.printable(line)
        self.output_lines.append(line)
        self.query_one(RichLog).write(Text(line, style), scroll_end=follow)

    def _show_error(self, title: str, lines: list[str], status: str = "") -> None:
        """The problems in the output panel; the status line says ``status`` (else that nothing
        was made)."""
        self._clear()
        self._out(title, "bold red")
        for line in lines:
            self._out(line, "red")
        self._status(Text(status or f"{title}: nothing was made.", "bold red"))

    # -- templates --
    @work(exclusive=True, group="provision-templates", exit_on_error=False)
    async def load_templates(self) -> None:
        select = self.query_one("#template", Select)
        try:
            infos = await asyncio.to_thread(read_templates, self.lab.settings, self.lab.demo)
        except Exception as exc:  # a bad templates.toml: say so, in the screen
            self._show_error(*error_lines(exc))
            select.prompt = "no templates (see below)"
            infos = []
        self.templates = {info.template.name: info for info in infos}
        self.templates_loaded = True
        options = []
        for info in infos:
            label = Text(template_summary(info.template))
            if not info.ok:
                label.append("  files: see the templates view (t)", "red")
            options.append((label, info.template.name))
        select.set_options(options)
        if not infos and not self.output_lines:
            select.prompt = "no templates"
            self._status(Text(f"No templates: declare them in {self.lab.settings.templates_file}.",
                              "yellow"))
        elif len(infos) == 1:
            select.value = infos[0].template.name
        elif infos:
            select.prompt = "choose a template"
        self._sync()

    # -- preview --
    def action_preview(self) -> None:
        if self.busy:
            return
        inputs = self.inputs()
        if missing := inputs.missing():
            self._show_error("Cannot preview yet", missing,
                             f"To preview: {', '.join(missing)}, then Preview (ctrl+r).")
            return
        info = self.templates.get(inputs.template)
        if info is None:
            self._show_error("Cannot preview yet", [f"no template {inputs.template!r}"],
                             "To preview: choose one of the templates, then Preview (ctrl+r).")
            return
        self.busy = "preview"
        self.plan = self.plan_inputs = None
        self._status("Previewing: reading the students and checking the host…")
        self._sync()
        self._preview(inputs, info.template)

    @work(exclusive=True, group="provision-preview", exit_on_error=False)
    async def _preview(self, inputs: Inputs, template: Template, fix_permissions: bool = False) -> None:
        try:
            students = await self._students(inputs, template)
            plan = await self.lab.plan_provision(template, inputs.lab_class, students,
                                                 start=inputs.start, overcommit=inputs.overcommit,
                                                 fix_permissions=fix_permissions, add=inputs.add)
        except Unreachable as exc:
            self._show_error(*error_lines(exc))
            self._ask_to_grant(inputs, template, exc.folders)
        except Exception as exc:  # every problem is shown in the screen, never raised
            self._show_error(*error_lines(exc))
        else:
            self.plan, self.plan_inputs = plan, inputs
            self._show_plan(plan)
        finally:
            self.busy = ""
            self._sync()

    def _ask_to_grant(self, inputs: Inputs, template: Template, folders: Sequence[Path]) -> None:
        """QEMU cannot pass these folders: ask to let it (as virt-manager asks), then preview again."""
        def answered(yes: bool | None) -> None:
            if yes and not self.busy and self.inputs() == inputs:
                self.busy = "preview"
                self._status("Previewing again: QEMU will be let pass those folders first…")
                self._sync()
                self._preview(inputs, template, fix_permissions=True)

        self.app.push_screen(ConfirmScreen(
            f"Let QEMU ({QEMU_USER}) pass {count(len(folders), 'folder')}?",
            "It cannot reach the VMs' files through them. It gets search permission only (no listing, "
            f"no reading), with a POSIX ACL, when the VMs are made: {grant_command(folders)}",
            "Let it pass", lines=[Text(fmt.printable(str(folder))) for folder in folders]), answered)

    async def _students(self, inputs: Inputs, template: Template) -> list[Student]:
        if inputs.source == LDAP:
            from core.auth import group_members  # ldap3 and argon2 (~40 ms): only when a group is asked for

            return await asyncio.to_thread(group_members, self.lab.settings, inputs.where)
        return await asyncio.to_thread(_read_roster, inputs.where, template.os)

    def _show_plan(self, plan: Plan) -> None:
        self._clear()
        capacity = f"capacity: {plan.capacity.describe()}"
        over = plan.capacity.problems()
        self._out(capacity, "bold yellow" if over else "bold", follow=False)
        for problem in over:
            self._out(f"over capacity (overcommit asked): {problem}", "yellow", follow=False)
        for line in plan.describe():
            if line != capacity:
                self._out(line, "bold" if line.startswith("template ") else "", follow=False)
        if plan.template.os == "windows":
            self._out(WINDOWS_NOTE, "yellow", follow=False)
        self.query_one(RichLog).scroll_home(animate=False)  # capacity on top, in view
        table = self.query_one("#provision-plan", DataTable)
        table.add_columns(*plan.TABLE_HEADER)
        for row in plan.table():
            table.add_row(*(fmt.printable(cell) for cell in row))
        table.display = True
        kept = f", {count(len(plan.kept), 'VM')} kept" if plan.kept else ""
        self._status(Text(f"Preview: {count(len(plan.vms), 'VM')} to make{kept}, nothing made "
                          "yet; Provision (ctrl+g) makes them.", "green"))

    # -- provisioning --
    def action_run(self) -> None:
        if not self.can_run or self.plan is None:
            self.notify("Preview first: Provision makes exactly what the preview showed.",
                        severity="warning", markup=False)
            return
        plan = self.plan
        self.busy = "provision"
        self.report = None
        bar = self.query_one(ProgressBar)
        bar.update(total=len(plan.vms), progress=0)
        bar.display = True
        self._clear()
        self._out(f"making {count(len(plan.vms), 'VM')} of class {plan.lab_class}…", "bold")
        # as the CLI does: say why nothing moves while the probe boots
        self._status(f"Deciding the domain type first: a KVM probe boot (once per host, up to "
                     f"{KVM_PROBE_DEADLINE:g} s)…" if plan.domain_type == AUTO
                     else f"Making 0 of {count(len(plan.vms), 'VM')}…")
        self._sync()
        self._provision(plan)

    @work(exclusive=True, group="provision-run", exit_on_error=False)
    async def _provision(self, plan: Plan) -> None:
        try:
            # shielded: the VMs are all made (or undone) even if this worker is cancelled
            report = await asyncio.shield(self.lab.provision(plan, self._progress))
        except Exception as exc:
            self._show_error(*error_lines(exc))
            self.notify("\n".join(error_lines(exc)[1]), title="Provisioning failed", severity="error",
                        timeout=15, markup=False)
        else:
            self.report = report
            self._show_report(plan, report)
        finally:
            self.plan = self.plan_inputs = None  # its names are taken now: preview again
            self.busy = ""
            self._sync()

    def _progress(self, done: int, total: int, outcome: Outcome) -> None:
        if not self.is_mounted:
            return
        self.query_one(ProgressBar).update(total=total, progress=done)
        self._status(f"Made {done} of {count(total, 'VM')}…")
        self._out(_outcome_line(outcome), "" if outcome.ok else "red")

    def _show_report(self, plan: Plan, report: Report) -> None:
        self._clear()
        total, failed = len(report.outcomes), len(report.failed)
        made = total - failed
        summary = f"class {plan.lab_class}: {made} of {count(total, 'VM')} made" + (f", {failed} failed"
                                                                          if failed else "")
        self._out(summary, "bold red" if failed else "bold green", follow=False)
        for outcome in report.outcomes:
            self._out(_outcome_line(outcome), "" if outcome.ok else "red", follow=False)
        if report.granted:
            self._out(f"{QEMU_USER} may now pass {', '.join(map(str, report.granted))} (POSIX ACL)",
                      follow=False)
        if report.passwords_file is not None:
            self._out(f"generated passwords: {report.passwords_file} (mode 0600: only you can read "
                      "it; hand them out, then delete it)", "bold", follow=False)
        else:
            self._out("no passwords were generated: every student's came from the roster", "dim",
                      follow=False)
        if plan.template.os == "windows" and made:
            self._out(WINDOWS_NOTE, "yellow", follow=False)
        self.query_one(RichLog).scroll_home(animate=False)
        self._status(Text(summary, "bold red" if failed else "bold green"))
        self.notify(summary, title="Provisioning", severity="error" if failed else "information",
                    timeout=15 if failed else 8, markup=False)


def _read_roster(where: str, os_family: str) -> list[Student]:
    return read_roster(Path(where).expanduser(), os_family=os_family)


def _outcome_line(outcome: Outcome) -> str:
    mark = "✓" if outcome.ok else "✗"
    return f"{mark} {outcome.name} ({outcome.username}): {outcome.message}"
