#!/usr/bin/env bash
# The `slurm` service of docker/compose.yaml: a one-node SLURM cluster in this container (munged, slurmctld, slurmd),
# run in the foreground. Its slurm.conf is docker/slurm.conf.template, the one .ci/slurm.sh renders for the test
# machine (no cgroups, no accounting, processes tracked through /proc), rendered here for this container.
#
# Shared with the `aiida` container through volumes (paths fixed in compose.yaml):
#   /etc/slurm/slurm.conf  written here on every start; the aiida container's sbatch/squeue/scancel read it
#   /run/munge             munged's socket: the aiida container's SLURM commands get their credentials from this munged,
#                          so there is one munge key, and it never leaves this container
#   $POLYHYDRIDE_SCRATCH   the work directory of the AiiDA computer: jobs run in it here, AiiDA reads it there
#
# Runs as root (slurmd starts each job as the user who submitted it). The container's hostname is the node name and
# the controller host: compose sets `hostname: slurm`, the name the aiida container resolves.
set -euo pipefail

# required (set in compose.yaml)
PARTITION=${POLYHYDRIDE_PARTITION:?name of the partition, the computer YAML queue_name}
JOB_USER=${POLYHYDRIDE_JOB_USER:?user who submits and runs the jobs (uid shared with the aiida container)}
SCRATCH=${POLYHYDRIDE_SCRATCH:?work directory shared with the aiida container}
# optional overrides
NODE=$(uname -n)
NODE=${NODE%%.*}
CPUS=${POLYHYDRIDE_NODE_CPUS:-$(nproc)}
# leave a tenth of the memory to the other containers; SlurmdParameters=config_overrides keeps the node usable anyway
read -r _ total_kb _ < <(grep '^MemTotal:' /proc/meminfo)
REAL_MEMORY_MB=${POLYHYDRIDE_NODE_MEMORY_MB:-$((total_kb * 9 / 10240))}
WAIT_S=${POLYHYDRIDE_SLURM_WAIT_S:-60}

STATE_DIR=/var/lib/polyhydride-slurm
CONF=/etc/slurm/slurm.conf
TEMPLATE=/usr/local/share/aiida-polyhydride/slurm.conf.template # copied there by the Dockerfile

log() { echo "slurm-entrypoint: $*"; }
fail() {
    echo "slurm-entrypoint: ERROR: $*" >&2
    exit 1
}

# --- munge -------------------------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating the munge key"
    mungekey --create --keyfile=/etc/munge/munge.key --force
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
# --force: remove the socket a munged of an earlier container left in the /run/munge volume
runuser -u munge -- /usr/sbin/munged --foreground --force &
munged_pid=$!
for _ in $(seq 40); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.25
done
munge -n | unmunge >/dev/null || fail "munged does not answer (munge -n | unmunge)"

# --- slurm.conf --------------------------------------------------------------------------------------------------
for sub in state spool; do install -d -m 0755 "$STATE_DIR/$sub"; done
# the shared work directory: a fresh volume is owned by root; jobs and AiiDA write into it as $JOB_USER
id "$JOB_USER" >/dev/null || fail "user $JOB_USER does not exist in this image"
install -d -o "$JOB_USER" -g "$(id -gn "$JOB_USER")" "$SCRATCH"
chown "$JOB_USER:$(id -gn "$JOB_USER")" "$SCRATCH"

mkdir -p "$(dirname "$CONF")"
# pid files in /run: a new container never finds stale ones of an earlier container
sed -e "s|@NODE@|$NODE|g" -e "s|@NODE_ADDR@|$NODE|g" -e "s|@STATE_DIR@|$STATE_DIR|g" -e 's|@RUN_DIR@|/run|g' \
    -e "s|@CPUS@|$CPUS|g" -e "s|@REAL_MEMORY_MB@|$REAL_MEMORY_MB|g" -e "s|@PARTITION@|$PARTITION|g" \
    "$TEMPLATE" >"$CONF.tmp"
if grep -q '@[A-Z_]*@' "$CONF.tmp"; then
    fail "$TEMPLATE has placeholders this script does not fill: $(grep -o '@[A-Z_]*@' "$CONF.tmp" | sort -u | xargs)"
fi
# atomic: the aiida container never reads half a file
mv "$CONF.tmp" "$CONF"
chmod 0644 "$CONF"
log "node $NODE: CPUs=$CPUS RealMemory=${REAL_MEMORY_MB} MB, partition $PARTITION"

# --- daemons, in the foreground (-D) with their logs on this container's output ------------------------------------
slurmctld -D &
slurmctld_pid=$!
slurmd -D -N "$NODE" &
slurmd_pid=$!
pids=("$munged_pid" "$slurmctld_pid" "$slurmd_pid")

# shellcheck disable=SC2329  # invoked by the trap below
stop() {
    log "stopping"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait || true
    exit 0
}
trap stop TERM INT

resumed=0
state=""
for _ in $(seq $((WAIT_S * 2))); do
    state=$(sinfo --noheader --nodes="$NODE" --Node --format='%T' 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle | mixed | allocated | completing) break ;;
        down* | drain*)
            if [ "$resumed" -eq 0 ]; then
                log "node $NODE is $state: resuming it"
                scontrol update nodename="$NODE" state=resume || true
                resumed=1
            fi
            ;;
    esac
    sleep 0.5
done
case "$state" in
    idle | mixed | allocated | completing) log "node $NODE is $state" ;;
    *) log "WARNING: node $NODE is not idle after ${WAIT_S} s (state: '${state:-no answer}'); the healthcheck says so" ;;
esac

# The container lives as long as all three daemons: if one ends, stop the others and exit (compose restarts it).
status=0
wait -n "${pids[@]}" || status=$?
log "a daemon exited (status $status): stopping the container"
kill -TERM "${pids[@]}" 2>/dev/null || true
wait || true
exit 1
