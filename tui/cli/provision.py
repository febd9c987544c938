"""Making classes: ``templates``, ``provision`` and ``doctor``.

    vm-manager templates [--json]
    vm-manager provision --template T --class C (--users CSV | --ldap-group DN) [--start] [--dry-run]
                         [--overcommit] [--fix-permissions] [--add]
    vm-manager doctor [--fix]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core.errors import InvalidInput, VMManagerError
from core.lab import Lab
from core.model import Student
from core.names import check_class_name
from core.provision import (
    AUTO,
    KVM_PROBE_DEADLINE,
    Template,
    Unreachable,
    check_files,
    load_templates,
    read_roster,
)
from core.settings import Settings
from core.storage import QEMU_USER, grant_command
from core.text import count, json_text, printable
from tui.cli.common import EXIT_FAILED, EXIT_OK, Commands, ProgressBar, on_terminal, print_table, yes


def add_parsers(commands: Commands) -> None:
    templates = commands.add_parser("templates", help="list the templates of templates.toml and "
                                    "whether QEMU can read their files")
    templates.add_argument("--json", action="store_true")
    templates.set_defaults(handler=list_templates)

    prov = commands.add_parser("provision", help="make the VMs of a class from a template (one per student)")
    prov.add_argument("--template", required=True, metavar="T", help="a template of templates.toml")
    prov.add_argument("--class", dest="lab_class", required=True, metavar="C", help="the class's name")
    who = prov.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", type=Path, metavar="CSV",
                     help="the roster: columns username,full_name,password,ssh_key (blank password: "
                     "generated, written to a file only you can read)")
    who.add_argument("--ldap-group", metavar="DN", help="the members of this LDAP group")
    prov.add_argument("--start", action="store_true", help="start each VM once made")
    prov.add_argument("--add", action="store_true",
                      help="make only the roster's VMs that do not exist yet (a late student joins); "
                      "those that exist are kept, never touched")
    prov.add_argument("--dry-run", action="store_true", help="show what would be made; make nothing")
    prov.add_argument("--overcommit", action="store_true",
                      help="go on when the host has less free memory or disk than the class needs")
    prov.add_argument("--fix-permissions", action="store_true",
                      help="let QEMU's user pass the folders in the way to the VMs' files (a POSIX "
                      "ACL granting search permission, as virt-manager does); a terminal asks instead")
    prov.set_defaults(handler=provision)

    doctor = commands.add_parser("doctor", help="find what killed provisioning runs left half-made")
    doctor.add_argument("--fix", action="store_true", help="remove it (only our folders and domains), "
                        "and resume VMs a killed run left paused")
    doctor.set_defaults(handler=run_doctor)


def list_templates(args: argparse.Namespace, settings: Settings) -> int:
    """List templates; exit 1 when a file of one is missing or unreadable by QEMU."""
    found = load_templates(settings.templates_file, settings.templates_path)
    checks = {name: check_files(t) for name, t in found.items()}
    if args.json:
        print(json_text([{"name": t.name, "os": t.os, "domain_type": t.domain_type, "vcpus": t.vcpus,
                          "memory_mib": t.memory_mib,
                          "files": {c.role: {"path": str(c.path), "problem": c.problem}
                                    for c in checks[t.name]}}
                         for t in found.values()]))
    elif not found:
        print(f"no templates: declare them in {printable(str(settings.templates_file))}")
    else:
        for name, template in found.items():
            print(f"{printable(name)}  {template.os}  {template.domain_type}  "
                  f"{count(template.vcpus, 'vCPU')}  {template.memory_mib} MiB")
            for check in checks[name]:
                print(f"  {check.role:<7}{printable(str(check.path))}  {printable(check.problem or 'ok')}")
    return EXIT_FAILED if any(c.problem for cs in checks.values() for c in cs) else EXIT_OK


async def provision(args: argparse.Namespace, settings: Settings) -> int:
    template, students = _provision_request(args, settings)
    lab = await Lab.open(settings, args.connect)
    try:
        try:
            plan = await lab.plan_provision(template, args.lab_class, students, start=args.start,
                                            overcommit=args.overcommit, fix_permissions=args.fix_permissions,
                                            add=args.add)
        except Unreachable as refused:
            if args.dry_run or not _may_grant(refused.folders):
                raise
            plan = await lab.plan_provision(template, args.lab_class, students, start=args.start,
                                            overcommit=args.overcommit, fix_permissions=True, add=args.add)
        if args.dry_run:
            print("\n".join(map(printable, plan.describe())))
            print_table(plan.TABLE_HEADER, plan.table())
            print("dry run: nothing made")
            return EXIT_OK
        bar = ProgressBar(len(plan.vms))
        began = time.monotonic()
        if plan.domain_type == AUTO:
            print("domain type auto: a KVM probe boot decides it first (once per host, up to "
                  f"{KVM_PROBE_DEADLINE:g} s)", file=sys.stderr)
        report = await lab.provision(plan, bar.update)
        bar.close()
    finally:
        await lab.close()
    if report.granted:
        print(f"{QEMU_USER} may now pass {_paths(report.granted)} (POSIX ACL)", file=sys.stderr)
    for outcome in report.outcomes:
        print(f"{printable(outcome.name)}: {printable(outcome.message)}",
              file=sys.stdout if outcome.ok else sys.stderr)
    made = len(report.outcomes) - len(report.failed)
    print(f"{made} made, {len(report.failed)} failed in {time.monotonic() - began:.1f} s", file=sys.stderr)
    if report.passwords_file is not None:
        print(f"generated passwords: {printable(str(report.passwords_file))} (readable only by you)",
              file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def _may_grant(folders: Sequence[Path]) -> bool:
    """On a terminal, ask whether QEMU's user may pass ``folders`` (virt-manager asks the same)."""
    if not on_terminal():
        return False
    print(f"{QEMU_USER} (QEMU) cannot enter {_paths(folders)}, on the way to the VMs' files.",
          file=sys.stderr)
    return yes(f"Let it pass them (only pass: no listing, no reading), as "
               f"`{printable(grant_command(folders))}` would? [y/N] ")


