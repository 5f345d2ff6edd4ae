#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for testing the workflow's slurm profile for real.
#
#   scripts/slurm/cluster.sh up      install (apt-get, once), configure, start munged/slurmctld/slurmd,
#                                    wait until the node is idle; a second call finds it up and does nothing
#   scripts/slurm/cluster.sh down    stop the daemons through their PID files
#   scripts/slurm/cluster.sh status  print the daemons' state and sinfo
#
# Why by hand: these containers have no systemd, so the daemons are started as plain binaries that
# daemonize and write PID files. Must run as root (apt-get, munge key, slurmd). Not for production: one
# node on 127.0.0.1, no accounting storage (hence no sacct: the workflow polls with squeue), SlurmUser=root.
#
# Knobs (environment): SLURM_PARTITION (default "debug"), SLURM_KILL_WAIT (seconds between SIGTERM and
# SIGKILL at a time limit, default 10), SLURM_UP_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

PARTITION=${SLURM_PARTITION:-debug}
KILL_WAIT=${SLURM_KILL_WAIT:-10}
UP_TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
RUN_DIR=/run/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key

log() { printf '[slurm-cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts slurmd)"; }

# alive PIDFILE: true when the file names a running process.
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from trying to start services (no init system here).
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    [ "$made_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

setup_munge() {
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    if [ ! -s "$MUNGE_KEY" ]; then
        log "creating the munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    chmod 0700 /etc/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    chmod 0400 "$MUNGE_KEY"
    if alive "$MUNGE_PID"; then
        return 0
    fi
    rm -f "$MUNGE_PID" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
    for _ in $(seq 50); do
        munge -n >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

# The node's hardware as slurmd sees it; RealMemory a bit under the total so the node is never drained
# for "Low RealMemory" when the kernel's figure moves, and DefMemPerCPU so that a job without --mem takes
# its share, not the whole node (with CR_Core_Memory that would serialize every job).
write_conf() {
    local host cpus sockets cores threads mem_total real_mem def_mem tmp
    host=$(hostname -s)
    cpus=$(nproc --all)
    local hw
    hw=$(slurmd -C 2>/dev/null | head -n1 || true)
    sockets=$(sed -n 's/.*Boards=[0-9]* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
    cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
    threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
    mem_total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    real_mem=$(( mem_total * 95 / 100 ))
    def_mem=$(( real_mem / cpus ))
    local topo="CPUs=$cpus"
    if [ -n "$sockets" ] && [ -n "$cores" ] && [ -n "$threads" ] \
        && [ $(( sockets * cores * threads )) -eq "$cpus" ]; then
        topo="CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
    fi
    mkdir -p "$CONF_DIR"
    tmp=$(mktemp)
    cat > "$tmp" <<CONF
# Written by samrepro scripts/slurm/cluster.sh: a one-node test cluster. Do not edit by hand.
ClusterName=samrepro
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in these containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
ReturnToService=2
# Time limits are enforced as written (a job over its limit gets SIGTERM, then SIGKILL after KillWait):
# the preemption test relies on it.
OverTimeLimit=0
KillWait=$KILL_WAIT
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host $topo RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=7-00:00:00 State=UP
CONF
    if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1  # unchanged
    fi
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    return 0  # changed
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE
    local name=$1 pidfile=$2 pid
    if ! alive "$pidfile"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(cat "$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    log "$name did not stop in 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

wait_idle() {
    local host state
    host=$(hostname -s)
    for _ in $(seq $(( UP_TIMEOUT * 4 ))); do
        state=$(node_state || true)
        case "$state" in
            idle|mixed|allocated) log "node $host is $state"; return 0 ;;
            drain*|down*|fail*)
                # A node left down or drained by an earlier run: give it back to the scheduler.
                scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.25
    done
    sinfo -N -l >&2 || true
    die "node $host not idle after ${UP_TIMEOUT}s (see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log)"
}

up() {
    need_root
    install_packages
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
    setup_munge
    local changed=0
    write_conf && changed=1
    if [ "$changed" -eq 1 ] && { alive "$CTLD_PID" || alive "$SLURMD_PID"; }; then
        log "slurm.conf changed: restarting the daemons"
        stop_pidfile slurmd "$SLURMD_PID"
        stop_pidfile slurmctld "$CTLD_PID"
    fi
    if ! alive "$CTLD_PID"; then
        log "starting slurmctld"
        # -c: start from a clean job state (a test cluster keeps no jobs across restarts).
        slurmctld -c
    fi
    if ! alive "$SLURMD_PID"; then
        log "starting slurmd"
        slurmd
    fi
    wait_idle
    sinfo
}

down() {
    need_root
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
    stop_pidfile munged "$MUNGE_PID"
}

status() {
    local name pidfile rc=0
    for name in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
        pidfile=${name#*:}
        if alive "$pidfile"; then
            echo "${name%%:*}: running (pid $(cat "$pidfile"))"
        else
            echo "${name%%:*}: stopped"; rc=1
        fi
    done
    [ "$rc" -eq 0 ] && sinfo
    return $rc
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
