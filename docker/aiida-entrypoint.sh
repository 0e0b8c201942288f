#!/usr/bin/env bash
# The `aiida` service of docker/compose.yaml, as the user `aiida`:
#   1. wait for PostgreSQL, RabbitMQ and the SLURM controller (slurm.conf and munge socket come from the slurm service);
#   2. `aiida-polyhydride setup --postgres`: profile on PostgreSQL + RabbitMQ, the localhost computer with pw and python
#      codes, the pseudopotential family (idempotent: on a restart it finds everything and changes nothing);
#   3. `aiida-polyhydride setup computer docker/computer-slurm.yaml`: the computer `slurm` (core.local + core.slurm)
#      with its pw and python codes;
#   4. the AiiDA daemon with $AIIDA_DAEMON_WORKERS workers; its log goes to the container's output, and the container
#      stops (compose restarts it) when the daemon is gone.
# RabbitMQ: aiida-core reads AIIDA_BROKER_HOST/PORT/USERNAME/PASSWORD/VIRTUAL_HOST when it creates the profile
# (aiida.brokers.rabbitmq.defaults.detect_rabbitmq_config); the profile stores them.
set -euo pipefail

# required (set in compose.yaml)
PROFILE=${AIIDA_PROFILE:?name of the AiiDA profile}
WORKERS=${AIIDA_DAEMON_WORKERS:?number of daemon workers}
PG_HOST=${POSTGRES_HOST:?PostgreSQL host}
PG_PORT=${POSTGRES_PORT:?PostgreSQL port}
PG_SUPERUSER=${POSTGRES_SUPERUSER:?PostgreSQL role that may create roles and databases}
PG_PASSWORD=${POSTGRES_PASSWORD:?password of POSTGRES_SUPERUSER}
BROKER_HOST=${AIIDA_BROKER_HOST:?RabbitMQ host}
BROKER_PORT=${AIIDA_BROKER_PORT:?RabbitMQ AMQP port}
: "${AIIDA_BROKER_USERNAME:?RabbitMQ user}" "${AIIDA_BROKER_PASSWORD:?RabbitMQ password}"
COMPUTER_YAML=${POLYHYDRIDE_COMPUTER_YAML:?computer description for aiida-polyhydride setup computer}
# optional overrides
WAIT_S=${POLYHYDRIDE_WAIT_S:-120}
DAEMON_CHECK_S=${POLYHYDRIDE_DAEMON_CHECK_S:-30}

log() { echo "aiida-entrypoint: $*"; }
fail() {
    echo "aiida-entrypoint: ERROR: $*" >&2
    exit 1
}
# shellcheck disable=SC2329  # port_open and slurm_answers are called through wait_for
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_for() { # wait_for WHAT COMMAND...: retry COMMAND for WAIT_S seconds
    local what=$1
    shift
    for _ in $(seq "$WAIT_S"); do
        "$@" && return 0
        sleep 1
    done
    fail "$what not reachable within ${WAIT_S} s"
}
# shellcheck disable=SC2329
slurm_answers() { [ -s /etc/slurm/slurm.conf ] && sinfo --noheader >/dev/null 2>&1; }

log "waiting for PostgreSQL ($PG_HOST:$PG_PORT), RabbitMQ ($BROKER_HOST:$BROKER_PORT) and SLURM"
wait_for "PostgreSQL at $PG_HOST:$PG_PORT" port_open "$PG_HOST" "$PG_PORT"
wait_for "RabbitMQ at $BROKER_HOST:$BROKER_PORT" port_open "$BROKER_HOST" "$BROKER_PORT"
wait_for "SLURM (slurm.conf, munge socket, slurmctld)" slurm_answers

aiida-polyhydride setup -p "$PROFILE" --postgres \
    --pg-host "$PG_HOST" --pg-port "$PG_PORT" --pg-superuser "$PG_SUPERUSER" --pg-password "$PG_PASSWORD"
aiida-polyhydride setup computer -p "$PROFILE" "$COMPUTER_YAML"

# A daemon of an earlier container left a PID file in the config volume; aiida removes it when it is stale.
verdi -p "$PROFILE" daemon start "$WORKERS"
verdi -p "$PROFILE" daemon logshow &
logshow_pid=$!

# shellcheck disable=SC2329  # invoked by the trap below
stop() {
    log "stopping the daemon"
    verdi -p "$PROFILE" daemon stop || true
    kill "$logshow_pid" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

# Three failed checks in a row (not one slow answer) end the container.
failures=0
while [ "$failures" -lt 3 ]; do
    # sleep in the background so that the trap runs at once on `docker compose stop`
    sleep "$DAEMON_CHECK_S" &
    wait $! || true
    if verdi -p "$PROFILE" daemon status >/dev/null 2>&1; then
        failures=0
    else
        failures=$((failures + 1))
        log "the AiiDA daemon does not answer (check $failures of 3)"
    fi
done
log "the AiiDA daemon is not running any more: stopping the container"
kill "$logshow_pid" 2>/dev/null || true
exit 1
