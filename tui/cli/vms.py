"""The VMs themselves: ``list``, the lifecycle actions (start ... reset, snapshot and revert) and
``assign``.

    vm-manager list [--json] [--class C]
    vm-manager start|halt|destroy|reboot|suspend|resume|delete|reset TARGET... [--class C] [--yes]
    vm-manager snapshot|revert NAME [TARGET...] [--class C]
    vm-manager snapshots [TARGET...] [--class C] [--json]
    vm-manager assign NAME... --owner USER [--class C]
"""

from __future__ import annotations

import argparse
import sys

from core.errors import VMManagerError
from core.lab import Lab
from core.lifecycle import Action, SnapshotInfo, check_snapshot_name, confirmation_word, resolve
from core.model import VM
from core.names import check_class_name, check_username
from core.settings import Settings
from core.text import count, format_time, json_text, printable
from tui.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Commands,
    UsageError,
    add_targets,
    need_targets,
    on_terminal,
    print_table,
    report,
    seconds,
    unmatched,
    yes,
)

LIST_ADDRESS_WAIT = 5.0  # seconds `list` waits for running VMs' addresses (DHCP leases, guest agent)

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


def add_list_parser(commands: Commands) -> None:
    listing = commands.add_parser("list", help="list the VMs")
    listing.add_argument("--json", action="store_true", help="one JSON array of VM objects")
    listing.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                         help="only VMs of class C (repeatable)")
    listing.set_defaults(handler=list_vms)


def add_action_parsers(commands: Commands) -> None:
    """A sub-command per lifecycle action, in the order of :class:`Action`."""
    for action in Action:
        sub = commands.add_parser(action.value, help=_ACTION_HELP[action])
        if action.needs_name:
            sub.add_argument("snapshot", metavar="NAME", help="the snapshot's name")
        add_targets(sub)
        if action.destructive:
            sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        if action == Action.HALT:
            sub.add_argument("--timeout", type=seconds, metavar="SECONDS",
                             help="seconds to wait for the guest before destroying it "
                             "(default: VMM_HALT_TIMEOUT, 60)")
        sub.set_defaults(handler=act, action=action)