def _paths(folders: Sequence[Path]) -> str:
    return ", ".join(printable(str(folder)) for folder in folders)


def _provision_request(args: argparse.Namespace, settings: Settings) -> tuple[Template, list[Student]]:
    """The template and the students, every problem of the command line reported together."""
    problems: list[str] = []
    template: Template | None = None
    try:
        templates = load_templates(settings.templates_file, settings.templates_path)
    except VMManagerError as exc:  # reported with the rest; the roster is read as for Linux
        problems.append(exc.message)
    else:
        template = templates.get(args.template)
        if template is None:
            known = ", ".join(sorted(templates)) or f"none: declare them in {settings.templates_file}"
            problems.append(f"no template {args.template!r} (templates: {known})")
    try:
        check_class_name(args.lab_class)
    except InvalidInput as exc:
        problems.append(exc.message)
    students: list[Student] = []
    try:
        if args.users is not None:
            students = read_roster(args.users, os_family=template.os if template else "linux")
        else:
            from core.auth import group_members  # ldap3 and argon2 (~40 ms): only for --ldap-group

            students = group_members(settings, args.ldap_group)
    except VMManagerError as exc:
        problems.insert(0, exc.message)
    if problems:
        raise InvalidInput("\n".join(problems))
    assert template is not None
    return template, students


async def run_doctor(args: argparse.Namespace, settings: Settings) -> int:
    lab = await Lab.open(settings, args.connect)
    try:
        result = await lab.doctor(fix=args.fix)
    finally:
        await lab.close()
    if result.busy:
        print("a provisioning run is in progress: nothing fixed (run doctor again after it)", file=sys.stderr)
    for finding in result.findings:
        print(printable(f"{finding.what} {finding.where}: {finding.problem}"
                        f"{f' -> {finding.fixed}' if finding.fixed else ''}"))
    if not result.findings:
        print("nothing half-made")
    elif result.unfixed and not args.fix:
        print("run `vm-manager doctor --fix` to put it right", file=sys.stderr)
    return EXIT_FAILED if result.unfixed else EXIT_OK
