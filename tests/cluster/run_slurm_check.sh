#!/usr/bin/env bash
# Proof of the slurm profile on a real scheduler: a single-node SLURM cluster on localhost.
#
#   sudo bash tests/cluster/run_slurm_check.sh        (as root; from the repository, with .venv set up)
#
# 1. installs SLURM and munge from Debian's packages if missing (slurmctld, slurmd, slurm-client, munge);
# 2. writes a localhost-only slurm.conf (the previous one is restored at the end) and starts munged,
#    slurmctld and slurmd; no accounting database (status checks use squeue);
# 3. runs a tiny config through workflow/profiles/slurm, then the same config locally, and checks
#    that the tables are identical;
# 4. starts a longer run, cancels its training job with scancel once it has written a checkpoint,
#    and shows that rerunning the same command completes, resuming from that checkpoint;
# 5. stops the daemons it started (by their process ids, nothing else) and removes its working folder.
# It refuses to start on a machine where slurmctld, slurmd or munged already run: it would otherwise
# reconfigure or stop somebody's scheduler.
# Everything talks to 127.0.0.1 only. It takes about 4 minutes on 2 cores.
set -euo pipefail
already=$(for name in slurmctld slurmd munged; do pgrep -a -x "$name"; done || true)
if [ -n "$already" ]; then
  echo "refusing to run: SLURM or munge daemons already run on this machine:" >&2
  echo "$already" >&2
  echo "this check starts, reconfigures and stops its own; run it on a machine without them" >&2
  exit 2
fi

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
export PATH="$(dirname "$PY"):$PATH"  # the jobs inherit it (sbatch --export=ALL), as with an activated venv
WORK=$(mktemp -d /tmp/stabgap-slurm.XXXXXX)
CONF=/etc/slurm/slurm.conf
STARTED=()
say() { printf '\n== %s\n' "$*"; }
show_job_logs() {  # the SLURM job logs and rule logs of a failed run
  find "$1/results/logs" "$1/.snakemake/slurm_logs" -name '*.log' 2>/dev/null | head -4 | while read -r f; do
    echo "--- $f"; tail -15 "$f"; done
}

cleanup() {
  say "cleanup"
  # every job in this scheduler is ours: it did not run before the check started
  squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done  # only what this script started
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  if [ -f "$WORK/slurm.conf.orig" ]; then cp "$WORK/slurm.conf.orig" "$CONF"; else rm -f "$CONF"; fi
  rm -rf "$WORK"
  left=$(for name in slurmctld slurmd munged; do pgrep -a -x "$name"; done || true)
  [ -z "$left" ] || { echo "daemons still running after cleanup: $left" >&2; exit 1; }
  echo "stopped the daemons it started (${STARTED[*]:-none}), none left running, $CONF restored, $WORK removed"
}
trap cleanup EXIT

say "packages"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmctld slurmd slurm-client munge >/dev/null
fi
dpkg-query -W slurmctld munge

say "configuration (localhost only, no accounting)"
[ -f "$CONF" ] && cp "$CONF" "$WORK/slurm.conf.orig"
mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown -R slurm:slurm /var/lib/slurm /var/log/slurm
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 3 / 4 ))
cat > "$CONF" <<CONFEOF
ClusterName=stabgapcheck
SlurmctldHost=localhost
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmUser=slurm
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=120
SlurmdTimeout=300
Waittime=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONFEOF

say "daemons"
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
started() {  # the pid a daemon we just started wrote to its pid file (it forks: the first pid exits)
  for _ in $(seq 100); do
    if [ -s "$2" ] && kill -0 "$(cat "$2")" 2>/dev/null; then STARTED+=("$(cat "$2")"); return; fi
    sleep 0.1
  done
  echo "$1 did not start (no live pid in $2)" >&2; exit 1
}
rm -f /run/munge/munged.pid /run/slurmctld.pid /run/slurmd.pid  # stale files of earlier runs (none run now)
su -s /bin/sh munge -c /usr/sbin/munged
started munged /run/munge/munged.pid
munge -n | unmunge | grep -q "Success"
/usr/sbin/slurmctld
started slurmctld /run/slurmctld.pid
/usr/sbin/slurmd -N localhost
started slurmd /run/slurmd.pid
for _ in $(seq 60); do sinfo -h -o %t | grep -qE "idle|mix" && break; sleep 1; done
sinfo

