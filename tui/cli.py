"""``vm-manager``: the command line. With no command it starts the operator TUI.

Exit codes: 0 all done; 1 some targets failed (one line each on stderr); 2 bad usage or an
unreachable hypervisor. Errors are sentences, never tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core import __version__
from core.errors import InvalidInput, VMManagerError
from core.lab import Lab
from core.lifecycle.actions import Action, ActionResult
from core.lifecycle.snapshots import check_snapshot_name
from core.lifecycle.targets import resolve
from core.log import setup_logging
from core.model import VM, Student
from core.names import check_class_name, check_username
from core.provision.execution import Outcome
from core.provision.kvmprobe import DEADLINE as KVM_PROBE_DEADLINE
from core.provision.planning import AUTO, Unreachable
from core.provision.roster import read_roster
from core.provision.templates import Template, check_files, load_templates
from core.settings import Settings, load_settings, positive_number
from core.storage.permissions import QEMU_USER, grant_command
from tui import cli_records, cli_users

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LIST_ADDRESS_WAIT = 5.0  # seconds `list` waits for running VMs' addresses (DHCP leases, guest agent)


class UsageError(Exception):
    """Bad usage that argparse cannot see (e.g. no target at all)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vm-manager", description="Run a teaching lab of VMs on libvirt. "
        "With no command, start the operator TUI.")
    parser.add_argument("-c", "--connect", metavar="URI",
                        help="libvirt URI, as virsh -c takes it (default: LIBVIRT_DEFAULT_URI, "
                        "else qemu:///system when it answers, else the built-in demo lab)")
    parser.add_argument("--version", action="version", version=f"vm-manager {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    tui = commands.add_parser("tui", help="start the operator TUI (the default)")
    tui.add_argument("--serve", type=_host_port, metavar="[HOST:]PORT",
                     help="also run the console server (as `serve` does) inside the TUI, for a "
                     "one-person lab; HOST defaults to 127.0.0.1")

    listing = commands.add_parser("list", help="list the VMs")
    listing.add_argument("--json", action="store_true", help="one JSON array of VM objects")
    listing.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                         help="only VMs of class C (repeatable)")

    for action in Action:
        sub = commands.add_parser(action.value, help=_ACTION_HELP[action])
        if action.needs_name:
            sub.add_argument("snapshot", metavar="NAME", help="the snapshot's name")
        _add_targets(sub)
        if action.destructive:
            sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        if action == Action.HALT:
            sub.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                             help="seconds to wait for the guest before destroying it "
                             "(default: VMM_HALT_TIMEOUT, 60)")

    templates = commands.add_parser("templates", help="list the templates of templates.toml and "
                                    "whether QEMU can read their files")
    templates.add_argument("--json", action="store_true")

    prov = commands.add_parser("provision", help="make the VMs of a class from a template (one per student)")
    prov.add_argument("--template", required=True, metavar="T", help="a template of templates.toml")
    prov.add_argument("--class", dest="lab_class", required=True, metavar="C", help="the class's name")
    who = prov.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", type=Path, metavar="CSV",
                     help="the roster: columns username,full_name,password,ssh_key (blank password: "
                     "generated, written to a file only you can read)")
    who.add_argument("--ldap-group", metavar="DN", help="the members of this LDAP group")
    prov.add_argument("--start", action="store_true", help="start each VM once made")
    prov.add_argument("--dry-run", action="store_true", help="show what would be made; make nothing")
    prov.add_argument("--overcommit", action="store_true",
                      help="go on when the host has less free memory or disk than the class needs")
    prov.add_argument("--fix-permissions", action="store_true",
                      help="let QEMU's user pass the folders in the way to the VMs' files (a POSIX "
                      "ACL granting search permission, as virt-manager does); a terminal asks instead")

    doctor = commands.add_parser("doctor", help="find what killed provisioning runs left half-made")
    doctor.add_argument("--fix", action="store_true", help="remove it (only our folders and domains), "
                        "and resume VMs a killed run left paused")

    assign = commands.add_parser("assign", help="record a VM's owner (and class) in its metadata")
    assign.add_argument("targets", nargs="+", metavar="NAME", help="a VM name or a glob (stu-*)")
    assign.set_defaults(classes=[])
    assign.add_argument("--owner", required=True, metavar="USER")
    assign.add_argument("--class", dest="lab_class", metavar="C", help="the VM's class")
    _add_web_commands(commands)
    cli_records.add_parser(commands)
    cli_users.add_parser(commands)
    return parser


