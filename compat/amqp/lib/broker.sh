# shellcheck shell=bash disable=SC2154 # sourced by ../run, which sets compat_dir and friends
# Starts and stops the Tributary broker for the compat runner (sourced by ../run).
# Invariant: the broker only ever listens on ephemeral ports of 127.0.0.1 with a temp data dir,
# so runs never collide with another broker on this machine; stop_broker is safe to call twice.

# shellcheck source=../../lib/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/certs.sh"

broker_pid=""
broker_dir=""

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
# the EXTERNAL scenarios then fail).
start_broker() {
    broker_dir="$(mktemp -d -t tributary-amqp-compat.XXXXXX)"
    broker_log="$broker_dir/broker.log"
    TLS_DIR="$broker_dir/certs" TLS_USER=alice TLS_PASSWORD=alice-secret TLS_UNKNOWN_CN=mallory
    export TLS_DIR TLS_USER TLS_PASSWORD TLS_UNKNOWN_CN
    make_test_certs "$TLS_DIR" "$TLS_USER" "$TLS_UNKNOWN_CN"
    local admin=(env -u TRIBUTARY_CONFIG TRIBUTARY_DATA_DIR="$broker_dir/data" "$tributary_bin")
    echo "$TLS_PASSWORD" | "${admin[@]}" user add "$TLS_USER" --password-stdin >/dev/null
    "${admin[@]}" permissions set / "$TLS_USER" '.*' '.*' '.*' >/dev/null
    (cd "$broker_dir" && exec env -u RUST_LOG -u TRIBUTARY_CONFIG -u TRIBUTARY_BIN \
        TRIBUTARY_LOG=info TRIBUTARY_DATA_DIR="$broker_dir/data" \
        TRIBUTARY_KAFKA_ENABLED=false TRIBUTARY_ROCKETMQ_ENABLED=false \
        TRIBUTARY_SHUTDOWN_DRAIN_TIMEOUT_MS=2000 \
        TRIBUTARY_AMQP_TLS_PORT=0 TRIBUTARY_TLS_CERT_FILE="$TLS_DIR/server.pem" \
        TRIBUTARY_TLS_KEY_FILE="$TLS_DIR/server-key.pem" TRIBUTARY_TLS_CA_FILE="$TLS_DIR/ca.pem" \
        TRIBUTARY_TLS_CLIENT_AUTH="${COMPAT_AMQP_CLIENT_AUTH:-optional}" \
        "$tributary_bin" serve --amqp-port 0 --http-port 0 </dev/null >"$broker_log" 2>&1) &
    broker_pid=$!
    local line="" tls_line="" waited=0
    while ((waited < 200)); do
        line="$(grep 'listening' "$broker_log" 2>/dev/null | grep -m1 'protocol="amqp"' || true)"
        tls_line="$(grep 'listening' "$broker_log" 2>/dev/null | grep -m1 'protocol="amqps"' || true)"
        [[ -n "$line" && -n "$tls_line" ]] && break
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -z "$line" || -z "$tls_line" ]]; then
        echo "the broker did not start listening for AMQP and AMQPS within 20 s:" >&2
        tail -n 40 "$broker_log" >&2
        return 1
    fi
    local addr
    addr="$(grep -o 'addr=[^ ]*' <<<"$line" | head -n1)"
    AMQP_PORT="${addr##*:}"
    AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
    addr="$(grep -o 'addr=[^ ]*' <<<"$tls_line" | head -n1)"
    AMQPS_PORT="${addr##*:}"
    export AMQP_PORT AMQP_URL AMQPS_PORT
    echo "broker pid $broker_pid, AMQP on 127.0.0.1:$AMQP_PORT, AMQPS on 127.0.0.1:$AMQPS_PORT, log $broker_log"
}

broker_alive() {
    [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null
}

# SIGTERM, then SIGKILL after 10 s; keeps the log (the caller prints its tail on failure).
stop_broker() {
    if broker_alive; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        local waited=0
        while broker_alive && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if broker_alive; then kill -KILL "$broker_pid" 2>/dev/null || true; fi
        wait "$broker_pid" 2>/dev/null || true
    fi
    broker_pid=""
}
