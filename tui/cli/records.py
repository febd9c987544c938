"""The lab's records: ``audit`` and ``requests`` (listed, approved, rejected).

    vm-manager audit [--since 2h|2026-11-24[T08:00]] [--user NAME] [--vm NAME|UUID] [--json]
    vm-manager requests [--all] [--json]
    vm-manager requests approve ID [--word TEXT]
    vm-manager requests reject ID --word TEXT
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime

from core.errors import VMManagerError
from core.lab import Lab
from core.records import AuditLog, Entry, Request, RequestStore, Status
from core.settings import Settings, duration
from core.text import format_time, json_text, printable
from tui.cli.common import EXIT_FAILED, EXIT_OK, Commands


def add_parsers(commands: Commands) -> None:
    audit = commands.add_parser("audit", help="show the audit log: who did what to which VM, when, "
                                "from where, and how it went")
    audit.add_argument("--since", type=parse_since, metavar="WHEN",
                       help="a duration back from now (30m, 2h, 7d) or a date/time (2026-11-24T08:00)")
    audit.add_argument("--user", help="only what this user did")
    audit.add_argument("--vm", help="only what was done to this VM (name or UUID)")
    audit.add_argument("--limit", type=int, default=1000, help="at most this many, the newest (1000)")
    audit.add_argument("--json", action="store_true", help="one JSON array of entries")
    audit.set_defaults(handler=show_audit)

    requests = commands.add_parser("requests", help="list students' resource requests, or answer one")
    requests.add_argument("--all", action="store_true", help="answered ones too (default: pending only)")
    requests.add_argument("--json", action="store_true", help="one JSON array of requests")
    requests.set_defaults(handler=list_requests)
    answers = requests.add_subparsers(dest="answer", metavar="ANSWER")
    for verb, helptext in (("approve", "approve a request: vCPUs or memory go into the VM's definition "
                                       "(from its next boot)"),
                           ("reject", "reject a request, with a word for the student")):
        sub = answers.add_parser(verb, help=helptext)
        sub.add_argument("id", type=int, help="the request's number")
        sub.add_argument("--word", default="", required=verb == "reject", help="a word for the student")
        sub.set_defaults(handler=answer_request)


def parse_since(text: str) -> float:
    """``2h`` (back from now) or an ISO date/time in local time, as a POSIX time."""
    try:
        return time.time() - duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a duration (2h, 7d) nor a date "
                                         "(2026-11-24 or 2026-11-24T08:00)") from None


def show_audit(args: argparse.Namespace, settings: Settings) -> int:
    log = AuditLog(settings.database_path)
    try:
        entries = log.entries(since=args.since, user=args.user, vm=args.vm, limit=args.limit)
    finally:
        log.close()
    if args.json:
        print(json_text([e.as_json() for e in entries], indent=1))
    else:
        for entry in entries:
            print(_audit_line(entry))
    return EXIT_OK


def _audit_line(e: Entry) -> str:
    at = datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S")
    vm = f" {e.vm_name}" if e.vm_name else ""
    detail = f"  {e.detail}" if e.detail else ""
    times = f"  {e.times}" if e.times else ""
    return printable(f"{at}  {e.user} ({e.source} {e.address})  {e.action}{vm}  {e.outcome}{detail}{times}")


def list_requests(args: argparse.Namespace, settings: Settings) -> int:
    store = RequestStore(settings.database_path)
    try:
        found = store.list(status=None if args.all else Status.PENDING)
    finally:
        store.close()
    if args.json:
        print(json_text([_request_json(r) for r in found], indent=1))
        return EXIT_OK
    if not found:
        print("no requests" if args.all else "no pending requests", file=sys.stderr)
    for r in found:
        answer = f"  → {r.answered_by}: {r.answer}" if r.status is not Status.PENDING else ""
        print(printable(f"#{r.id}  {r.status:<8}  {r.username}  {r.summary()}  ({format_time(r.created)})  "
                        f"{r.reason}{answer}"))
    return EXIT_OK


def _request_json(r: Request) -> dict[str, object]:
    return {"id": r.id, "user": r.username, "kind": r.kind.value, "vm": r.vm_name, "uuid": r.vm_uuid,
            "amount": r.amount, "reason": r.reason, "created": format_time(r.created),
            "status": r.status.value, "answered_by": r.answered_by, "answer": r.answer}


async def answer_request(args: argparse.Namespace, settings: Settings) -> int:
    lab = await Lab.open(settings, args.connect)
    try:
        done = await lab.answer_request(args.id, approve=args.answer == "approve", word=args.word)
    except VMManagerError as exc:
        print(f"vm-manager: {printable(exc.message)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await lab.close()
    print(printable(f"#{done.id} {done.status}: {done.summary()} for {done.username}"))
    return EXIT_OK
