#!/usr/bin/env bash
# Make sure a single-node SLURM cluster (node `localhost`, partition `debug`) runs on this machine for the tests.
#
# Idempotent: if `sinfo` already answers with a healthy node, nothing is done. Otherwise Debian's slurm-wlm and munge
# are installed where missing, a munge key is created where absent, munged, slurmctld and slurmd are started by hand
# (no systemd), and the script waits until the node is idle.
#
# The configuration is docker/slurm.conf.template (shared with the compose stack's slurm container), rendered for
# node localhost into /etc/slurm/slurm.conf, the file Debian's SLURM commands read by default, so sbatch/squeue
# called by the AiiDA daemon need no SLURM_CONF in its environment. A slurm.conf this script did not write is never
# overwritten. State, spool, pid and log files live under $POLYHYDRIDE_SLURM_DIR (default /var/lib/polyhydride-slurm);
# removing that directory after stopping the daemons gives a cluster from scratch on the next run.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

SLURM_DIR=${POLYHYDRIDE_SLURM_DIR:-/var/lib/polyhydride-slurm}
CONF=/etc/slurm/slurm.conf
TEMPLATE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/docker/slurm.conf.template"
# the first line of every slurm.conf rendered from the template (and of those earlier versions of this script wrote)
MARKER='# Written by aiida-polyhydride'
NODE=localhost
WAIT_S=${POLYHYDRIDE_SLURM_WAIT:-60}

log() { echo "slurm.sh: $*"; }
fail() {
    echo "slurm.sh: ERROR: $*" >&2
    for file in "$SLURM_DIR/log/slurmctld.log" "$SLURM_DIR/log/slurmd.log" /var/log/munge/munged.log; do
        if $sudo test -f "$file"; then
            echo "--- last lines of $file" >&2
            $sudo tail -n 20 "$file" >&2
        fi
    done
    exit 1
}
# States of a usable node; a suffix such as `*` (not responding) or `~` (powered down) makes it unusable.
node_state() { sinfo --noheader --nodes="$NODE" --Node --format='%T' 2>/dev/null | head -n 1; }
# slurmctld notices a dead slurmd only after SlurmdTimeout, so ask this machine's slurmd itself as well.
healthy() {
    command -v sinfo >/dev/null || return 1
    case "$(node_state)" in
        idle | mixed | allocated | completing) scontrol show slurmd >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}
# pid of a daemon from its pid file, if that process is alive
alive() { local pid; pid=$($sudo cat "$1" 2>/dev/null) && [ -n "$pid" ] && $sudo kill -0 "$pid" 2>/dev/null; }

if healthy; then
    exit 0
fi

# --- packages ------------------------------------------------------------------------------------------------------
need=()
for program in slurmctld slurmd sinfo; do command -v $program >/dev/null || need+=(slurm-wlm); done
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    log "installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- munge ---------------------------------------------------------------------------------------------------------
if ! $sudo test -s /etc/munge/munge.key; then
    log "creating the munge key /etc/munge/munge.key"
    $sudo mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        $sudo mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        $sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
$sudo chown munge:munge /etc/munge/munge.key
$sudo chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    $sudo mkdir -p /run/munge /var/log/munge /var/lib/munge
    $sudo chown munge:munge /run/munge /var/log/munge /var/lib/munge
    $sudo chmod 0755 /run/munge
    # munged runs as its own user, as the Debian service does; --force removes a stale socket of a dead munged.
    $sudo runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munged does not answer (munge -n | unmunge)"
fi

# --- slurm.conf ----------------------------------------------------------------------------------------------------
cpus=$(nproc)
mem_mb=$(free -m | awk '/^Mem:/ {print $2}')
real_memory=$((mem_mb * 9 / 10)) # leave room for the OS, PostgreSQL and RabbitMQ
for sub in state spool run log; do $sudo mkdir -p "$SLURM_DIR/$sub"; done
$sudo chmod 0755 "$SLURM_DIR"

# Regenerated on every run that finds no healthy node; edit the template, not the file.
new_conf=$(sed -e "s|@NODE@|$NODE|g" -e 's|@NODE_ADDR@|127.0.0.1|g' -e "s|@STATE_DIR@|$SLURM_DIR|g" \
    -e "s|@RUN_DIR@|$SLURM_DIR/run|g" -e "s|@CPUS@|$cpus|g" -e "s|@REAL_MEMORY_MB@|$real_memory|g" \
    -e 's|@PARTITION@|debug|g' "$TEMPLATE")
if grep -q '@[A-Z_]*@' <<<"$new_conf"; then
    fail "$TEMPLATE has placeholders this script does not fill: $(grep -o '@[A-Z_]*@' <<<"$new_conf" | sort -u | xargs)"
fi

conf_changed=0
if $sudo test -f "$CONF" && ! $sudo grep -qF "$MARKER" "$CONF"; then
    fail "$CONF exists and was not written by this script: it is left alone. Move it away to let this script set up \
the single-node cluster, or make its node answer in sinfo."
fi
if ! $sudo test -f "$CONF" || [ "$($sudo cat "$CONF")" != "$new_conf" ]; then
    log "writing $CONF (node $NODE: CPUs=$cpus RealMemory=${real_memory} MB, partition debug)"
    $sudo mkdir -p "$(dirname "$CONF")"
    echo "$new_conf" | $sudo tee "$CONF" >/dev/null
    conf_changed=1
fi

# --- daemons -------------------------------------------------------------------------------------------------------
stop() { # stop the daemon of pid file $1 if it runs
    local pid
    alive "$1" || return 0
    pid=$($sudo cat "$1")
    $sudo kill "$pid"
    for _ in $(seq 20); do $sudo kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    fail "daemon with pid $pid ($1) did not stop"
}
if [ "$conf_changed" -eq 1 ]; then
    stop "$SLURM_DIR/run/slurmd.pid"
    stop "$SLURM_DIR/run/slurmctld.pid"
fi
if ! alive "$SLURM_DIR/run/slurmctld.pid"; then
    log "starting slurmctld"
    $sudo slurmctld -L "$SLURM_DIR/log/slurmctld.log" || fail "slurmctld did not start"
fi
if ! alive "$SLURM_DIR/run/slurmd.pid"; then
    log "starting slurmd"
    # -N: this machine's hostname need not be `localhost`, the node name in slurm.conf.
    $sudo slurmd -N "$NODE" -L "$SLURM_DIR/log/slurmd.log" || fail "slurmd did not start"
fi

resumed=0
for _ in $(seq $((WAIT_S * 2))); do
    state=$(node_state)
    case "$state" in
        idle | mixed | allocated | completing)
            log "node $NODE is $state"
            exit 0
            ;;
        down* | drain*)
            if [ "$resumed" -eq 0 ]; then
                log "node $NODE is $state: resuming it"
                $sudo scontrol update nodename="$NODE" state=resume || true
                resumed=1
            fi
            ;;
    esac
    sleep 0.5
done
fail "node $NODE is not idle after ${WAIT_S} s (state: '${state:-no answer from slurmctld}')"
