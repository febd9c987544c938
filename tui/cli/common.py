"""What the commands share: exit codes, bad usage, targets on the command line, questions asked on
a terminal, the provisioning progress bar, and plain-text tables.

Text from outside (names, owners, addresses, reasons, the command line's arguments, messages
quoting them) is printed through :func:`core.text.printable`, JSON through
:func:`core.text.json_text`: a control character or a bidi override shows escaped, never acts on
the operator's terminal. The tables, ``unmatched``, ``report`` and :class:`Parser`'s errors apply
it themselves; every other line that holds outside text applies it where the line is made."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from core.lifecycle import ActionResult
from core.settings import Settings, positive_number
from core.text import printable

if TYPE_CHECKING:
    from core.provision import Outcome

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Settings], int | Awaitable[int]]
"""What a sub-command sets as ``handler``: an exit code, or a coroutine that ``main`` runs to one."""

Commands = argparse._SubParsersAction  # the stdlib's own name for what add_subparsers returns


class UsageError(Exception):
    """Bad usage that argparse cannot see (e.g. no target at all)."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors quote the command line (``unrecognized arguments: ...``)
    through the one rule; its sub-parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        super().error(printable(message, multiline=True))


def add_targets(sub: argparse.ArgumentParser) -> None:
    """``TARGET...`` and ``--class C``: the VMs a command acts on (see :func:`need_targets`)."""
    sub.add_argument("targets", nargs="*", metavar="TARGET", help="a VM name or a glob (stu-*)")
    sub.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                     help="every VM of class C (repeatable)")


def need_targets(args: argparse.Namespace) -> None:
    """Refuse a command given neither a TARGET nor a --class (argparse takes none as no VM)."""
    if not args.targets and not args.classes:
        raise UsageError(f"{args.command} needs at least one TARGET or --class")


def seconds(text: str) -> float:
    """``--timeout``: a positive, finite number of seconds (as the settings take them)."""
    try:
        return positive_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds") from None


def host_port(text: str) -> tuple[str, int]:
    """``--serve``: ``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST:]PORT (e.g. 5000 or 0.0.0.0:5000)")
    return host, int(port)


def on_terminal() -> bool:
    """Whether a question can be asked: stdin is a terminal (never a pipe, a file, /dev/null)."""
    return sys.stdin.isatty()


def yes(question: str) -> bool:
    """Ask on the terminal; only ``y`` or ``yes`` goes ahead."""
    return input(question).strip().lower() in ("y", "yes")


def unmatched(names: Sequence[str]) -> None:
    """One line on stderr for each target that named no VM."""
    for name in names:
        print(f"{printable(name)}: no such VM", file=sys.stderr)


def report(results: Sequence[ActionResult], *, failed: bool) -> int:
    """A line per VM (failures on stderr); exit 1 when one failed or ``failed`` already."""
    for result in results:
        print(f"{printable(result.vm.name)}: {printable(result.message)}",
              file=sys.stdout if result.ok else sys.stderr)
    return EXIT_FAILED if failed or any(not r.ok for r in results) else EXIT_OK


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell, two spaces apart, no trailing blanks; every cell
    through the one rule."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


class ProgressBar:
    """A bar on a terminal's stderr; elsewhere (a pipe, a log) nothing: the report follows."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = sys.stderr.isatty()

    def update(self, done: int, total: int, outcome: Outcome) -> None:
        if self.shown:
            width = 30
            filled = width * done // max(total, 1)
            bar = f"[{'#' * filled}{'.' * (width - filled)}]"
            sys.stderr.write(f"\r{bar} {done}/{total} {printable(outcome.name):<30}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