def _add_web_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the web server: browser consoles behind share links")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5000, help="TCP port (default 5000)")
    serve.add_argument("--generate-secret", action="store_true",
                       help="when SECRET_KEY is unset, write a random key to <config dir>/secret_key "
                       "(mode 0600) unless a good one is there, and use it")
    share = commands.add_parser("share", help="make a console share link per VM")
    _add_targets(share)
    share.add_argument("--ttl", metavar="DURATION",
                       help="how long the links last: 30m, 4h, 2d (default: VMM_SHARE_TTL, 4h)")
    revoke = commands.add_parser("revoke", help="revoke share links (and close their consoles)")
    revoke.add_argument("targets", nargs="*", metavar="TOKEN|ID|TARGET",
                        help="a link's token (or URL), its id, or a VM name or glob: all its links")
    revoke.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                        help="the links of every VM of class C (repeatable)")


_ACTION_HELP = {
    Action.START: "start VMs",
    Action.HALT: "shut VMs down gracefully (ACPI), destroying those still running after the timeout",
    Action.DESTROY: "power VMs off at once",
    Action.REBOOT: "reboot running VMs",
    Action.SUSPEND: "pause VMs",
    Action.RESUME: "resume paused VMs",
    Action.DELETE: "undefine VMs and remove the disks only they use and their student folders "
                   "(never a template)",
    Action.RESET: "give VMs a fresh disk from their template (the exercise starts again)",
    Action.SNAPSHOT: "take a named snapshot of VMs (internal qcow2; not for UEFI VMs)",
    Action.REVERT: "bring VMs back to a named snapshot",
}


