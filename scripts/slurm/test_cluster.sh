#!/usr/bin/env bash
# A real single-node Slurm on this machine, for tests: munged, slurmctld and slurmd, all state in one folder.
#   scripts/slurm/test_cluster.sh start DIR   # prints `export SLURM_CONF=DIR/slurm.conf`; waits for the node
#   scripts/slurm/test_cluster.sh stop DIR    # stops the daemons by their pid files
# Needs root and scripts/slurm/install.sh (Debian's slurm-wlm 22.05 and munge). The tests' `slurm_cluster`
# fixture (tests/launch/conftest.py) calls it. Shortened delays for fast tests: a requeued job may start again
# after cred_expire seconds (default 120), and the scheduler looks at pending jobs every 2 s (default 60).
# SLURMCTLD_PORT / SLURMD_PORT (default 6817 / 6818) move the daemons off the standard ports.
set -euo pipefail
action=${1:?usage: test_cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: test_cluster.sh start|stop DIR}")
conf="$dir/slurm.conf"

start() {
    mkdir -p "$dir"/{state,spool,log,munge}
    chmod 755 "$dir"  # munged runs as user munge and must reach DIR/munge
    host=$(hostname -s)
    # munge: its own key and socket under DIR, so a system munged (if any) is left alone.
    if [ ! -f "$dir/munge/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$dir/munge" 2>/dev/null || true
    chmod 700 "$dir/munge"; chmod 400 "$dir/munge/munge.key"
    socket="$dir/munge/munge.socket"
    runuser -u munge -- munged --key-file="$dir/munge/munge.key" --socket="$socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" --force
    memory_mb=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
    cat > "$conf" <<CONF
ClusterName=med42test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
MinJobAge=600
KillWait=30
DefMemPerCPU=1024
NodeName=$host CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$conf"
    slurmctld -f "$conf"
    slurmd -f "$conf"
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -q idle; then
            echo "export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.5
    done
    echo "test_cluster.sh: the node did not come up idle in 30 s; logs in $dir/log" >&2
    sinfo >&2 || true
    return 1
}

stop() {
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        for _ in $(seq 40); do
            [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null || break
            sleep 0.25
        done
    done
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: test_cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
