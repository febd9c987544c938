#!/usr/bin/env bash
# Build the "tiny" template offline from Debian packages: a real Linux kernel and a busybox
# initramfs that reads a NoCloud seed and prints what it found, booted by direct kernel boot.
#
#   scripts/build_template_tiny.sh [OUT_DIR]
#
# OUT_DIR defaults to $VMM_TEMPLATE_DIR/tiny, else $VMM_DATA_DIR/templates/tiny, else
# ~/.local/share/vm-manager/templates/tiny (as core/settings.py resolves them). It receives
#   vmlinuz      the Debian cloud kernel (linux-image-*-cloud-amd64), as shipped
#   initrd.img   cpio newc + gzip: busybox-static and its applet links, the modules an IDE CD-ROM
#                and ISO9660 need (the cloud kernel builds them as modules; /etc/modules), those of
#                virtio-serial ports (/etc/modules.agent, loaded only for vmm.agent), and /init
#   base.qcow2   a blank 256 MiB disk: what VMs made from the template get an overlay of
# Nothing is installed from the two packages: they are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` in a temp dir. Missing tools (cpio, kmod's depmod) are installed
# with apt-get, as scripts/setup.sh does. Idempotent: does nothing while both outputs exist and
# are newer than this script (VMM_TINY_FORCE=1 rebuilds).
#
# QEMU runs as libvirt-qemu and opens the kernel and initrd itself: OUT_DIR and every directory
# above it must be searchable by that user (root's home is not; /var/lib/... or /var/tmp are).
#
# The guest's /init (POSIX sh for busybox): mounts proc, sys, devtmpfs; insmods the modules in
# dependency order; finds the CD whose ISO9660 label is `cidata`, mounts it read-only and prints
#   vmm-tiny: hostname=<local-hostname from meta-data>
#   vmm-tiny: user=<first users: name from user-data>
# (or `vmm-tiny: no seed`) on the serial and VGA consoles; sets the hostname, then stays up idle.
# Kernel command line: console=tty0 console=ttyS0. Machine `pc` (i440fx), IDE CD-ROM.
#
# With `vmm.agent=hostile` on the kernel command line (the tests' hostile guest), /init also
# answers as a guest agent on the virtio-serial port org.qemu.guest_agent.0, as a student who is
# root in a guest could: guest-sync with its id, guest-network-get-interfaces with ip-address
# strings holding terminal escapes (ESC [2J, an OSC 0 title, an OSC 52 clipboard write), a newline
# and a fake table row, beside one valid address, 10.2.3.4. It prints `vmm-tiny: agent on PORT`.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=$PWD/scripts/build_template_tiny.sh

log() { printf 'build_template_tiny: %s\n' "$*" >&2; }

# The kernel's CD/ISO path on i440fx: PIIX IDE (libata), SCSI CD-ROM, ISO9660; and, for vmm.agent
# only (they cost a boot about 0.8 s under TCG), virtio PCI and virtio-serial ports: the guest
# agent's channel. Each is looked up in modules.builtin first; only what is a module goes into the
# initramfs, with its dependencies.
WANTED_MODULES=(ata_piix sr_mod isofs)
AGENT_MODULES=(virtio_pci virtio_console)
KERNEL_META=linux-image-cloud-amd64
TOOLS=(cpio depmod gzip qemu-img)  # from packages scripts/setup.sh installs

default_out() {
    local data
    if [[ -n ${VMM_TEMPLATE_DIR:-} ]]; then
        echo "$VMM_TEMPLATE_DIR/tiny"
        return
    fi
    data=${VMM_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/vm-manager}
    echo "$data/templates/tiny"
}

OUT=${1:-$(default_out)}
OUT=${OUT/#\~/$HOME}

if [[ ${VMM_TINY_FORCE:-} != 1 && $OUT/vmlinuz -nt $SCRIPT && $OUT/initrd.img -nt $SCRIPT
      && $OUT/base.qcow2 -nt $SCRIPT ]]; then
    log "$OUT is up to date"
    exit 0
fi

ensure_tools() {
    local item
    for item in "${TOOLS[@]}"; do
        command -v "$item" >/dev/null 2>&1 || { scripts/setup.sh system; return; }
    done
}

# The versioned image package the meta package depends on (linux-image-6.1.0-NN-cloud-amd64).
kernel_package() {
    local pkg
    pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null \
          | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1)
    if [[ -z $pkg ]]; then
        log "cannot resolve $KERNEL_META to a versioned linux-image package (apt-get update?)"
        exit 1
    fi
    echo "$pkg"
}

