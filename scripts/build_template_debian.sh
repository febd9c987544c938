#!/usr/bin/env bash
# Build the "debian" template offline from Debian packages: a Debian 12 cloud image that
# cloud-init sets up from a NoCloud seed at first boot, booted by direct kernel boot.
#
#   scripts/build_template_debian.sh [OUT_DIR]
#
# OUT_DIR defaults to $VMM_TEMPLATE_DIR/debian, else $VMM_DATA_DIR/templates/debian, else
# ~/.local/share/vm-manager/templates/debian (as core/settings.py resolves them). It receives
#   base.qcow2   the root file system: ext4 (label rootfs) on the whole disk, no partition
#                table, compressed qcow2 with a virtual size of 3 GiB. Never boot it: boot
#                overlays (qemu-img create -f qcow2 -F qcow2 -b base.qcow2 overlay.qcow2), or
#                cloud-init records its instance in the base and every clone skips its setup.
#   vmlinuz      the Debian cloud kernel of that file system (linux-image-cloud-amd64)
#   initrd.img   its initramfs (initramfs-tools; carries virtio_blk)
# Kernel command line: root=/dev/vda rw console=ttyS0. Machine `pc` (i440fx): the NoCloud seed
# goes on an IDE CD-ROM (the cloud kernel has no AHCI). The guest agent (qemu-guest-agent)
# starts when the domain has the virtio channel org.qemu.guest_agent.0.
#
# How (see /work/shared/notes/debian-template.md): `mmdebstrap --mode=root --variant=minbase`
# from the mirrors of this machine's own apt sources, then configuration in the tree, then
# `mke2fs -t ext4 -d` (no loop device, no mount) and `qemu-img convert -c`. In the image:
#   - cloud-init reads only NoCloud (`datasource_list: [NoCloud, None]`) and makes only ed25519
#     and ecdsa SSH host keys, should openssh-server be added;
#   - fr_FR.UTF-8 and en_US.UTF-8 are generated, and `locale-gen` (which cloud-init runs for
#     the seed's locale and which, on Debian, ignores its argument and rebuilds every locale)
#     is diverted to a wrapper that adds the requested locale to /etc/locale.gen if missing and
#     builds only what is not built yet;
#   - no root password, no SSH host keys, an empty machine-id: first boot makes them;
#   - e2scrub's units are disabled (no LVM here; its boot-time reaper costs seconds on TCG).
# Needs root, mmdebstrap, e2fsprogs (mke2fs -d) and qemu-utils; missing ones are installed with
# apt-get. Idempotent: does nothing while the three outputs exist and are newer than this script.
# An older base.qcow2 is not replaced (VMs made from it use it as their backing file) unless
# VMM_DEBIAN_FORCE=1, which also rebuilds a current one. Downloads about 205 packages (no cache is
# kept): about 2 minutes and 180 MiB.
#
# QEMU runs as libvirt-qemu and opens the kernel, initrd and base image itself: OUT_DIR and
# every directory above it must be searchable by that user (root's home is not; /var/lib/... or
# /var/tmp are). Outputs are 0644, OUT_DIR 0755.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=$PWD/scripts/build_template_debian.sh

log() { printf 'build_template_debian: %s\n' "$*" >&2; }

SUITE=bookworm
DISK_SIZE=3G
LOCALES=(fr_FR.UTF-8 en_US.UTF-8)  # what labs use; any other is generated at first boot
PACKAGES=(systemd-sysv udev dbus kmod iproute2 ifupdown isc-dhcp-client netbase e2fsprogs cloud-init
          linux-image-cloud-amd64 initramfs-tools keyboard-configuration console-setup kbd locales sudo
          qemu-guest-agent procps)
OUTPUTS=(base.qcow2 vmlinuz initrd.img)
# command -> Debian package
declare -A TOOLS=([mmdebstrap]=mmdebstrap [mke2fs]=e2fsprogs [qemu-img]=qemu-utils)

default_out() {
    local data
    if [[ -n ${VMM_TEMPLATE_DIR:-} ]]; then
        echo "$VMM_TEMPLATE_DIR/debian"
        return
    fi
    data=${VMM_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vm-manager}
    echo "$data/templates/debian"
}

