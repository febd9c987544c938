#!/usr/bin/env bash
# Install noVNC, at one pinned version, into noVNC/vendor/ (git-ignored): the server serves it at /novnc/.
#
#   scripts/install_novnc.sh          install unless the pinned version is already there
#   scripts/install_novnc.sh --force  install again
#
# The source is Debian's `novnc` package (noVNC 1.3.0, ES modules as upstream ships them, so
# core/rfb.js loads in a browser as it is), fetched with `apt-get download` -- from the same mirror
# as every other system package, so no other host is needed -- and checked against a pinned SHA-256
# before anything is unpacked. Only the browser part is kept (core/, vendor/pako, app/, the HTML
# pages, the licence); the package is never installed: its daemon and dependencies are not needed.
#
# Offline: a copy of the pinned .deb in apt's cache (/var/cache/apt/archives) or in
# $VMM_NOVNC_DEB is used without the network; it is checked the same way.
set -euo pipefail
cd "$(dirname "$0")/.."

NOVNC_VERSION=1.3.0
DEB_VERSION=1:1.3.0-1
DEB_SHA256=5ff8b8c93c1c6cc911e01bfa77d12d4098e1904f738a996040c8095e02492ebb
DEB_FILE="novnc_${DEB_VERSION/:/%3a}_all.deb"
DEST=noVNC/vendor
STAMP=$DEST/.installed
WANT="novnc $DEB_VERSION sha256:$DEB_SHA256"

log() { printf 'install_novnc: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [[ ${1:-} != --force && -f $STAMP && $(<"$STAMP") == "$WANT" && -f $DEST/core/rfb.js ]]; then
    exit 0
fi
[[ -z ${1:-} || $1 == --force ]] || { echo "usage: $0 [--force]" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A local copy first (offline), else apt-get download (apt-get update once when the lists lack it).
deb=
for candidate in "${VMM_NOVNC_DEB:-}" "/var/cache/apt/archives/$DEB_FILE"; do
    if [[ -n $candidate && -f $candidate ]]; then
        deb=$candidate
        break
    fi
done
if [[ -z $deb ]]; then
    command -v apt-get >/dev/null || die "apt-get not found: put $DEB_FILE in VMM_NOVNC_DEB"
    # apt's sandbox user cannot write to a root-owned mktemp dir: download as root, quietly.
    chmod 0755 "$work"
    download() { (cd "$work" && apt-get download -q "novnc=$DEB_VERSION" -o APT::Sandbox::User=root) >&2; }
    if ! download; then
        ((EUID == 0)) || die "apt-get download novnc=$DEB_VERSION failed (as root, apt-get update may help)"
        if [[ ${VMM_APT_UPDATED:-} != 1 ]]; then
            log "apt-get update, then downloading novnc $DEB_VERSION again"
            apt-get update -q >&2
            export VMM_APT_UPDATED=1
        fi
        download || die "apt-get download novnc=$DEB_VERSION failed: is the Debian mirror reachable?"
    fi
    deb=$work/$DEB_FILE
    [[ -f $deb ]] || die "apt-get download left no $DEB_FILE in $work"
fi

got=$(sha256sum "$deb" | cut -d' ' -f1)
if [[ $got != "$DEB_SHA256" ]]; then
    die "checksum mismatch for $deb:
  expected sha256 $DEB_SHA256
  got      sha256 $got
Not installing. The mirror may carry a rebuilt or updated novnc; check it, then update the pin in $0."
fi

dpkg-deb -x "$deb" "$work/x"
src=$work/x/usr/share/novnc
[[ -f $src/core/rfb.js ]] || die "$deb has no usr/share/novnc/core/rfb.js"
grep -q '^import ' "$src/core/rfb.js" || die "$deb: core/rfb.js is not an ES module"

# Build beside the destination, then swap, so a failed run never leaves half an install.
mkdir -p noVNC
new=$(mktemp -d noVNC/.vendor-new.XXXXXX)
cp -a "$src/core" "$src/vendor" "$src/app" "$src/vnc.html" "$src/vnc_lite.html" "$new/"
cp "$work/x/usr/share/doc/novnc/copyright" "$new/COPYRIGHT"
chmod -R u=rwX,go=rX "$new"
printf '%s\n' "$WANT" >"$new/.installed"
rm -rf "$DEST"
mv "$new" "$DEST"
log "installed noVNC $NOVNC_VERSION (Debian novnc $DEB_VERSION) into $DEST"
