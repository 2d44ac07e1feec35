#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for the cluster tests (issue 7).
#
#   tests/slurm_cluster.sh install          apt-get the packages if missing (idempotent)
#   tests/slurm_cluster.sh start            install, write the config, start munged, slurmctld
#                                           and slurmd, wait until the node is idle
#   tests/slurm_cluster.sh stop             cancel its jobs, stop the daemons by their PID files
#   tests/slurm_cluster.sh status           sinfo and squeue of the cluster
#   tests/slurm_cluster.sh env              print  export SLURM_CONF=...  (for clients)
#   tests/slurm_cluster.sh run [-t SECONDS] -- COMMAND ...
#                                           start, run COMMAND with SLURM_CONF set under a hard
#                                           time-out (SIGINT, which Snakemake obeys), stop in a
#                                           trap whatever happens; exits with COMMAND's status
#
# Everything lives in one known directory, $PRECOPY_SLURM_DIR (default /tmp/precopy-sweep-slurm):
# slurm.conf, state, spool, logs, PID files and a private munged (its own socket, the system's
# /etc/munge/munge.key), on ports $PRECOPY_SLURM_PORT and +1 (default 6917/6918, not SLURM's
# 6817/6818).  Clients find it through SLURM_CONF; the one thing outside the directory is a
# symlink /etc/slurm/slurm.conf -> it while the cluster runs, for the srun inside each job
# (see link_system_config), made only where no such file exists and removed by `stop`.
# Choices without cgroups or accounting: docs/cluster.md.
#
# Exit status: 0 done, 3 SLURM cannot run here (not root, packages missing and not installable),
# 1 anything else (a daemon did not start: see $PRECOPY_SLURM_DIR/log/).  Needs root: slurmd
# runs the jobs, and SlurmUser is root.
set -euo pipefail

DIR=${PRECOPY_SLURM_DIR:-/tmp/precopy-sweep-slurm}
PORT=${PRECOPY_SLURM_PORT:-6917}
CONF=$DIR/slurm.conf
# Where SLURM's commands look when SLURM_CONF is unset (see link_system_config).
SYSTEM_CONF=/etc/slurm/slurm.conf
SOCKET=$DIR/munge/munge.socket
PACKAGES=(munge slurmctld slurmd slurm-client)
export PATH=$PATH:/usr/sbin:/sbin

say() { echo "slurm_cluster: $*" >&2; }
cannot() {
    say "cannot run SLURM here: $*"
    exit 3
}

installed() {
    local tool
    for tool in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel srun; do
        command -v "$tool" >/dev/null || return 1
    done
}

install() {
    if installed; then
        say "packages present: $(slurmd -V 2>/dev/null), $(munged --version 2>&1 | head -1)"
        return 0
    fi
    [[ $(id -u) == 0 ]] || cannot "the packages (${PACKAGES[*]}) are missing and installing them needs root"
    command -v apt-get >/dev/null || cannot "the packages (${PACKAGES[*]}) are missing and there is no apt-get"
    say "installing ${PACKAGES[*]}"
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
    export DEBIAN_FRONTEND=noninteractive
    if ! "${apt[@]}" install "${PACKAGES[@]}" >&2; then
        # a fresh machine may have no package lists yet
        apt-get -o DPkg::Lock::Timeout=600 -q update >&2 || cannot "apt-get update failed"
        "${apt[@]}" install "${PACKAGES[@]}" >&2 || cannot "apt-get install ${PACKAGES[*]} failed"
    fi
    installed || cannot "installed ${PACKAGES[*]}, but a tool is still missing"
}

# The PID in pid file $1 if it names a live process called $2, else nothing.
daemon_pid() {
    local file=$1 name=$2 pid
    [[ -r $file ]] || return 0
    pid=$(tr -dc 0-9 <"$file")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] && echo "$pid"
    return 0
}

