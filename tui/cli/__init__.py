"""``vm-manager``: the command line. With no command it starts the operator TUI.

Exit codes: 0 all done; 1 some targets failed (one line each on stderr); 2 bad usage or an
unreachable hypervisor. Errors are sentences, never tracebacks.

Each sub-command's parser sets its ``handler`` (:mod:`tui.cli.vms`: list, lifecycle actions,
assign; :mod:`tui.cli.provision`: templates, provision, doctor; :mod:`tui.cli.consoles`: serve,
share, revoke; :mod:`tui.cli.records`: audit, requests; :mod:`tui.cli.users`: user); :func:`main`
calls it. What they share is in :mod:`tui.cli.common`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from core import __version__
from core.errors import VMManagerError
from core.lab import Lab
from core.log import setup_logging
from core.settings import Settings, load_settings
from core.text import printable
from tui.cli import consoles, provision, records, users, vms
from tui.cli.common import EXIT_OK, EXIT_USAGE, Parser, UsageError, host_port

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vm-manager", description="Run a teaching lab of VMs on libvirt. "
        "With no command, start the operator TUI.")
    parser.add_argument("-c", "--connect", metavar="URI",
                        help="libvirt URI, as virsh -c takes it (default: LIBVIRT_DEFAULT_URI, "
                        "else qemu:///system when it answers, else the built-in demo lab)")
    parser.add_argument("--version", action="version", version=f"vm-manager {__version__}")
    parser.set_defaults(handler=run_tui)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    tui = commands.add_parser("tui", help="start the operator TUI (the default)")
    tui.add_argument("--serve", type=host_port, metavar="[HOST:]PORT",
                     help="also run the console server (as `serve` does) inside the TUI, for a "
                     "one-person lab; HOST defaults to 127.0.0.1")
    tui.set_defaults(handler=run_tui)

    vms.add_list_parser(commands)
    vms.add_action_parsers(commands)
    vms.add_snapshots_parser(commands)
    provision.add_parsers(commands)
    vms.add_assign_parser(commands)
    consoles.add_parsers(commands)
    records.add_parsers(commands)
    users.add_parsers(commands)
    return parser


def run_tui(args: argparse.Namespace, settings: Settings) -> int:
    serve = getattr(args, "serve", None)
    # Connect on the core's thread while Textual is still being imported.
    opening = Lab.open_soon(settings, args.connect)
    from tui.app import run_app  # Textual (~0.3 s): loaded only for the TUI, never for a command

    return run_app(settings, args.connect, opening, serve=serve)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings().with_uri(args.connect)
        setup_logging(settings)
        done = args.handler(args, settings)
        return asyncio.run(done) if asyncio.iscoroutine(done) else done
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"vm-manager: error: {printable(str(exc), multiline=True)}", file=sys.stderr)
        return EXIT_USAGE
    except VMManagerError as exc:
        print(f"vm-manager: {printable(exc.message, multiline=True)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `vm-manager list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
