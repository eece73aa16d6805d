#!/usr/bin/env bash
# shellcheck disable=SC2317 # the scenario functions are called through $scenario below
# rabbitmq-c's command-line tools (Debian amqp-tools, one connection per call, heartbeat 0):
# declare, publish, get (basic.get), consume (with a count, and from an exclusive server-named
# queue bound to amq.topic), delete. Prints the RESULT lines of drivers.sh.
set -uo pipefail

connection=(--server 127.0.0.1 --port "$AMQP_PORT" --username guest --password guest)
suffix="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
failed=0

result() { # name verdict detail...
    local name="$1" verdict="$2"
    shift 2
    echo "RESULT $name $verdict $*"
    [[ "$verdict" == PASS ]] || failed=1
}

declare_and_get() {
    local queue="tools.get.$suffix" declared got empty_status
    declared="$(amqp-declare-queue "${connection[@]}" -d -q "$queue")" || return 1
    [[ "$declared" == "$queue" ]] || { echo "declared '$declared'"; return 1; }
    amqp-publish "${connection[@]}" -r "$queue" -p -C text/plain -b "hello tools" || return 1
    got="$(amqp-get "${connection[@]}" -q "$queue")" || return 1
    [[ "$got" == "hello tools" ]] || { echo "amqp-get printed '$got'"; return 1; }
    amqp-get "${connection[@]}" -q "$queue" >/dev/null 2>&1
    empty_status=$?
    ((empty_status != 0)) || { echo "amqp-get on an empty queue succeeded"; return 1; }
    amqp-delete-queue "${connection[@]}" -q "$queue" || return 1
    if amqp-declare-queue "${connection[@]}" -q "" | grep -q '^amq\.gen-'; then
        return 0
    fi
    echo "a server-named queue is not amq.gen-*"
    return 1
}

consume_count() {
    local queue="tools.consume.$suffix" got
    amqp-declare-queue "${connection[@]}" -q "$queue" >/dev/null || return 1
    printf 'l1\nl2\nl3\nl4\n' | amqp-publish "${connection[@]}" -r "$queue" -l || return 1
    got="$(amqp-consume "${connection[@]}" -q "$queue" -c 3 -p 1 -- cat)" || return 1
    [[ "$got" == $'l1\nl2\nl3' ]] || { echo "consumed '$got'"; return 1; }
    got="$(amqp-get "${connection[@]}" -q "$queue")" || return 1
    [[ "$got" == "l4" ]] || { echo "fourth message '$got'"; return 1; }
    amqp-delete-queue "${connection[@]}" -q "$queue"
}

consume_bound() {
    local out="$BASHPID.bound.out" pid tries=0
    amqp-consume "${connection[@]}" -e amq.topic -r "logs.#" -x -c 1 cat >"$out" &
    pid=$!
    # The consumer declares and binds asynchronously: publish until it has taken one message.
    while kill -0 "$pid" 2>/dev/null && ((tries < 50)); do
        amqp-publish "${connection[@]}" -e amq.topic -r "logs.app.error" -b "bound" || break
        sleep 0.1
        tries=$((tries + 1))
    done
    wait "$pid"
    local status=$? got
    got="$(cat "$out")"
    rm -f "$out"
    ((status == 0)) || { echo "amqp-consume exited $status"; return 1; }
    [[ "$got" == "bound" ]] || { echo "consumed '$got'"; return 1; }
}

cd "$(mktemp -d)" || exit 1
for scenario in declare_and_get consume_count consume_bound; do
    started=$(date +%s%N)
    if detail="$($scenario 2>&1)"; then
        result "${scenario//_/-}" PASS "$((($(date +%s%N) - started) / 1000000)) ms"
    else
        result "${scenario//_/-}" FAIL "$(tr '\n' ' ' <<<"$detail")"
    fi
done
exit "$failed"