stop_daemon() {
    local file=$1 name=$2 pid i
    pid=$(daemon_pid "$file" "$name")
    if [[ -n $pid ]]; then
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
            say "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

stop() {
    if [[ -n $(daemon_pid "$DIR/slurmctld.pid" slurmctld) ]]; then
        # jobs left by an interrupted run: cancel them so their steps end with slurmd
        local jobs
        jobs=$(SLURM_CONF=$CONF timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            SLURM_CONF=$CONF timeout 10 scancel $jobs || true
            sleep 1
        fi
    fi
    stop_daemon "$DIR/slurmd.pid" slurmd
    stop_daemon "$DIR/slurmctld.pid" slurmctld
    stop_daemon "$DIR/munge/munged.pid" munged
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then
        rm -f "$SYSTEM_CONF"
    fi
}

# SLURM_CONF is not enough: inside each job, the slurm-jobstep plugin (0.6.1) starts `srun`
# with every SLURM_* variable but a few job ids removed, SLURM_CONF included, so srun looks in
# the default place.  Link ours there for the session, unless another set-up owns that file.
link_system_config() {
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then
        return 0
    fi
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        cannot "$SYSTEM_CONF belongs to another SLURM set-up; the srun inside each Snakemake job ignores SLURM_CONF and would read it"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
}

node_state() {
    SLURM_CONF=$CONF timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1 || true
}

write_config() {
    # This node as slurmd sees it (CPUs, sockets, cores, RealMemory); the first line only.
    local node_line
    node_line=$(slurmd -C | head -1)
    [[ $node_line == NodeName=* ]] || {
        say "slurmd -C printed: $node_line"
        return 1
    }
    cat >"$CONF" <<EOF
# Written by tests/slurm_cluster.sh: a single-node cluster for tests, no cgroups, no accounting.
ClusterName=precopy-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups on this machine: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
# No slurmdbd: no sacct history; finished jobs stay visible to squeue for MinJobAge seconds,
# which Snakemake's squeue status checks need (>= 3 x --slurm-init-seconds-before-status-checks).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [[ $(id -u) == 0 ]] || cannot "not root (slurmd runs the jobs and SlurmUser is root)"
    install
    # daemons of an earlier, interrupted session in this directory
    stop
    mkdir -p "$DIR"/{state,spool,log,munge}
    chmod 0755 "$DIR"
    chown munge:munge "$DIR/munge"
    chmod 0755 "$DIR/munge" # munged wants its socket directory searchable by all
    rm -f "$SOCKET" "$SOCKET.lock"

    if [[ ! -s /etc/munge/munge.key ]]; then
        say "no /etc/munge/munge.key: creating one"
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0600 /etc/munge/munge.key
    fi
    say "starting munged (as user munge)"
    runuser -u munge -- munged --socket="$SOCKET" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" || {
        say "munged failed: $(tail -5 "$DIR/munge/munged.log" 2>/dev/null)"
        return 1
    }
    munge -n -S "$SOCKET" | unmunge -S "$SOCKET" >/dev/null || {
        say "munge credentials do not round-trip"
        return 1
    }

    write_config
    link_system_config
    export SLURM_CONF=$CONF
    say "starting slurmctld and slurmd (config $CONF)"
    # -c: no state from an earlier session (its jobs, its node state)
    slurmctld -c -f "$CONF" || {
        say "slurmctld failed: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
        return 1
    }
    slurmd -f "$CONF" -N "$NODE" || {
        say "slurmd failed: $(tail -5 "$DIR/log/slurmd.log" 2>/dev/null)"
        return 1
    }
    local i state=
    for ((i = 0; i < 120; i++)); do
        state=$(node_state)
        [[ $state == idle ]] && break
        if [[ $state == down* || $state == drain* ]] && ((i % 10 == 5)); then
            scontrol update nodename="$NODE" state=resume 2>/dev/null || true
        fi
        sleep 0.5
    done
    if [[ $state != idle ]]; then
        say "node $NODE is '${state:-unknown}' after 60 s; see $DIR/log/"
        tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
        return 1
    fi
    say "node $NODE idle ($(sinfo --version)); export SLURM_CONF=$CONF"
}

status() {
    export SLURM_CONF=$CONF
    sinfo -N -l
    squeue --states=all -o "%.8i %.12P %.40j %.10T %.10M %R"
}

run() {
    local seconds=600
    while [[ $# -gt 0 ]]; do
        case $1 in
        -t | --timeout)
            seconds=$2
            shift 2
            ;;
        --)
            shift
            break
            ;;
        *) break ;;
        esac
    done
    [[ $# -gt 0 ]] || {
        say "run: no command"
        exit 1
    }
    # one cluster at a time: wait for another session using this directory (the tests take
    # the same lock)
    mkdir -p "$(dirname "$DIR")"
    exec 9>"$DIR.lock"
    flock -w 900 9 || {
        say "another session holds $DIR.lock"
        exit 1
    }
    trap stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start
    local status=0
    # PRECOPY_SLURM_STARTED: tests/test_slurm.py then uses this cluster as it is
    SLURM_CONF=$CONF PRECOPY_SLURM_DIR=$DIR PRECOPY_SLURM_STARTED=1 \
        timeout --foreground -s INT -k 30 "$seconds" "$@" || status=$?
    ((status == 124)) && say "time-out: '$*' ran longer than $seconds s"
    return "$status"
}

NODE=$(hostname -s)
case ${1:-} in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
env) echo "export SLURM_CONF=$CONF" ;;
run)
    shift
    run "$@"
    ;;
*)
    sed -n '2,13p' "$0" >&2
    exit 1
    ;;
esac
