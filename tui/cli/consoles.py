"""Browser consoles: ``serve`` (the web server), ``share`` (a link per VM), ``revoke`` and ``links``.

    vm-manager serve [--host 127.0.0.1] [--port 5000] [--generate-secret]
    vm-manager share TARGET... [--class C] [--ttl 2h]
    vm-manager revoke TOKEN|LINK-ID|TARGET... [--class C]
    vm-manager links [--class C] [--csv]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from core.errors import ConfigError
from core.lab import DEMO_URI, Lab, choose_uri
from core.lifecycle import check_classes, resolve
from core.links import (
    Consoles,
    base_url,
    generate_secret_key,
    key_file,
    load_secret_key,
    parse_ttl,
    revoke_target,
)
from core.model import VM
from core.settings import Settings
from core.text import csv_text, format_time, printable
from core.web import serve
from tui.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Commands,
    UsageError,
    add_targets,
    need_targets,
    print_table,
    unmatched,
)


def add_parsers(commands: Commands) -> None:
    server = commands.add_parser("serve", help="run the web server: browser consoles behind share links")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=int, default=5000, help="TCP port (default 5000)")
    server.add_argument("--generate-secret", action="store_true",
                        help="when SECRET_KEY is unset, write a random key to <config dir>/secret_key "
                        "(mode 0600) unless a good one is there, and use it")
    server.set_defaults(handler=run_server)
    share = commands.add_parser("share", help="make a console share link per VM")
    add_targets(share)
    share.add_argument("--ttl", metavar="DURATION",
                       help="how long the links last: 30m, 4h, 2d (default: VMM_SHARE_TTL, 4h)")
    share.set_defaults(handler=share_links)
    revoke = commands.add_parser("revoke", help="revoke share links (and close their consoles)")
    revoke.add_argument("targets", nargs="*", metavar="TOKEN|ID|TARGET",
                        help="a link's token (or URL), its id, or a VM name or glob: all its links")
    revoke.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                        help="the links of every VM of class C (repeatable)")
    revoke.set_defaults(handler=revoke_links)
    listing = commands.add_parser("links", help="list the share links still open: VM, owner, id, expiry, "
                                  "viewers (a URL is shown only when its link is made)")
    listing.add_argument("--class", dest="classes", action="append", default=[], metavar="C",
                         help="only the links of VMs of class C (repeatable)")
    listing.add_argument("--csv", action="store_true", help="CSV, with a header line")
    listing.set_defaults(handler=list_links)


async def run_server(args: argparse.Namespace, settings: Settings) -> int:
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
              f"http://{printable(args.host)}:{args.port}; set PUBLIC_URL to the address browsers use",
              file=sys.stderr)
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


async def share_links(args: argparse.Namespace, settings: Settings) -> int:
    need_targets(args)
    ttl = args.ttl or settings.consoles.share_ttl
    parse_ttl(ttl)  # a bad duration is refused before the hypervisor is asked anything
    lab = await Lab.open(settings, args.connect, addresses=False, figures=False)  # a link needs neither
    try:
        found = resolve(lab.vms(), args.targets, args.classes)
    finally:
        await lab.close()
    unmatched(found.unmatched)
    if not found.vms:
        return EXIT_FAILED
    result = await Consoles(settings, source="cli").share(found.vms, ttl)
    if not result.via_server and not settings.web.public_url:  # the database directly: no server runs
        print(f"vm-manager: PUBLIC_URL is unset: the links point at {base_url(settings)}", file=sys.stderr)
    for name, why in result.errors:
        print(f"{printable(name)}: {printable(why)}", file=sys.stderr)
    for link in result.links:
        print(f"{link.url}  expires {link.expires}  id {link.id}  vm {printable(link.vm_name)}")
    return EXIT_FAILED if found.unmatched or result.errors else EXIT_OK


async def revoke_links(args: argparse.Namespace, settings: Settings) -> int:
    need_targets(args)
    asked: dict[str, list[str]] = {"id": [], "token": [], "vm": []}
    for arg in args.targets:
        kind, value = revoke_target(arg)
        asked[kind].append(value)
    failed = False
    vms: list[VM] = []
    if asked["vm"] or args.classes:
        lab = await Lab.open(settings, args.connect, addresses=False, figures=False)
        try:
            found = resolve(lab.vms(), asked["vm"], args.classes)
        finally:
            await lab.close()
        unmatched(found.unmatched)
        failed = bool(found.unmatched)
        vms = found.vms
    result = await Consoles(settings, source="cli").revoke(ids=asked["id"], tokens=asked["token"], vms=vms)
    labels = [*(f"link {i}" for i in asked["id"]), *(f"token {t[:6]}…" for t in asked["token"]),
              *(vm.name for vm in vms)]
    for label, done in zip(map(printable, labels), result.results, strict=True):
        if not done.found and done.kind != "vm":
            print(f"{label}: no such share link", file=sys.stderr)
            failed = True
        for link_id, vm_name in done.revoked:
            print(f"{label}: revoked link {link_id} of {printable(vm_name)}")
        if done.found and not done.revoked:
            print(f"{label}: {'no active share link' if done.kind == 'vm' else 'already expired or revoked'}")
        elif not done.found and done.kind == "vm":
            print(f"{label}: no share link")
    if result.closed:
        print(f"closed {result.closed} open console(s)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


LINK_COLUMNS = ("vm", "owner", "id", "expires", "viewers")


async def list_links(args: argparse.Namespace, settings: Settings) -> int:
    """The open share links: a link is named by its id (its token is kept only as an HMAC, so its
    URL cannot be shown again); viewers are counted when a console server answers."""
    check_classes(args.classes)
    lab = await Lab.open(settings, args.connect, addresses=False, figures=False)
    try:
        vms = {vm.uuid: vm for vm in lab.vms()}
    finally:
        await lab.close()
    listed = await Consoles(settings, source="cli").listed()
    rows = []
    for item in listed:
        vm = vms.get(item.link.vm_uuid)
        if args.classes and (vm is None or vm.meta.lab_class not in args.classes):
            continue
        rows.append((item.link.vm_name, vm.meta.owner if vm is not None else "", item.link.id,
                     format_time(item.link.expires), "" if item.viewers is None else str(item.viewers)))
    if args.csv:
        print(csv_text(LINK_COLUMNS, rows), end="")
    else:
        print_table([c.upper() for c in LINK_COLUMNS], [[cell or "—" for cell in row] for row in rows])
        note = "a link's URL is shown only when it is made (its token is stored hashed)"
        if listed and listed[0].viewers is None:
            note += "; no console server answers: viewers are not counted"
        print(note, file=sys.stderr)
    return EXIT_OK
