#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) run for the test suite.
# Services that already run are left alone; missing ones are installed and started by hand (no systemd).
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 60); do port_open "$1" && return 0; sleep 1; done
    echo "$2 did not open port $1 within 60 s" >&2
    return 1
}
apt_install() {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "Starting PostgreSQL $version"
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port 5432 PostgreSQL
fi

if ! port_open 5672; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    # aiida's long-running tasks outlive RabbitMQ's default 30 min consumer timeout.
    if [ ! -f /etc/rabbitmq/advanced.config ]; then
        echo '[{rabbit, [{consumer_timeout, undefined}]}].' | $sudo tee /etc/rabbitmq/advanced.config >/dev/null
    fi
    echo "Starting RabbitMQ"
    $sudo rabbitmq-server -detached
    wait_port 5672 RabbitMQ
fi