OUT=${1:-$(default_out)}
OUT=${OUT/#\~/$HOME}

current() {
    local name
    for name in "${OUTPUTS[@]}"; do
        [[ $OUT/$name -nt $SCRIPT ]] || return 1
    done
}

if [[ ${VMM_DEBIAN_FORCE:-} != 1 ]] && current; then
    log "$OUT is up to date"
    exit 0
fi
# Every VM made from the template has base.qcow2 as its backing file: a new base under them
# would corrupt their disks. Replace one only when asked to.
if [[ ${VMM_DEBIAN_FORCE:-} != 1 && -e $OUT/base.qcow2 ]]; then
    log "$OUT/base.qcow2 is older than this script; not replacing it: the disks of VMs made from"
    log "it are overlays on it. Build elsewhere (scripts/build_template_debian.sh DIR), or delete"
    log "those VMs and rebuild with VMM_DEBIAN_FORCE=1"
    exit 1
fi
if ((EUID != 0)); then
    log "needs root (mmdebstrap --mode=root)"
    exit 1
fi

PATH=$PATH:/usr/sbin:/sbin  # mke2fs

ensure_tools() {
    local tool missing=()
    for tool in "${!TOOLS[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOLS[$tool]}")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    [[ ${VMM_APT_UPDATED:-} == 1 ]] || apt-get update -q
    apt-get install -y -q -o Dpkg::Options::=--force-confold "${missing[@]}"
}

# One-line `deb` entries for $SUITE (and $SUITE-updates, -security, ...) from this machine's
# apt sources, one-line and deb822 alike; signed-by is kept, disabled stanzas are skipped.
mirror_lines() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $file ]] || continue
        awk -v suite="$SUITE" '
            $1 != "deb" { next }
            {
                line = $0
                sub(/^deb[ \t]+/, "", line)
                opts = ""
                if (line ~ /^\[/) {
                    opts = substr(line, 1, index(line, "]"))
                    line = substr(line, index(line, "]") + 1)
                }
                n = split(line, f, " ")
                if (n >= 3 && f[2] ~ ("^" suite "([-/][a-z]+)?$")) {
                    rest = ""
                    for (i = 3; i <= n; i++) rest = rest " " f[i]
                    print "deb " (opts == "" ? "" : opts " ") f[1] " " f[2] rest
                }
            }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f $file ]] || continue
        awk -v suite="$SUITE" '
            function flush(    n, m, i, j, s, u) {
                if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "") {
                    n = split(suites, s, " ")
                    m = split(uris, u, " ")
                    for (i = 1; i <= n; i++) {
                        if (s[i] !~ ("^" suite "([-/][a-z]+)?$")) continue
                        for (j = 1; j <= m; j++)
                            print "deb " (signed == "" ? "" : "[signed-by=" signed "] ") u[j] " " s[i] " " comps
                    }
                }
                types = uris = suites = comps = signed = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { next }  # a continuation line (an inline key): not a path
            {
                key = tolower($0); sub(/:.*/, "", key)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value); sub(/[ \t]+$/, "", value)
                if (key == "types") types = value
                else if (key == "uris") uris = value
                else if (key == "suites") suites = value
                else if (key == "components") comps = value
                else if (key == "signed-by" && value ~ /^\//) signed = value
                else if (key == "enabled") enabled = value
            }
            END { flush() }' "$file"
    done
}

# cloud-init's configuration, locales, the locale-gen wrapper, host name, fstab: in the tree.
configure_rootfs() {
    local root=$1 locale charset
    install -d -m 0755 "$root/etc/cloud/cloud.cfg.d"
    cat >"$root/etc/cloud/cloud.cfg.d/99_vm-manager.cfg" <<'CFG'
# VM Manager: the seed is a NoCloud CD-ROM (volume cidata); nothing else is looked for.
datasource_list: [NoCloud, None]
# Only these SSH host keys, should openssh-server be installed (each kind costs seconds on TCG).
ssh_genkeytypes: [ed25519, ecdsa]
CFG
    chmod 0644 "$root/etc/cloud/cloud.cfg.d/99_vm-manager.cfg"

    for locale in "${LOCALES[@]}"; do
        charset=$(awk -v l="$locale" '$1 == l { print $2; exit }' "$root/usr/share/i18n/SUPPORTED")
        [[ -n $charset ]] || { log "$locale is not in the guest's /usr/share/i18n/SUPPORTED"; exit 1; }
        if grep -Eq "^#? *${locale//./\\.} " "$root/etc/locale.gen"; then
            sed -i -E "s/^# *(${locale//./\\.} )/\\1/" "$root/etc/locale.gen"
        else
            printf '%s %s\n' "$locale" "$charset" >>"$root/etc/locale.gen"
        fi
    done
    chroot "$root" dpkg-divert --quiet --local --rename --divert /usr/sbin/locale-gen.debian \
        --add /usr/sbin/locale-gen
    cat >"$root/usr/sbin/locale-gen" <<'WRAPPER'
#!/bin/sh
# VM Manager: Debian's locale-gen ignores its arguments and rebuilds every locale of
# /etc/locale.gen; cloud-init runs `locale-gen LOCALE` at first boot. Add each requested locale
# to /etc/locale.gen when it is missing, then build only the locales not built yet.
# The real one is /usr/sbin/locale-gen.debian (dpkg-divert).
set -e
for arg in "$@"; do
    case $arg in
    -*) continue ;;
    esac
    if awk -v l="$arg" '$1 == l { found = 1 } END { exit !found }' /etc/locale.gen; then
        continue
    fi
    line=$(awk -v l="$arg" '$1 == l { print; exit }' /usr/share/i18n/SUPPORTED)
    [ -n "$line" ] || continue
    if grep -qxF "# $line" /etc/locale.gen; then
        tmp=$(mktemp /etc/locale.gen.XXXXXX)
        awk -v l="# $line" '$0 == l { print substr($0, 3); next } { print }' /etc/locale.gen >"$tmp"
        chmod 0644 "$tmp"
        mv -f "$tmp" /etc/locale.gen
    else
        printf '%s\n' "$line" >>/etc/locale.gen
    fi
