# shellcheck shell=bash disable=SC2154 # sourced by ../run, which sets compat_dir and friends
# The compat drivers: one client program each, run with a hard timeout (sourced by ../run).
# Invariant: every driver line in $results reads `<client> <scenario> PASS|FAIL <detail>`, and a
# driver that dies, hangs or prints nothing leaves a FAIL line, so no failure can go unseen.

all_drivers=(pika-blocking pika-asyncio aio-pika kombu celery amqplib amqp-client amqp-tools java
    pika-tls amqplib-tls)

# driver -> "timeout_seconds command..." (commands run from $compat_dir).
driver_command() {
    local py="$venv_dir/bin/python"
    case "$1" in
        pika-blocking) echo "60 $py python/pika_blocking.py" ;;
        pika-asyncio) echo "60 $py python/pika_asyncio.py" ;;
        aio-pika) echo "60 $py python/aio_pika_rpc.py" ;;
        kombu) echo "60 $py python/kombu_queues.py" ;;
        celery) echo "120 $py python/celery_roundtrip.py" ;;
        amqplib) echo "60 node node/amqplib.js" ;;
        amqp-client) echo "60 node node/amqp_client.mjs" ;;
        amqp-tools) echo "60 bash lib/amqp_tools.sh" ;;
        java) echo "60 java -cp $java_out:$java_classpath AmqpCompat" ;;
        pika-tls) echo "60 $py python/pika_tls.py" ;;
        amqplib-tls) echo "60 node node/amqplib_tls.js" ;;
        *) return 1 ;;
    esac
}

run_driver() {
    local driver="$1" results="$2" spec limit output status
    if ! spec="$(driver_command "$driver")"; then
        echo "$driver driver FAIL unknown driver (known: ${all_drivers[*]})" >>"$results"
        return
    fi
    limit="${spec%% *}"
    output="$(mktemp -t tributary-amqp-driver.XXXXXX)"
    echo "==> $driver"
    set +e
    # shellcheck disable=SC2086 # the command is a word list by construction
    (cd "$compat_dir" && exec timeout -k 5 "$limit" ${spec#* } </dev/null) >"$output" 2>&1
    status=$?
    set -e
    sed 's/^/    /' "$output"
    local lines
    lines="$(grep -E '^RESULT [^ ]+ (PASS|FAIL)' "$output" | sed "s/^RESULT /$driver /" || true)"
    [[ -n "$lines" ]] && printf '%s\n' "$lines" >>"$results"
    if ((status == 124 || status == 137)); then
        echo "$driver driver FAIL timed out after ${limit} s" >>"$results"
    elif ((status != 0)) && ! grep -q '^RESULT [^ ]* FAIL' "$output"; then
        echo "$driver driver FAIL exit status $status" >>"$results"
    elif [[ -z "$lines" ]]; then
        echo "$driver driver FAIL printed no result" >>"$results"
    fi
    if ! broker_alive; then
        echo "$driver broker FAIL the broker died during this driver" >>"$results"
    fi
    rm -f "$output"
}

# One row per client, one column per scenario that client has (scenarios differ by client).
print_table() {
    local results="$1"
    printf '\n%-14s %-28s %-6s %s\n' client scenario result detail
    printf '%-14s %-28s %-6s %s\n' -------------- ---------------------------- ------ ------
    while read -r client scenario verdict detail; do
        printf '%-14s %-28s %-6s %s\n' "$client" "$scenario" "$verdict" "$detail"
    done <"$results"
}
