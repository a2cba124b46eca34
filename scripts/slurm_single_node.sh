#!/usr/bin/env bash
# Start a minimal single-node SLURM (munged, slurmctld, slurmd) for the SLURMCluster test.
#
# Idempotent: a running cluster with this configuration is reused. Everything lives in
# $SHOAL_SLURM_DIR (default /var/tmp/shoal-slurm): slurm.conf, state, logs, pid files.
# Daemons talk over loopback only (NodeAddr and SlurmctldHost address 127.0.0.1).
# Prints the path of slurm.conf last; use it as SLURM_CONF for sbatch/squeue/scancel.
# Needs root (slurmd runs jobs as their users). Stop: scripts/slurm_single_node.sh stop
set -euo pipefail

dir=${SHOAL_SLURM_DIR:-/var/tmp/shoal-slurm}
conf=$dir/slurm.conf
host=$(hostname -s)

stop() {
    for daemon in slurmd slurmctld; do
        if [[ -f $dir/$daemon.pid ]]; then
            kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
            rm -f "$dir/$daemon.pid"
        fi
    done
}

if [[ ${1:-} == stop ]]; then
    stop
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "slurm_single_node.sh: needs root" >&2; exit 2; }
for cmd in munged slurmctld slurmd sinfo; do
    command -v "$cmd" >/dev/null || { echo "slurm_single_node.sh: $cmd missing (apt-get install slurm-wlm munge)" >&2; exit 2; }
done

# munge: a key, then the daemon (one per machine; reused when running)
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged --force
    else
        munged --force
    fi
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

mkdir -p "$dir/ctld" "$dir/d" "$dir/log"
mem=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))
(( mem > 512 )) || mem=512
cat > "$conf.new" <<CONF
ClusterName=shoal-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$conf.new" "$conf"; then
    stop  # a changed configuration: restart with it
    mv "$conf.new" "$conf"
else
    rm -f "$conf.new"
fi
export SLURM_CONF=$conf

alive() { [[ -f $dir/$1.pid ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }
alive slurmctld || slurmctld -f "$conf"
alive slurmd || slurmd -f "$conf"

# bounded wait: the node must be idle (or mixed/allocated by earlier jobs)
for _ in $(seq 150); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    case $state in
        idle|mixed|allocated) echo "$conf"; exit 0 ;;
        down*|drain*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
echo "slurm_single_node.sh: node not idle after 30 s (state: ${state:-none}); see $dir/log" >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