def _host_port(text: str) -> tuple[str, int]:
    """``--serve``: ``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST:]PORT (e.g. 5000 or 0.0.0.0:5000)")
    return host, int(port)


def _seconds(text: str) -> float:
    """``--timeout``: a positive, finite number of seconds (as the settings take them)."""
    try:
        return positive_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def _add_targets(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("targets", nargs="*", metavar="TARGET", help="a VM name or a glob (stu-*)")
    sub.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                     help="every VM of class C (repeatable)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings().with_uri(args.connect)
        setup_logging(settings)
        if args.command in (None, "tui"):
            serve = getattr(args, "serve", None)
            # Connect on the core's thread while Textual is still being imported.
            opening = Lab.open_soon(settings, args.connect)
            from tui.app import run_app  # the only import of Textual: not needed by commands

            return run_app(settings, args.connect, opening, serve=serve)
        if args.command == "templates":
            return _templates(settings, args.json)
        if args.command == "user":
            return cli_users.run(args, settings)
        return asyncio.run(_run(args, settings))
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"vm-manager: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VMManagerError as exc:
        print(f"vm-manager: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `vm-manager list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return await _serve(args, settings)
    if args.command == "provision":
        return await _provision(args, settings)
    if args.command == "doctor":
        return await _doctor(args, settings)
    if args.command in ("audit", "requests"):
        return await cli_records.run(args, settings)
    if args.command != "list" and not args.targets and not args.classes:
        raise UsageError(f"{args.command} needs at least one TARGET or --class")
    if args.command == "share":
        return await _share(args, settings)
    if args.command == "revoke":
        return await _revoke(args, settings)
    if args.command == "assign":  # refuse bad names before touching the hypervisor
        check_username(args.owner)
        if args.lab_class is not None:
            check_class_name(args.lab_class)
    if getattr(args, "snapshot", None) is not None:
        check_snapshot_name(args.snapshot)
    lab = await Lab.open(settings, args.connect)
    try:
        if args.command == "list":
            await lab.addresses_looked_up(within=LIST_ADDRESS_WAIT)
            return _list(lab.vms(), args)
        found = resolve(lab.vms(), args.targets, args.classes)
        for name in found.unmatched:
            print(f"{name}: no such VM", file=sys.stderr)
        if args.command == "assign":
            results = await lab.assign(found.vms, args.owner, args.lab_class) if found.vms else []
        else:
            action = Action(args.command)
            if found.vms and action.destructive and not args.yes and not _confirm(action, found.vms):
                print("nothing done", file=sys.stderr)
                return EXIT_FAILED
            timeout = getattr(args, "timeout", None)
            results = await lab.act(action, found.vms, halt_timeout=timeout,
                                    snapshot=getattr(args, "snapshot", "")) if found.vms else []
        return _report(results, failed=bool(found.unmatched))
    finally:
        await lab.close()


async def _provision(args: argparse.Namespace, settings: Settings) -> int:
    template, students = _provision_request(args, settings)
    lab = await Lab.open(settings, args.connect)
    try:
        try:
            plan = await lab.plan_provision(template, args.lab_class, students, start=args.start,
                                            overcommit=args.overcommit, fix_permissions=args.fix_permissions)
        except Unreachable as refused:
            if args.dry_run or not _may_grant(refused.folders):
                raise
            plan = await lab.plan_provision(template, args.lab_class, students, start=args.start,
                                            overcommit=args.overcommit, fix_permissions=True)
        if args.dry_run:
            print("\n".join(plan.describe()))
            print("dry run: nothing made")
            return EXIT_OK
        bar = _ProgressBar(len(plan.vms))
        began = time.monotonic()
        if plan.domain_type == AUTO:
            print("domain type auto: a KVM probe boot decides it first (once per host, up to "
                  f"{KVM_PROBE_DEADLINE:g} s)", file=sys.stderr)
        report = await lab.provision(plan, bar.update)
        bar.close()
    finally:
        await lab.close()
    if report.granted:
        print(f"{QEMU_USER} may now pass {', '.join(map(str, report.granted))} (POSIX ACL)", file=sys.stderr)
    for outcome in report.outcomes:
        print(f"{outcome.name}: {outcome.message}", file=sys.stdout if outcome.ok else sys.stderr)
    made = len(report.outcomes) - len(report.failed)
    print(f"{made} made, {len(report.failed)} failed in {time.monotonic() - began:.1f} s", file=sys.stderr)
    if report.passwords_file is not None:
        print(f"generated passwords: {report.passwords_file} (readable only by you)", file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def _may_grant(folders: Sequence[Path]) -> bool:
    """On a terminal, ask whether QEMU's user may pass ``folders`` (virt-manager asks the same)."""
    if not sys.stdin.isatty():
        return False
    print(f"{QEMU_USER} (QEMU) cannot enter {', '.join(map(str, folders))}, on the way to the VMs' "
          f"files.", file=sys.stderr)
    answer = input(f"Let it pass them (only pass: no listing, no reading), as `{grant_command(folders)}` "
                   "would? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


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
            from core.auth.ldapgroups import group_members

            students = group_members(settings, args.ldap_group)
    except VMManagerError as exc:
        problems.insert(0, exc.message)
    if problems:
        raise InvalidInput("\n".join(problems))
    assert template is not None
    return template, students


class _ProgressBar:
    """A bar on a terminal's stderr; elsewhere (a pipe, a log) nothing: the report follows."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = sys.stderr.isatty()

    def update(self, done: int, total: int, outcome: Outcome) -> None:
        if self.shown:
            width = 30
            filled = width * done // max(total, 1)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {outcome.name:<30}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


async def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    lab = await Lab.open(settings, args.connect)
    try:
        result = await lab.doctor(fix=args.fix)
    finally:
        await lab.close()
    if result.busy:
        print("a provisioning run is in progress: nothing fixed (run doctor again after it)", file=sys.stderr)
    for finding in result.findings:
        print(f"{finding.what} {finding.where}: {finding.problem}"
              f"{f' -> {finding.fixed}' if finding.fixed else ''}")
    if not result.findings:
        print("nothing half-made")
    elif result.unfixed and not args.fix:
        print("run `vm-manager doctor --fix` to put it right", file=sys.stderr)
    return EXIT_FAILED if result.unfixed else EXIT_OK


def _confirm(action: Action, vms: list[VM]) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"{action.value} asks for confirmation: pass --yes when not on a terminal")
    names = ", ".join(vm.name for vm in vms[:10]) + (f" and {len(vms) - 10} more" if len(vms) > 10 else "")
    answer = input(f"{action.value.capitalize()} {len(vms)} VM{'s' if len(vms) > 1 else ''}: {names}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _report(results: list[ActionResult], *, failed: bool) -> int:
    for result in results:
        if result.ok:
            print(f"{result.vm.name}: {result.message}")
        else:
            print(f"{result.vm.name}: {result.message}", file=sys.stderr)
    return EXIT_FAILED if failed or any(not r.ok for r in results) else EXIT_OK


def _list(vms: list[VM], args: argparse.Namespace) -> int:
    if args.classes:
        vms = [vm for vm in vms if vm.meta.lab_class in args.classes]
    vms.sort(key=lambda vm: (vm.name, vm.host))
    if args.json:
        json.dump([vm.as_json() for vm in vms], sys.stdout, ensure_ascii=False, indent=2)
        print()
        return EXIT_OK
    header = ("NAME", "STATE", "OWNER", "CLASS", "VCPUS", "MEMORY", "IP")
    rows = [(vm.name, vm.state.value, vm.meta.owner or "—", vm.meta.lab_class or "—", str(vm.vcpus),
             f"{vm.memory_mib} MiB", ", ".join(vm.ips) or "—") for vm in vms]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK



def _templates(settings: Settings, as_json: bool) -> int:
    """List templates; exit 1 when a file of one is missing or unreadable by QEMU."""
    found = load_templates(settings.templates_file, settings.templates_path)
    checks = {name: check_files(t) for name, t in found.items()}
    if as_json:
        json.dump([{"name": t.name, "os": t.os, "domain_type": t.domain_type, "vcpus": t.vcpus,
                    "memory_mib": t.memory_mib,
                    "files": {c.role: {"path": str(c.path), "problem": c.problem} for c in checks[t.name]}}
                   for t in found.values()], sys.stdout, indent=2)
        print()
    elif not found:
        print(f"no templates: declare them in {settings.templates_file}")
    for name, template in found.items():
        if as_json:
            break
        print(f"{name}  {template.os}  {template.domain_type}  {template.vcpus} vCPU  "
              f"{template.memory_mib} MiB")
        for check in checks[name]:
            print(f"  {check.role:<7}{check.path}  {check.problem or 'ok'}")
    return EXIT_FAILED if any(c.problem for cs in checks.values() for c in cs) else EXIT_OK


# -- the web server, share links --
async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from core.errors import ConfigError
    from core.lab import DEMO_URI, choose_uri
    from core.links.secret import generate_secret_key, key_file, load_secret_key
    from core.web import serve

    # A service never serves the demo lab by surprise: only when it is asked for by its URI.
    uri, demo = choose_uri(settings, args.connect)
    if demo and not (args.connect or settings.connect_uri):
        raise ConfigError("qemu:///system does not answer and no libvirt URI is set (-c, "
                          "LIBVIRT_DEFAULT_URI): serve does not fall back to the demo lab. Start libvirtd, "
                          f"or name the hypervisor with -c URI; to serve the demo lab, pass -c {DEMO_URI}")
    if args.generate_secret and settings.web.secret_key:
        raise UsageError("SECRET_KEY is set: --generate-secret writes a key file only when it is unset")
    if not settings.web.public_url and args.host in ("0.0.0.0", "::", ""):
        print("vm-manager: PUBLIC_URL is unset: links will point at and accept only "
              f"http://{args.host}:{args.port}; set PUBLIC_URL to the address browsers use", file=sys.stderr)
    lab = await Lab.open(settings, uri)
    try:
        if args.generate_secret:
            key, made = generate_secret_key(settings)
            print(f"{'wrote a new' if made else 'using the'} secret key in {key_file(settings)}",
                  file=sys.stderr)
        else:
            key = load_secret_key(settings, demo=lab.demo)
            if lab.demo and key not in (settings.web.secret_key, None) and not key_file(settings).exists():
                print("demo lab: a random secret key for this run (its links end with it)", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        def started(url: str) -> None:
            print(f"serving consoles at {url} (admin API on {settings.admin_socket}); ctrl+c stops",
                  file=sys.stderr, flush=True)

        await serve(settings, lab, secret_key=key, host=args.host, port=args.port, stop=stop, started=started)
    finally:
        await lab.close()
    print("stopped", file=sys.stderr)
    return EXIT_OK


async def _share(args: argparse.Namespace, settings: Settings) -> int:
    from core.links.client import Consoles
    from core.links.shares import parse_ttl
    from core.links.urls import base_url

    if not args.targets and not args.classes:
        raise UsageError("share needs at least one TARGET or --class")
    ttl = args.ttl or settings.consoles.share_ttl
    parse_ttl(ttl)  # a bad duration is refused before the hypervisor is asked anything
    lab = await Lab.open(settings, args.connect)
    try:
        found = resolve(lab.vms(), args.targets, args.classes)
    finally:
        await lab.close()
    for name in found.unmatched:
        print(f"{name}: no such VM", file=sys.stderr)
    if not found.vms:
        return EXIT_FAILED
    result = await Consoles(settings, source="cli").share(found.vms, ttl)
    if not result.via_server and not settings.web.public_url:  # the database directly: no server runs
        print(f"vm-manager: PUBLIC_URL is unset: the links point at {base_url(settings)}", file=sys.stderr)
    for name, why in result.errors:
        print(f"{name}: {why}", file=sys.stderr)
    for link in result.links:
        print(f"{link.url}  expires {link.expires}  id {link.id}  vm {link.vm_name}")
    return EXIT_FAILED if found.unmatched or result.errors else EXIT_OK


async def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from core.links.client import Consoles
    from core.links.shares import revoke_target

    if not args.targets and not args.classes:
        raise UsageError("revoke needs at least one TOKEN, ID, TARGET or --class")
    asked: dict[str, list[str]] = {"id": [], "token": [], "vm": []}
    for arg in args.targets:
        kind, value = revoke_target(arg)
        asked[kind].append(value)
    failed = False
    vms: list[VM] = []
    if asked["vm"] or args.classes:
        lab = await Lab.open(settings, args.connect)
        try:
            found = resolve(lab.vms(), asked["vm"], args.classes)
        finally:
            await lab.close()
        for name in found.unmatched:
            print(f"{name}: no such VM", file=sys.stderr)
        failed = bool(found.unmatched)
        vms = found.vms
    result = await Consoles(settings, source="cli").revoke(ids=asked["id"], tokens=asked["token"], vms=vms)
    labels = [*(f"link {i}" for i in asked["id"]), *(f"token {t[:6]}…" for t in asked["token"]),
              *(vm.name for vm in vms)]
    for label, done in zip(labels, result.results, strict=True):
        if not done.found and done.kind != "vm":
            print(f"{label}: no such share link", file=sys.stderr)
            failed = True
        for link_id, vm_name in done.revoked:
            print(f"{label}: revoked link {link_id} of {vm_name}")
        if done.found and not done.revoked:
            print(f"{label}: {'no active share link' if done.kind == 'vm' else 'already expired or revoked'}")
        elif not done.found and done.kind == "vm":
            print(f"{label}: no share link")
    if result.closed:
        print(f"closed {result.closed} open console(s)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