PATH=$PATH:/usr/sbin:/sbin  # depmod
ensure_tools
WORK=$(mktemp -d /tmp/vmm-tiny.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

if ! apt-cache show "$KERNEL_META" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    [[ ${VMM_APT_UPDATED:-} == 1 ]] || apt-get update -q
fi
KPKG=$(kernel_package)
log "downloading $KPKG and busybox-static"
mkdir -p "$WORK/debs"
# apt drops privileges to _apt for the download when it can write there; else it warns.
chmod 0755 "$WORK"
chown _apt "$WORK/debs" 2>/dev/null || true
(cd "$WORK/debs" && apt-get download -q "$KPKG" busybox-static)
dpkg-deb -x "$WORK"/debs/linux-image-*.deb "$WORK/kernel"
dpkg-deb -x "$WORK"/debs/busybox-static_*.deb "$WORK/busybox"

KVER=$(ls "$WORK/kernel/lib/modules")
MODDIR=$WORK/kernel/lib/modules/$KVER
# The package ships no modules.dep (depmod writes it at install time): make it in the temp tree.
depmod -b "$WORK/kernel" "$KVER"

# Module paths (relative to MODDIR) in load order: every dependency before what needs it (and
# before what a later list needs: each is loaded once).
declare -A seen=()
add_module() {
    local rel=$1 line dep
    [[ -n ${seen[$rel]:-} ]] && return 0
    seen[$rel]=1
    line=$(grep -m 1 "^$rel:" "$MODDIR/modules.dep") || { log "$rel is not in modules.dep"; exit 1; }
    for dep in ${line#*:}; do
        add_module "$dep"
    done
    ORDER+=("$rel")
}
# ORDER: the modules the given names need that no earlier call listed.
resolve_modules() {
    local name rel
    ORDER=()
    for name in "$@"; do
        if grep -Eq "/$name\.ko(\.[a-z]+)?$" "$MODDIR/modules.builtin"; then
            log "$name is built into $KVER"
            continue
        fi
        rel=$(grep -Eo "^[^:]*/$name\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | head -n 1) \
            || { log "$name is neither builtin nor a module of $KVER"; exit 1; }
        add_module "${rel%:}"
    done
}

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,mnt/seed,tmp,lib/modules,usr/bin,usr/sbin}
cp "$WORK/busybox/bin/busybox" "$ROOT/bin/busybox"
# Every applet as a relative link in /bin, the one PATH entry (`busybox --install -s` would link
# to the host path of the busybox it runs).
for applet in $("$ROOT/bin/busybox" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$ROOT/bin/$applet"
done
# The modules of NAME... into the initramfs, their load order into LIST_FILE.
install_modules() {
    local list=$1 rel
    shift
    resolve_modules "$@"
    : >"$list"
    for rel in "${ORDER[@]}"; do
        cp "$MODDIR/$rel" "$ROOT/lib/modules/"
        basename "$rel" >>"$list"
    done
}
install_modules "$ROOT/etc/modules" "${WANTED_MODULES[@]}"
install_modules "$ROOT/etc/modules.agent" "${AGENT_MODULES[@]}"
# The kernel opens /dev/console for init before /init can mount devtmpfs.
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3
printf '%s\n' "$KVER" >"$ROOT/etc/kernel-release"

cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# /init of VM Manager's tiny template. Prints what the NoCloud seed says, then idles.
PATH=/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || { mount -t tmpfs -o mode=0755 tmpfs /dev && mdev -s; }

# One line to every console. /dev/console is the last console= of the command line (ttyS0), so
# writing it as well as ttyS0 would print each line twice there: it is the fallback only.
say() {
    shown=
    for tty in /dev/ttyS0 /dev/tty0; do
        if [ -c "$tty" ] && echo "$*" 2>/dev/null >"$tty"; then shown=1; fi
    done
    [ -n "$shown" ] || echo "$*" >/dev/console 2>/dev/null
}

say "vmm-tiny: VM Manager tiny template, kernel $(uname -r)"
# The modules of a list file of the build, in its order.
load_modules() {
    while read -r module; do
        insmod "/lib/modules/$module" 2>/dev/null || say "vmm-tiny: could not load $module"
    done <"$1"
}
load_modules /etc/modules

# The seed is a CD with the ISO9660 label cidata. The CD-ROM shows up a moment after ata_piix
# probes its channels: look for up to 5 s. busybox findfs misses some ISOs (pycdlib's, made by
# core/provision/guests/linux.py), so the label is also read from the primary volume descriptor (sector 16).
iso_label() {
    [ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || return 1
    dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' '
}
seed=
i=0
while [ "$i" -lt 50 ]; do
    seed=$(findfs LABEL=cidata 2>/dev/null) && break
    seed=
    for dev in /dev/sr* /dev/hd?; do
        if [ -b "$dev" ] && [ "$(iso_label "$dev")" = cidata ]; then seed=$dev; break; fi
    done
    [ -n "$seed" ] && break
    i=$((i + 1))
    sleep 0.1
done

# The value of a top-level "key: value" line of a YAML file, unquoted.
yaml_value() {
    sed -n "s/^$1:[[:space:]]*//p" "$2" | head -n 1 | tr -d "\"'\r"
}

if [ -n "$seed" ] && mount -t iso9660 -o ro "$seed" /mnt/seed; then
    host=$(yaml_value local-hostname /mnt/seed/meta-data)
    [ -n "$host" ] || host=$(yaml_value hostname /mnt/seed/meta-data)
    iid=$(yaml_value instance-id /mnt/seed/meta-data)
    user=
    if [ -f /mnt/seed/user-data ]; then
        # The first "name:" in the users: list (cloud-config), skipping "- default".
        user=$(awk '
            /^users:/ { inside = 1; next }
            inside && /^[^[:space:]#-]/ { exit }
            inside && /name:[[:space:]]*[^[:space:]]/ {
                sub(/.*name:[[:space:]]*/, ""); gsub(/["\047\r]/, ""); sub(/[[:space:]].*/, "")
                print; exit
            }' /mnt/seed/user-data)
    fi
    say "vmm-tiny: seed=$seed instance-id=${iid:-none}"
    say "vmm-tiny: hostname=${host:-none}"
    say "vmm-tiny: user=${user:-none}"
    [ -n "$host" ] && hostname "$host"
    umount /mnt/seed
else
    say "vmm-tiny: no seed"
    hostname vmm-tiny
fi
say "vmm-tiny: ready ($(hostname))"

# vmm.agent=hostile: a guest agent whose addresses attack the operator's terminal (see the header
# of scripts/build_template_tiny.sh). JSON escapes (\u001b, \n) keep this file plain ASCII.
HOSTILE_INTERFACES='{"return": [{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}, {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}]}, {"name": "eth0", "hardware-address": "52:54:00:12:34:56", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.9.9.9\u001b[2J", "prefix": 24}, {"ip-address-type": "ipv4", "ip-address": "10.9.9.8\u001b]0;PWNED-TITLE\u0007", "prefix": 24}, {"ip-address-type": "ipv4", "ip-address": "10.9.9.7\u001b]52;c;ZWNobyBQV05FRC1GUk9NLUdVRVNU\u0007", "prefix": 24}, {"ip-address-type": "ipv4", "ip-address": "10.1.1.1\nFAKEROW running root", "prefix": 24}, {"ip-address-type": "ipv6", "ip-address": "fd00::9%\u001b[2J", "prefix": 64}, {"ip-address-type": "ipv4", "ip-address": "10.2.3.4", "prefix": 24}, {"ip-address-type": "ipv6", "ip-address": "fe80::5054:ff:fe12:3456", "prefix": 64}]}]}'

# The /dev node of the virtio-serial port named $1, once the port shows up (up to 5 s).
virtio_port() {
    i=0
    while [ "$i" -lt 50 ]; do
        for port in /sys/class/virtio-ports/*; do
            [ "$(cat "$port/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${port##*/}"; return 0; }
        done
        i=$((i + 1))
        sleep 0.1
    done
    return 1
}

# One JSON request per line; the port reads as end-of-file while no host side is connected.
hostile_agent() {
    exec 3<>"$1"
    while :; do
        if ! read -r request <&3; then
            sleep 0.2
            continue
        fi
        case $request in
            *'"guest-sync'*)
                id=$(echo "$request" | sed -n 's/.*"id"[[:space:]]*:[[:space:]]*\([0-9]*\).*/\1/p')
                printf '{"return": %s}\n' "${id:-0}" >&3 ;;
            *'"guest-network-get-interfaces"'*)
                printf '%s\n' "$HOSTILE_INTERFACES" >&3 ;;
            *)
                printf '%s\n' '{"error": {"class": "CommandNotFound", "desc": "not in the tiny agent"}}' >&3 ;;
        esac
    done
}

case " $(cat /proc/cmdline) " in
    *" vmm.agent=hostile "*)
        load_modules /etc/modules.agent
        if port=$(virtio_port org.qemu.guest_agent.0); then
            say "vmm-tiny: agent on $port"
            hostile_agent "$port" &
        else
            say "vmm-tiny: no guest-agent port"
        fi ;;
esac

# Stay up until halted or destroyed; PID 1 must never exit.
while :; do
    sleep 3600
done
INIT
chmod 0755 "$ROOT/init"

mkdir -p "$OUT"
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) \
    | gzip -9 >"$WORK/initrd.img"
install -m 0644 "$WORK/kernel/boot/vmlinuz-$KVER" "$OUT/.vmlinuz.tmp"
install -m 0644 "$WORK/initrd.img" "$OUT/.initrd.img.tmp"
mv -f "$OUT/.vmlinuz.tmp" "$OUT/vmlinuz"
mv -f "$OUT/.initrd.img.tmp" "$OUT/initrd.img"
# The template's disk: blank (the guest lives in its initramfs), so that VMs made from the
# template get a qcow2 overlay like any other (provisioning, reset and snapshots are the same).
qemu-img create -q -f qcow2 "$OUT/.base.qcow2.tmp" 256M
chmod 0644 "$OUT/.base.qcow2.tmp"
mv -f "$OUT/.base.qcow2.tmp" "$OUT/base.qcow2"
chmod 0755 "$OUT"
log "built $OUT (kernel $KVER, modules: $(cat "$ROOT"/etc/modules{,.agent} | tr '\n' ' ')initrd $(du -k "$OUT/initrd.img" | cut -f1) KiB) in $((SECONDS - start)) s"