export STABGAP_SLURM_PARTITION=debug
SLURM_ARGS=(--workflow-profile "$REPO/workflow/profiles/slurm" --slurm-no-account
            --slurm-init-seconds-before-status-checks 1 --seconds-between-status-checks 2 --jobs 4
            --cores "$(nproc)" --resources mem_mb=4000)  # this one small node
cat > "$WORK/tiny.yaml" <<YAML
results: results
datasets: {mnist5k: {builder: mnist5k, test_per_class: 20, seed: 0}}
benchmarks:
  split_mnist: {dataset: mnist5k, iters_per_context: 20, batch_size: 16, eta: 0.4, stream: {classes: [[0, 1], [2, 3]]}}
  permuted_mnist: {dataset: mnist5k, iters_per_context: 20, batch_size: 16, eta: 0.3, stream: {n_contexts: 2}}
methods: {sgd: {lr: 0.01}, ngm: {lr: 0.01, gamma: 0.9}}
seeds: [1, 2]
figures: {class_incremental: [split_mnist], domain_incremental: [permuted_mnist]}
compute: {device: cpu, threads: 1, train_mem_mb: 1000}
YAML

say "tiny config through the slurm profile"
t0=$(date +%s)
"$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORK/slurm" --configfile "$WORK/tiny.yaml" "${SLURM_ARGS[@]}" \
  > "$WORK/slurm.log" 2>&1 || { tail -30 "$WORK/slurm.log"; show_job_logs "$WORK/slurm"; exit 1; }
echo "slurm run finished in $(( $(date +%s) - t0 )) s; submitted jobs:"
grep -c "Job .* has been submitted with SLURM jobid" "$WORK/slurm.log" || true
grep -h "SLURM_JOB_ID\|jobid" "$WORK/slurm.log" | head -3 || true

say "the same config locally"
"$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORK/local" --configfile "$WORK/tiny.yaml" \
  --workflow-profile "$REPO/workflow/profiles/local" --cores 2 > "$WORK/local.log" 2>&1 || { tail -40 "$WORK/local.log"; exit 1; }
for f in "$WORK"/local/results/tables/table*.csv; do
  cmp "$f" "$WORK/slurm/results/tables/$(basename "$f")"
done
echo "tables identical: $(ls "$WORK"/local/results/tables/table*.csv | wc -l) CSV files compared byte for byte"

say "cancel a training job mid-run, then rerun"
sed -e 's/iters_per_context: 20/iters_per_context: 600/' -e 's/methods: .*/methods: {ngm: {lr: 0.01, gamma: 0.9}}/' \
    -e 's/seeds: .*/seeds: [1]/' -e 's/train_mem_mb: 1000}/train_mem_mb: 1000, checkpoint_every: 100}/' \
    -e '/split_mnist:/d' -e 's/class_incremental: \[split_mnist\]/class_incremental: []/' \
    "$WORK/tiny.yaml" > "$WORK/long.yaml"
CKPT="$WORK/cancel/results/checkpoints/permuted_mnist/ngm/seed1.pt"
# --retries 0: the profile would otherwise resubmit the cancelled job at once (and it would resume
# from its checkpoint); here we want to see the whole workflow stop and a second invocation finish it.
"$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORK/cancel" --configfile "$WORK/long.yaml" "${SLURM_ARGS[@]}" \
  --retries 0 > "$WORK/cancel1.log" 2>&1 &
SM=$!
for _ in $(seq 240); do [ -f "$CKPT" ] && break; sleep 0.5; done
[ -f "$CKPT" ] || { echo "no checkpoint appeared"; tail -30 "$WORK/cancel1.log"; exit 1; }
JOB=$(squeue -h -o "%i %j" | awk 'NR==1 {print $1}')
echo "checkpoint written; cancelling SLURM job $JOB"; squeue
scancel "$JOB"
set +e; wait "$SM"; RC=$?; set -e
echo "first invocation ended with rc=$RC (a cancelled job fails the run)"; grep -m1 "CANCELLED" "$WORK/cancel1.log" || true
[ "$RC" -ne 0 ]
"$PY" -m snakemake -s "$REPO/Snakefile" --directory "$WORK/cancel" --configfile "$WORK/long.yaml" "${SLURM_ARGS[@]}" \
  > "$WORK/cancel2.log" 2>&1 || { tail -40 "$WORK/cancel2.log"; exit 1; }
grep -h "resumed from checkpoint" "$WORK/cancel/results/logs/train/permuted_mnist/ngm/seed1.log"
test -f "$WORK/cancel/results/tables/table1_seen.csv"
echo "rerun completed, resuming from the checkpoint of the cancelled job"

say "ALL CHECKS PASSED"