def add_snapshots_parser(commands: Commands) -> None:
    listing = commands.add_parser("snapshots", help="list the VMs' snapshots (every VM's without a TARGET)")
    add_targets(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array of snapshot objects")
    listing.set_defaults(handler=list_snapshots)


def add_assign_parser(commands: Commands) -> None:
    assign = commands.add_parser("assign", help="record a VM's owner (and class) in its metadata")
    assign.add_argument("targets", nargs="+", metavar="NAME", help="a VM name or a glob (stu-*)")
    assign.set_defaults(classes=[], handler=assign_owner)
    assign.add_argument("--owner", required=True, metavar="USER")
    assign.add_argument("--class", dest="lab_class", metavar="C", help="the VM's class")


async def list_vms(args: argparse.Namespace, settings: Settings) -> int:
    lab = await Lab.open(settings, args.connect, figures=False)
    try:
        await lab.addresses_looked_up(within=LIST_ADDRESS_WAIT)
        return _print_vms(lab.vms(), args)
    finally:
        await lab.close()


async def list_snapshots(args: argparse.Namespace, settings: Settings) -> int:
    """Each VM's snapshots: name, when taken, the VM's state then (with memory or not), current."""
    lab = await Lab.open(settings, args.connect, addresses=False, figures=False)
    try:
        if args.targets or args.classes:
            found = resolve(lab.vms(), args.targets, args.classes)
            unmatched(found.unmatched)
            vms, failed = found.vms, bool(found.unmatched)
        else:
            vms, failed = lab.vms(), False
        rows: list[tuple[VM, SnapshotInfo]] = []
        for vm in sorted(vms, key=lambda vm: (vm.name, vm.host)):
            try:
                rows += [(vm, snapshot) for snapshot in await lab.snapshots(vm)]
            except VMManagerError as exc:
                print(f"{printable(vm.name)}: {printable(exc.message)}", file=sys.stderr)
                failed = True
    finally:
        await lab.close()
    if args.json:
        print(json_text([{"vm": vm.name, "uuid": vm.uuid, "name": s.name, "created": s.created,
                          "state": s.state, "with_memory": s.with_memory, "current": s.current}
                         for vm, s in rows]))
    else:
        print_table(("VM", "SNAPSHOT", "CREATED", "STATE", "MEMORY", "CURRENT"),
                    [(vm.name, s.name, format_time(s.created), s.state or "—",
                      "with memory" if s.with_memory else "disks only", "current" if s.current else "")
                     for vm, s in rows])
    return EXIT_FAILED if failed else EXIT_OK


def _print_vms(vms: list[VM], args: argparse.Namespace) -> int:
    if args.classes:
        vms = [vm for vm in vms if vm.meta.lab_class in args.classes]
    vms.sort(key=lambda vm: (vm.name, vm.host))
    if args.json:
        print(json_text([vm.as_json() for vm in vms]))
        return EXIT_OK
    print_table(("NAME", "STATE", "OWNER", "CLASS", "VCPUS", "MEMORY", "IP"),
                [(vm.name, vm.state.value, vm.meta.owner or "—", vm.meta.lab_class or "—", str(vm.vcpus),
                  f"{vm.memory_mib} MiB", ", ".join(vm.ips) or "—") for vm in vms])
    return EXIT_OK


async def act(args: argparse.Namespace, settings: Settings) -> int:
    """One lifecycle action on the VMs named; destructive ones ask first (or need --yes)."""
    action: Action = args.action
    need_targets(args)
    if action.needs_name:  # a bad name is refused before the hypervisor is asked anything
        check_snapshot_name(args.snapshot)
    lab = await Lab.open(settings, args.connect)
    try:
        found = resolve(lab.vms(), args.targets, args.classes)
        unmatched(found.unmatched)
        if found.vms and action.destructive and not args.yes and not _confirm(action, found.vms, lab.vms()):
            print("nothing done", file=sys.stderr)
            return EXIT_FAILED
        timeout = getattr(args, "timeout", None)
        results = await lab.act(action, found.vms, halt_timeout=timeout,
                                snapshot=getattr(args, "snapshot", "")) if found.vms else []
        return report(results, failed=bool(found.unmatched))
    finally:
        await lab.close()


async def assign_owner(args: argparse.Namespace, settings: Settings) -> int:
    check_username(args.owner)  # refuse bad names before touching the hypervisor
    if args.lab_class is not None:
        check_class_name(args.lab_class)
    lab = await Lab.open(settings, args.connect)
    try:
        found = resolve(lab.vms(), args.targets, args.classes)
        unmatched(found.unmatched)
        results = await lab.assign(found.vms, args.owner, args.lab_class) if found.vms else []
        return report(results, failed=bool(found.unmatched))
    finally:
        await lab.close()


def _confirm(action: Action, vms: list[VM], every_vm: list[VM]) -> bool:
    """Ask on the terminal: y, or for a whole class or many VMs deleted, the class's name or the
    count typed (as the TUI asks)."""
    if not on_terminal():
        raise UsageError(f"{action.value} asks for confirmation: pass --yes when not on a terminal")
    names = ", ".join(printable(vm.name) for vm in vms[:10])
    names += f" and {len(vms) - 10} more" if len(vms) > 10 else ""
    if action == Action.REVERT:
        print("Each VM stays running, paused or shut off as it is now; the vCPUs or memory of requests "
              "approved since the snapshot are put back (from the next boot).", file=sys.stderr)
    question = f"{action.value.capitalize()} {count(len(vms), 'VM')}: {names}?"
    if word := confirmation_word(action.value, vms, every_vm):
        what = "how many VMs" if word.isdigit() else "the class's name"
        return input(f"{question} This cannot be undone: type {what} ({printable(word)}) to go "
                     "ahead: ").strip() == word
    return yes(f"{question} [y/N] ")
