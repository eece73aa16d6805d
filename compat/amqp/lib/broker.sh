# shellcheck shell=bash disable=SC2154 # sourced by ../run, which sets compat_dir and friends
# Starts and stops the Tributary broker for the compat runner (sourced by ../run).
# Invariant: the broker only ever listens on ephemeral ports of 127.0.0.1 with a temp data dir,
# so runs never collide with another broker on this machine; stop_broker is safe to call twice.

# shellcheck source=../../lib/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/certs.sh"

# shellcheck source=../../lib/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/cluster.sh"

broker_pids=()
broker_dir=""
# Per broker (one, or COMPAT_BROKERS in cluster mode): its AMQP and AMQPS ports.
amqp_ports=()
amqps_ports=()

# Uses $TRIBUTARY_BIN, else the release binary, building it when missing.
ensure_binary() {
    tributary_bin="${TRIBUTARY_BIN:-${CARGO_TARGET_DIR:-$repo_dir/target}/release/tributary}"
    if [[ ! -x "$tributary_bin" ]]; then
        echo "building $tributary_bin"
        (cd "$repo_dir" && cargo build --release --bin tributary)
    fi
    [[ -x "$tributary_bin" ]] || { echo "no broker binary at $tributary_bin" >&2; return 1; }
}

# Sets AMQP_PORT and AMQP_URL once the AMQP listener logs its address (within 20 s), and for the
# TLS drivers AMQPS_PORT (AMQPS with `tls.client_auth = optional`, client certificates signed by
# the run's CA in TLS_DIR), TLS_USER/TLS_PASSWORD (a stored user with every permission on `/`,
# added before the start) and TLS_UNKNOWN_CN (a certificate of that CA naming no user).
# COMPAT_AMQP_CLIENT_AUTH overrides `tls.client_auth` (`none` turns EXTERNAL off, to check that
# the EXTERNAL scenarios then fail). With COMPAT_BROKERS=N, N brokers on the cloud engine
# (../../lib/cluster.sh), the user stored in the run's database; `use_broker` picks the one the
# next driver talks to.
start_broker() {
    broker_dir="$(mktemp -d -t tributary-amqp-compat.XXXXXX)"
    TLS_DIR="$broker_dir/certs" TLS_USER=alice TLS_PASSWORD=alice-secret TLS_UNKNOWN_CN=mallory
    export TLS_DIR TLS_USER TLS_PASSWORD TLS_UNKNOWN_CN
    make_test_certs "$TLS_DIR" "$TLS_USER" "$TLS_UNKNOWN_CN"
    if cluster_mode; then cluster_prepare amqp || return 1; fi
    local admin=(env -u TRIBUTARY_CONFIG TRIBUTARY_DATA_DIR="$broker_dir/data" "${cluster_env[@]}" "$tributary_bin")
    echo "$TLS_PASSWORD" | "${admin[@]}" user add "$TLS_USER" --password-stdin >/dev/null
    "${admin[@]}" permissions set / "$TLS_USER" '.*' '.*' '.*' >/dev/null
    if ! cluster_mode; then
        start_one "$broker_dir/data" || return 1
    else
        local id per
        for ((id = 1; id <= compat_brokers; id++)); do
            mapfile -t per < <(cluster_broker_env "$id")
            start_one "$broker_dir/data-$id" "${cluster_env[@]}" "${per[@]}" || return 1
        done
        cluster_settle
    fi
    use_broker 0
}

# use_broker INDEX: the drivers that follow talk to broker INDEX (modulo the number of brokers).
use_broker() {
    local index=$(($1 % ${#amqp_ports[@]}))
    AMQP_PORT="${amqp_ports[$index]}"
    AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
    AMQPS_PORT="${amqps_ports[$index]}"
    broker_log="$broker_dir/broker-$index.log"
    # The drivers' large-message scenarios read the broker's peak memory in /proc.
    BROKER_PID="${broker_pids[$index]}"
    export AMQP_PORT AMQP_URL AMQPS_PORT BROKER_PID
    echo "broker $index: pid ${broker_pids[$index]}, AMQP on 127.0.0.1:$AMQP_PORT, AMQPS on 127.0.0.1:$AMQPS_PORT, log $broker_log"
}

# start_one DATA_DIR [VAR=value...]: one broker on DATA_DIR with the given extra environment; adds
# its pid and ports to broker_pids, amqp_ports and amqps_ports.
start_one() {
    local data="$1" log="$broker_dir/broker-${#broker_pids[@]}.log"
    shift
    (cd "$broker_dir" && exec env -u RUST_LOG -u TRIBUTARY_CONFIG -u TRIBUTARY_BIN \
        TRIBUTARY_LOG=info TRIBUTARY_DATA_DIR="$data" \
        TRIBUTARY_KAFKA_ENABLED=false TRIBUTARY_ROCKETMQ_ENABLED=false \
        TRIBUTARY_SHUTDOWN_DRAIN_TIMEOUT_MS=2000 \
        TRIBUTARY_AMQP_TLS_PORT=0 TRIBUTARY_TLS_CERT_FILE="$TLS_DIR/server.pem" \
        TRIBUTARY_TLS_KEY_FILE="$TLS_DIR/server-key.pem" TRIBUTARY_TLS_CA_FILE="$TLS_DIR/ca.pem" \
        TRIBUTARY_TLS_CLIENT_AUTH="${COMPAT_AMQP_CLIENT_AUTH:-optional}" "$@" \
        "$tributary_bin" serve --amqp-port 0 --http-port 0 </dev/null >"$log" 2>&1) &
    local pid=$!
    broker_pids+=("$pid")
    local line="" tls_line="" waited=0
    while ((waited < 200)); do
        line="$(grep 'listening' "$log" 2>/dev/null | grep -m1 'protocol="amqp"' || true)"
        tls_line="$(grep 'listening' "$log" 2>/dev/null | grep -m1 'protocol="amqps"' || true)"
        [[ -n "$line" && -n "$tls_line" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -z "$line" || -z "$tls_line" ]]; then
        echo "the broker did not start listening for AMQP and AMQPS within 20 s:" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
    local addr
    addr="$(grep -o 'addr=[^ ]*' <<<"$line" | head -n1)"
    amqp_ports+=("${addr##*:}")
    addr="$(grep -o 'addr=[^ ]*' <<<"$tls_line" | head -n1)"
    amqps_ports+=("${addr##*:}")
}

# Every broker of the run is still running.
broker_alive() {
    local pid
    ((${#broker_pids[@]})) || return 1
    for pid in "${broker_pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
    done
}

# SIGTERM, then SIGKILL after 10 s; keeps the logs (the caller prints their tails on failure).
stop_broker() {
    local pid waited
    for pid in "${broker_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${broker_pids[@]}"; do
        waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    broker_pids=()
    cluster_drop
}
