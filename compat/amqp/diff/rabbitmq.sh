# shellcheck shell=bash
# Starts and stops the RabbitMQ peer of the differential suite (sourced by ./run).
# Invariant: the peer is its own node (own name, AMQP and distribution ports, temp mnesia, log
# and HOME with its own Erlang cookie) on 127.0.0.1 only, so it never touches another RabbitMQ
# on this machine; stop_rabbitmq ends only what start_rabbitmq started (epmd too, when it was
# not already running).

rabbit_pid=""
rabbit_dir=""
rabbit_started_epmd=""

# apt-get install rabbitmq-server only when it is missing (apt-get update only then).
install_rabbitmq() {
    [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] && return
    echo "apt: installing rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends rabbitmq-server </dev/null >/dev/null
}

# A free TCP port of 127.0.0.1 (the kernel picks it; a race with another starter is unlikely
# and shows as a start failure, not as a wrong peer).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sets RABBIT_PORT once the node accepts AMQP connections (within 60 s).
start_rabbitmq() {
    rabbit_dir="$(mktemp -d -t tributary-amqp-diff-rabbit.XXXXXX)"
    mkdir -p "$rabbit_dir/home" "$rabbit_dir/mnesia" "$rabbit_dir/log"
    echo '[].' >"$rabbit_dir/enabled_plugins"
    RABBIT_PORT="$(free_port)"
    local dist_port node
    dist_port="$(free_port)"
    node="amqpdiff$$@localhost"
    pgrep -x epmd >/dev/null 2>&1 || rabbit_started_epmd=yes
    (
        export HOME="$rabbit_dir/home" RABBITMQ_NODENAME="$node" \
            RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RABBIT_PORT" \
            RABBITMQ_DIST_PORT="$dist_port" ERL_EPMD_ADDRESS=127.0.0.1 \
            RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" RABBITMQ_LOG_BASE="$rabbit_dir/log" \
            RABBITMQ_CONFIG_FILE="$rabbit_dir/no-config" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/enabled_plugins" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        exec setsid /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >"$rabbit_dir/server.log" 2>&1
    ) &
    rabbit_pid=$!
    local waited=0
    while ((waited < 600)); do
        if grep -q 'Starting broker.*completed' "$rabbit_dir/server.log" 2>/dev/null \
            && (exec 3<>"/dev/tcp/127.0.0.1/$RABBIT_PORT") 2>/dev/null; then
            echo "rabbitmq $node pid $rabbit_pid, AMQP on 127.0.0.1:$RABBIT_PORT ($((waited / 10)) s)"
            export RABBIT_PORT
            return 0
        fi
        kill -0 "$rabbit_pid" 2>/dev/null || break
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "rabbitmq did not start within 60 s:" >&2
    tail -n 30 "$rabbit_dir/server.log" >&2
    return 1
}

rabbit_alive() {
    [[ -n "$rabbit_pid" ]] && kill -0 "$rabbit_pid" 2>/dev/null
}

# SIGTERM to the node's process group (the script and beam), SIGKILL after 15 s.
stop_rabbitmq() {
    if rabbit_alive; then
        kill -TERM -- "-$rabbit_pid" 2>/dev/null || kill -TERM "$rabbit_pid" 2>/dev/null || true
        local waited=0
        while rabbit_alive && ((waited < 150)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        rabbit_alive && kill -KILL -- "-$rabbit_pid" 2>/dev/null
        wait "$rabbit_pid" 2>/dev/null || true
    fi
    if [[ -n "$rabbit_started_epmd" ]]; then
        local epmd_pid
        epmd_pid="$(pgrep -x epmd || true)"
        [[ -n "$epmd_pid" ]] && kill "$epmd_pid" 2>/dev/null
        rabbit_started_epmd=""
    fi
    rabbit_pid=""
    [[ -n "$rabbit_dir" ]] && rm -rf "$rabbit_dir"
    rabbit_dir=""
}