done
exec /usr/sbin/locale-gen.debian --keep-existing
WRAPPER
    chmod 0755 "$root/usr/sbin/locale-gen"
    chroot "$root" /usr/sbin/locale-gen.debian >/dev/null

    echo debian >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$root/etc/hosts"
    printf 'LABEL=rootfs\t/\text4\tdefaults,errors=remount-ro\t0\t1\n' >"$root/etc/fstab"
    rm -f "$root/etc/resolv.conf"  # the build host's; DHCP writes the guest's own
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    # e2scrub only checks LVM volumes (none here); its boot-time reaper costs seconds on TCG.
    chroot "$root" systemctl disable --quiet e2scrub_reap.service e2scrub_all.timer
}

ensure_tools
# mmdebstrap's tree is 0755 and the disk image is large: not /tmp, which may be a small tmpfs.
WORK=$(mktemp -d /var/tmp/vmm-debian.XXXXXX)
# mmdebstrap mounts /proc, /sys and /dev inside the tree while it works and unmounts them even when
# it fails; should one be left all the same, keep the tree rather than delete through it.
cleanup() {
    if grep -qF " $WORK/" /proc/self/mounts; then
        log "file systems still mounted under $WORK: not removing it"
        return
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
start=$SECONDS
ROOTFS=$WORK/rootfs

mapfile -t MIRRORS < <(mirror_lines)
if ((${#MIRRORS[@]} == 0)); then
    log "no $SUITE entry in /etc/apt/sources*: using mmdebstrap's default mirrors"
else
    log "mirrors: ${MIRRORS[*]}"
fi
include=$(IFS=,; echo "${PACKAGES[*]}")
log "mmdebstrap $SUITE (minbase + ${#PACKAGES[@]} packages and their dependencies)"
mmdebstrap --mode=root --variant=minbase --include="$include" --quiet \
    "$SUITE" "$ROOTFS" "${MIRRORS[@]}"
log "root file system: $(du -sh "$ROOTFS" | cut -f1), $(chroot "$ROOTFS" dpkg-query -W | wc -l) packages," \
    "$((SECONDS - start)) s"

configure_rootfs "$ROOTFS"

KERNELS=("$ROOTFS"/boot/vmlinuz-*)
if ((${#KERNELS[@]} != 1)); then
    log "expected one kernel in the image's /boot, found: ${KERNELS[*]}"
    exit 1
fi
KVER=${KERNELS[0]##*/vmlinuz-}
[[ -f $ROOTFS/boot/initrd.img-$KVER ]] || { log "no initrd.img-$KVER in the image's /boot"; exit 1; }

mkdir -p "$OUT"
log "mke2fs -t ext4 -d ($DISK_SIZE) and qemu-img convert -c"
truncate -s "$DISK_SIZE" "$WORK/root.raw"
mke2fs -q -t ext4 -L rootfs -d "$ROOTFS" -F "$WORK/root.raw" "$DISK_SIZE"
qemu-img convert -f raw -O qcow2 -c "$WORK/root.raw" "$OUT/.base.qcow2.tmp"
install -m 0644 "$ROOTFS/boot/vmlinuz-$KVER" "$OUT/.vmlinuz.tmp"
install -m 0644 "$ROOTFS/boot/initrd.img-$KVER" "$OUT/.initrd.img.tmp"
chmod 0644 "$OUT/.base.qcow2.tmp"
for name in "${OUTPUTS[@]}"; do
    mv -f "$OUT/.$name.tmp" "$OUT/$name"
done
chmod 0755 "$OUT"
log "built $OUT (kernel $KVER, base.qcow2 $(du -m "$OUT/base.qcow2" | cut -f1) MiB," \
    "initrd $(du -m "$OUT/initrd.img" | cut -f1) MiB) in $((SECONDS - start)) s"
