#!/usr/bin/env bash
# Start virtlogd and libvirtd by hand (no systemd here) and stop only what we started.
#
#   scripts/libvirtd.sh start [STATE]        start the daemons that are not running, wait until
#                                            qemu:///system answers, and append the names of those
#                                            it started to STATE
#   scripts/libvirtd.sh stop [STATE]         stop the daemons named in STATE, then remove it
#   scripts/libvirtd.sh run [--optional] CMD...
#                                            start, run CMD, stop what was started (also when CMD
#                                            fails or is interrupted); exit with CMD's status.
#                                            --optional: go on without libvirt if it won't answer
#   scripts/libvirtd.sh status
#
# STATE defaults to /run/vm-manager/libvirtd.state; `run` uses a file of its own (run.PID). A run
# that ends while another is still going hands the daemons it started over to that one, so
# concurrent runs (make test beside make bench) never stop each other's libvirtd. A daemon is found by its pid file (/run/NAME.pid), else by
# its name in /proc, so stopping works whoever restarted it meanwhile (the reconnect test does).
set -euo pipefail

URI=qemu:///system
STATE_DIR=/run/vm-manager
WAIT=${VMM_LIBVIRTD_WAIT:-60}
LOG_DIR=/var/log/libvirt

log() { printf 'libvirtd.sh: %s\n' "$*" >&2; }

# The pid of a running daemon NAME, from its pid file or from /proc; fails when none runs.
daemon_pid() {
    local name=$1 pid="" dir
    if [[ -r /run/$name.pid ]]; then
        pid=$(tr -dc '0-9' </run/"$name".pid)
        if [[ -n $pid && $(cat /proc/"$pid"/comm 2>/dev/null) == "$name" ]]; then
            echo "$pid"
            return 0
        fi
    fi
    for dir in /proc/[0-9]*; do
        if [[ $(cat "$dir"/comm 2>/dev/null) == "$name" ]]; then
            echo "${dir#/proc/}"
            return 0
        fi
    done
    return 1
}

answers() { timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }

start() {
    local state=${1:-$STATE_DIR/libvirtd.state} name i
    mkdir -p "$STATE_DIR" "$LOG_DIR"
    for name in virtlogd libvirtd; do
        if daemon_pid "$name" >/dev/null; then
            continue
        fi
        if ((EUID != 0)); then
            log "$name is not running, and only root can start it"
            return 1
        fi
        log "starting $name"
        if [[ $name == libvirtd ]]; then
            # Warnings and errors to a file: with -d there is no stderr, and no journal here.
            LIBVIRT_LOG_OUTPUTS="3:file:$LOG_DIR/libvirtd.log" libvirtd -d
        else
            virtlogd -d
        fi
        echo "$name" >>"$state"
    done
    for ((i = 0; i < WAIT * 2; i++)); do
        if answers; then
            return 0
        fi
        sleep 0.5
    done
    log "$URI does not answer after $WAIT s"
    virsh -c "$URI" version >&2 || true
    tail -n 20 "$LOG_DIR/libvirtd.log" >&2 2>/dev/null || true
    return 1
}

stop_daemon() {
    local name=$1 pid i
    pid=$(daemon_pid "$name") || return 0
    log "stopping $name ($pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 60; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.25
    done
    log "$name ($pid) ignored SIGTERM for 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# Another `run` still going (its state file is named after its pid), to hand our daemons over to.
heir() {
    local file
    for file in "$STATE_DIR"/run.*; do
        if [[ -f $file && $file != "$1" && -d /proc/${file##*.} ]]; then
            echo "$file"
            return 0
        fi
    done
    return 1
}

stop() {
    local state=${1:-$STATE_DIR/libvirtd.state} next
    [[ -f $state ]] || return 0
    if [[ -s $state ]] && next=$(heir "$state"); then
        log "leaving $(tr '\n' ' ' <"$state")running for the run that is still going ($next)"
        cat "$state" >>"$next"
        rm -f "$state"
        return 0
    fi
    # libvirtd first: it talks to virtlogd while it shuts down.
    if grep -qx libvirtd "$state"; then stop_daemon libvirtd; fi
    if grep -qx virtlogd "$state"; then stop_daemon virtlogd; fi
    rm -f "$state"
}

run() {
    local optional=0 state rc
    if [[ ${1:-} == --optional ]]; then
        optional=1
        shift
    fi
    (($#)) || { log "run: no command"; return 2; }
    mkdir -p "$STATE_DIR"
    state=$STATE_DIR/run.$$
    : >"$state"
    # shellcheck disable=SC2064  # expand $state now
    trap "stop '$state' || true" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if ! start "$state"; then
        if ((optional)); then
            log "going on without $URI"
        else
            exit 1
        fi
    fi
    set +e
    "$@"
    rc=$?
    set -e
    exit "$rc"
}

status() {
    local name pid
    for name in virtlogd libvirtd; do
        if pid=$(daemon_pid "$name"); then echo "$name: running ($pid)"; else echo "$name: stopped"; fi
    done
    if answers; then echo "$URI: answers"; else echo "$URI: no answer"; fi
}

cmd=${1:-}
shift || true
case $cmd in
    start) start "$@" ;;
    stop) stop "$@" ;;
    run) run "$@" ;;
    status) status ;;
    *) echo "usage: $0 start [STATE] | stop [STATE] | run [--optional] CMD... | status" >&2; exit 2 ;;
esac
