#!/usr/bin/env bash
# Install what VM Manager needs on a Debian 12 machine, as root, and nothing that is already there.
#
#   scripts/setup.sh system [run]
#                             apt-get install the missing system packages (apt-get update once,
#                             and only when something is missing), then noVNC at its pinned
#                             version into noVNC/vendor/ (scripts/install_novnc.sh). `run`: only
#                             what the app itself needs (make run), no daemon among them
#   scripts/setup.sh venv     create .venv if needed and install the project editable with its
#                             dev dependency group; touches .venv/.installed when done
#   scripts/setup.sh          both (the Makefile calls the two steps separately, so that the venv
#                             step is skipped while .venv/.installed is newer than pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")/.."

# What the app needs (make run): openssl (password hashes), qemu-utils (overlays), acl (setfacl: lets
# QEMU pass a folder in the way of a VM's files, `provision --fix-permissions`), and what builds
# libvirt-python from source (PyPI ships it as an sdist only): a C compiler, pkg-config, libvirt-dev
# (which brings libvirt's client library, test driver included) and the Python headers. None of
# them starts a daemon when installed.
RUN_PACKAGES=(openssl libvirt-dev pkg-config qemu-utils acl python3 python3-venv python3-dev gcc)
# What the tests, the benchmark and the template builds add: libvirtd and QEMU, tmux for the TUI
# tests; cpio and kmod (depmod) for the tiny template's initramfs, genisoimage; mmdebstrap and
# e2fsprogs for the Debian template; the throwaway OpenLDAP server of the LDAP tests (slapd,
# ldap-utils); Debian's Chromium for the browser tests (driven by Playwright, never a downloaded
# browser); nginx, to run deploy/'s site in front of the server.
TEST_PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 tmux cpio kmod genisoimage
               mmdebstrap e2fsprogs slapd ldap-utils chromium nginx-light)
VENV=.venv
STAMP=$VENV/.installed
PYTHON=${PYTHON:-python3}

log() { printf 'setup: %s\n' "$*" >&2; }

installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

system() {
    if [[ ${1:-} == run ]]; then
        packages "${RUN_PACKAGES[@]}"
    else
        packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    fi
    scripts/install_novnc.sh
}

packages() {
    local missing=() pkg
    for pkg in "$@"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if ((EUID != 0)); then
        log "missing Debian packages: ${missing[*]} (run as root, or install them yourself)"
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ ${VMM_APT_UPDATED:-} != 1 ]]; then
        apt-get update -q
        export VMM_APT_UPDATED=1
    fi
    # Packages of daemons (libvirtd, slapd, nginx) start them when installed, unless policy-rc.d
    # says no: the tests start what they need themselves, and nothing is left running behind them.
    # The guard goes however apt-get ends (an interrupted install must not leave it behind).
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        trap 'exit 130' INT TERM
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
    fi
    apt-get install -y -q -o Dpkg::Options::=--force-confold "${missing[@]}"
}

# The packages of a [dependency-groups] group, for a pip too old for --group (before 25.1).
group_packages() {
    "$VENV/bin/python" - "$1" <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    groups = tomllib.load(f).get("dependency-groups", {})


def expand(name: str, seen: set[str]) -> list[str]:
    out: list[str] = []
    for item in groups.get(name, []):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and item.get("include-group") not in seen:
            seen.add(item["include-group"])
            out.extend(expand(item["include-group"], seen))
    return out


print("\n".join(expand(sys.argv[1], {sys.argv[1]})))
PY
}

venv() {
    if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating $VENV with $("$PYTHON" --version 2>&1)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
    "${pip[@]}" install -q --upgrade pip || log "could not upgrade pip; going on with $("${pip[@]}" --version)"
    if "${pip[@]}" install --help 2>/dev/null | grep -q -- '--group'; then
        "${pip[@]}" install -q -e . --group dev
    else
        local dev=()
        mapfile -t dev < <(group_packages dev)
        "${pip[@]}" install -q -e . "${dev[@]}"
    fi
    touch "$STAMP"
    log "installed the project and its dev group into $VENV"
}

case ${1:-all} in
    system) system "${2:-}" ;;
    venv) venv ;;
    all)
        system
        if [[ ! -e $STAMP || pyproject.toml -nt $STAMP ]]; then venv; fi
        ;;
    *) echo "usage: $0 [system|venv|all]" >&2; exit 2 ;;
esac
