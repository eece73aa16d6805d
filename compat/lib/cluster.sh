# shellcheck shell=bash
# Cluster mode for the compat runners (sourced): with COMPAT_BROKERS=N (N >= 2) a runner starts N
# brokers on the cloud engine over one PostgreSQL database and one object-store prefix, instead
# of one broker on a data directory, and points its clients at them (issue 15: every compat
# client works through any broker of three).
#
#   cluster_mode                   true when COMPAT_BROKERS asks for more than one broker
#   cluster_prepare NAME           checks the services' environment (what `.ci/services start`
#                                  prints: TRIBUTARY_TEST_PG_URL, TRIBUTARY_TEST_S3_BUCKET and the
#                                  AWS_* variables; missing, the run FAILS), creates a fresh
#                                  database for this run and sets cluster_env, the settings every
#                                  broker and every admin command of the run shares
#   cluster_broker_env ID          prints the per-broker settings (broker id, a short lease so
#                                  the brokers see each other quickly), one VAR=value per line
#   cluster_settle                 waits until the brokers have seen each other's leases
#   cluster_drop                   drops the run's database (objects stay under the run's prefix)
#
# Invariant: a run never shares a database or an object prefix with another run, so runs on one
# set of services cannot see each other's topics, users or queues.

compat_brokers="${COMPAT_BROKERS:-1}"
cluster_env=()
cluster_database=""
cluster_lease_renew_ms=300

cluster_mode() { ((compat_brokers > 1)); }

cluster_prepare() {
    local name="$1" var
    [[ "$compat_brokers" =~ ^[0-9]+$ ]] || { echo "COMPAT_BROKERS=$compat_brokers is not a number" >&2; return 1; }
    for var in TRIBUTARY_TEST_PG_URL TRIBUTARY_TEST_S3_BUCKET AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID \
        AWS_SECRET_ACCESS_KEY AWS_REGION; do
        if [[ -z "${!var:-}" ]]; then
            echo "COMPAT_BROKERS=$compat_brokers needs $var: run \`eval \"\$(bash .ci/services start)\"\` first" >&2
            return 1
        fi
    done
    command -v psql >/dev/null || { echo "COMPAT_BROKERS needs psql (Debian postgresql-client)" >&2; return 1; }
    cluster_database="compat_${name//[^a-z0-9]/_}_$(date +%s)_$$"
    psql -q -v ON_ERROR_STOP=1 "$TRIBUTARY_TEST_PG_URL" -c "CREATE DATABASE \"$cluster_database\"" >/dev/null
    # The database name replaces the last path segment of the services' URL.
    local url="${TRIBUTARY_TEST_PG_URL%/*}/$cluster_database"
    cluster_env=(TRIBUTARY_CLUSTER_METADATA_URL="$url"
        TRIBUTARY_CLUSTER_OBJECTS_URL="s3://$TRIBUTARY_TEST_S3_BUCKET/$cluster_database")
}

cluster_broker_env() {
    printf '%s\n' "TRIBUTARY_CLUSTER_BROKER_ID=$1" "TRIBUTARY_CLUSTER_LEASE_RENEW_MS=$cluster_lease_renew_ms" \
        "TRIBUTARY_CLUSTER_LEASE_MS=5000"
}

# Every broker renews its lease and reads the others' every cluster_lease_renew_ms: after three
# rounds each one lists them all, so clients are not sent NOT_LEADER while leadership spreads.
cluster_settle() { sleep "$(awk "BEGIN { print 3 * $cluster_lease_renew_ms / 1000 }")"; }

cluster_drop() {
    [[ -n "$cluster_database" ]] || return 0
    psql -q "$TRIBUTARY_TEST_PG_URL" -c "DROP DATABASE IF EXISTS \"$cluster_database\" WITH (FORCE)" \
        >/dev/null 2>&1 || true
    cluster_database=""
}
