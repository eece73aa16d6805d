"""Shared scenario plan for the Python Kafka clients of compat/kafka.

Every client script runs the same scenarios against one broker, in order, and prints one
`RESULT <client> <scenario> PASS|FAIL <detail>` line per scenario for ./run to tabulate:

  create   make the topic (admin API) and see it in metadata with PARTITIONS partitions
  produce  produce FIRST_BATCH keyed records, every delivery acknowledged
  consume  a group consumer reads exactly those records, then commits and closes
  resume   produce SECOND_BATCH more; a new consumer in the same group reads exactly the new ones
  txn      on a topic of its own (one partition): a transactional producer commits one
           transaction, aborts one and commits one more (TXN_PLAN); a read_committed consumer
           reads exactly the committed records in order, a read_uncommitted one all of them in
           order (the markers skipped). Clients without transactions report it `n/a`, and so
           does every client when COMPAT_KAFKA_TRANSACTIONS=0 (the runner's cluster mode: the
           cloud engine refuses transactions).
  kip848   on a topic of its own (KIP848_PARTITIONS partitions): three consumers with
           `group.protocol=consumer` (KIP-848, server-side assignment) join one by one and one
           leaves while KIP848_RECORDS records are produced, each committing synchronously
           after every record; together they read every record exactly once, and the admin
           client's describe (ConsumerGroupDescribe) shows a consumer group with its members
           and their assignments. Clients without KIP-848 (kafka-python, aiokafka, kafkajs,
           Debian's kcat) report it `n/a`.
  compact  on a topic of its own (one partition) created with COMPACT_CONFIGS
           (cleanup.policy=compact): the admin API describes cleanup.policy=compact; the
           compact_plan() rounds are produced one segment each (a pause longer than segment.ms
           before each), the last round, the seal record, rolling the one before; reads from
           offset 0 up to the seal repeat until the log is exactly the latest record per key
           (the tombstones stay: delete.retention.ms is a day) at its original offset, and
           every read on the way must be a valid log: offsets ascending, each record one that
           was produced at that offset, the latest record of every key there.
           Clients without an admin API that sets topic configs (kcat) report it `n/a`, and so
           does every client when COMPAT_KAFKA_COMPACTION=0 (cluster mode: the cloud engine
           refuses compaction settings).

A scenario of the chain create..resume whose predecessor failed is reported FAIL ("skipped:
...") rather than run, since it would only repeat the first failure, and so are the others after
a failure in that chain; txn, kip848 and compact work on topics of their own, so a failure of one
of them does not skip the next. Every wait is bounded by a deadline.
"""

import argparse
import os
import sys
import time
import traceback

PARTITIONS = 3
FIRST_BATCH = 60
SECOND_BATCH = 25
# How long a consumer waits for its expected records, and how long it keeps polling after
# having them all, so that duplicates or re-read records would still be seen.
CONSUME_TIMEOUT_S = 40.0
QUIET_AFTER_S = 2.0
SCENARIOS = ("create", "produce", "consume", "resume", "txn", "kip848", "compact")
# Scenarios on topics of their own: a failure of one does not skip those after it.
INDEPENDENT = ("txn", "kip848", "compact")
KIP848_PARTITIONS = 12
KIP848_RECORDS = 240
# The txn scenario's transactions, in order: (name, record count, committed).
TXN_PLAN = (("committed-a", 5, True), ("aborted", 3, False), ("committed-b", 4, True))
# The compact scenario: a tiny dirty ratio and segment.ms, so that the broker's cleaner (every
# 500 ms under ./run) cleans each round's segment as soon as the next append rolls it.
COMPACT_SEGMENT_MS = 100
COMPACT_CONFIGS = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.01",
    "segment.ms": str(COMPACT_SEGMENT_MS),
}
COMPACT_KEYS = 10
COMPACT_ROUNDS = 4
COMPACT_TOMBSTONES = (3, 7)  # key numbers whose last record is a tombstone
COMPACT_SEAL_KEY = b"seal"
# How long the reads from offset 0 may wait for the cleaned log, and how long one read may take.
COMPACT_TIMEOUT_S = 40.0
COMPACT_READ_TIMEOUT_S = 15.0


def transactions_enabled():
    """False when the runner says the brokers refuse transactions (cluster mode)."""
    return os.environ.get("COMPAT_KAFKA_TRANSACTIONS", "1") != "0"


def compaction_enabled():
    """False when the runner says the brokers refuse compaction settings (cluster mode)."""
    return os.environ.get("COMPAT_KAFKA_COMPACTION", "1") != "0"


def compact_plan(client):
    """The compact scenario's rounds, each a list of (key, value or None for a tombstone), to
    be produced one round per segment; the last round is the seal record, alone."""
    rounds = [
        [
            (f"ck-{key}".encode(), f"{client}-round{r}-ck-{key}".encode())
            for key in range(COMPACT_KEYS)
        ]
        for r in range(COMPACT_ROUNDS)
    ]
    rounds.append([(f"ck-{key}".encode(), None) for key in COMPACT_TOMBSTONES])
    rounds.append([(COMPACT_SEAL_KEY, f"{client}-seal".encode())])
    return rounds


def compact_produced(rounds):
    """[(offset, key, value)] as the plan lands on a fresh one-partition topic."""
    return [
        (offset, key, value)
        for offset, (key, value) in enumerate(record for batch in rounds for record in batch)
    ]


def compact_expected(produced):
    """The cleaned log: the latest record of each key (tombstones too), in offset order."""
    last = {key: offset for offset, key, _ in produced}
    return [record for record in produced if last[record[1]] == record[0]]


def compact_check(produced, seen):
    """True when `seen` (offset, key, value from offset 0 to the seal) is the cleaned log.
    Raises when it is not a valid log at all, cleaned or not, which waiting would not mend:
    offsets not ascending, a record that was not produced at that offset (changed), or the
    latest record of a key missing (the cleaner never removes it)."""
    offsets = [offset for offset, _, _ in seen]
    if any(a >= b for a, b in zip(offsets, offsets[1:])):
        raise AssertionError(f"offsets not ascending: {offsets}")
    strangers = sorted(set(seen) - set(produced), key=lambda record: record[0])
    if strangers:
        raise AssertionError(f"records not produced at those offsets: {strangers[:3]}")
    expected = compact_expected(produced)
    lost = [record for record in expected if record not in set(seen)]
    if lost:
        raise AssertionError(f"latest records lost: {lost[:3]}")
    return seen == expected


def compact_wait(read_once, produced):
    """Calls `read_once()` (the log from offset 0 up to the seal record, as a list of
    (offset, key, value)) until compact_check() holds or COMPACT_TIMEOUT_S passes; returns the
    detail of the cleaned log."""
    deadline = time.monotonic() + COMPACT_TIMEOUT_S
    reads = 0
    while True:
        seen = read_once()
        reads += 1
        if compact_check(produced, seen):
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not compacted within {COMPACT_TIMEOUT_S:.0f}s ({reads} reads): "
                f"{len(seen)} of {len(produced)} records left, "
                f"{len(compact_expected(produced))} expected"
            )
        time.sleep(0.5)
    tombstones = sum(1 for _, _, value in seen if value is None)
    return (
        f"{len(produced)} produced, the cleaner removed {len(produced) - len(seen)}: "
        f"{len(seen)} left at their offsets ({tombstones} tombstones), "
        f"read {reads} time{'s' if reads != 1 else ''}"
    )


def check_cleanup_policy(policy):
    """Raises unless the described cleanup.policy is `compact`."""
    if policy != "compact":
        raise AssertionError(f"described cleanup.policy {policy!r}, expected 'compact'")
    return "described cleanup.policy=compact"


def txn_plan(client):
    """TXN_PLAN with each transaction's (key, value) records: [(records, committed)]."""
    return [
        (
            [(f"{name}-{i}".encode(), f"{client}-{name}-{i}".encode()) for i in range(count)],
            committed,
        )
        for name, count, committed in TXN_PLAN
    ]


def txn_expected(plan):
    """(what read_committed must read, what read_uncommitted must read), both in order."""
    committed = [record for batch, ok in plan if ok for record in batch]
    everything = [record for batch, _ in plan for record in batch]
    return committed, everything


def compare_ordered(expected, seen, isolation):
    """Raises unless `seen` is exactly `expected`, in order."""
    if seen != expected:
        raise AssertionError(
            f"{isolation}: expected {len(expected)} records in order, got {len(seen)}: "
            f"{[k.decode() for k, _ in seen][:14]}"
        )
    return f"{isolation} {len(seen)}"


def records(client, start, count):
    """The keyed records of one batch: (key, value) byte pairs that name their client and index."""
    return [
        (f"key-{i}".encode(), f"{client}-value-{i}".encode()) for i in range(start, start + count)
    ]


def parse_args(client, configure=None):
    """The common command line (--bootstrap, --topic, --group); `configure(parser)` may add more."""
    parser = argparse.ArgumentParser(description=f"{client} scenarios against Tributary")
    parser.add_argument("--bootstrap", required=True, help="host:port of the Kafka listener")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    if configure is not None:
        configure(parser)
    return parser.parse_args()


def compare(expected, seen):
    """Raises unless `seen` holds exactly the records of `expected`, each once."""
    expected_set = set(expected)
    seen_set = set(seen)
    duplicates = len(seen) - len(seen_set)
    missing = expected_set - seen_set
    unexpected = seen_set - expected_set
    if duplicates or missing or unexpected:
        raise AssertionError(
            f"expected {len(expected)} records, got {len(seen)}: "
            f"{len(missing)} missing (e.g. {sorted(missing)[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:2]}), "
            f"{duplicates} duplicates"
        )
    return f"{len(seen)} records, keys and values match"


class Collector:
    """Gathers polled records until `expected_count` arrived and QUIET_AFTER_S more passed, or
    until the deadline; `seen` then holds everything that arrived."""

    def __init__(self, expected_count, timeout_s=CONSUME_TIMEOUT_S):
        self.expected_count = expected_count
        self.deadline = time.monotonic() + timeout_s
        self.complete_at = None
        self.seen = []

    def running(self):
        now = time.monotonic()
        if self.complete_at is not None and now - self.complete_at >= QUIET_AFTER_S:
            return False
        return now < self.deadline

    def add(self, got):
        self.seen.extend(got)
        if self.complete_at is None and len(self.seen) >= self.expected_count:
            self.complete_at = time.monotonic()


def collect(poll_once, expected_count):
    """Calls `poll_once()` (returns a list of (key, value)) while a Collector runs."""
    collector = Collector(expected_count)
    while collector.running():
        collector.add(poll_once())
    return collector.seen


def run(client, steps):
    """Runs the scenario functions in `steps` (name -> callable returning a detail string) in
    order, printing a RESULT line for each; returns the process exit code."""
    failed = None
    independent_failed = False
    for name in SCENARIOS:
        if (
            steps.get(name) is None
            or (name == "txn" and not transactions_enabled())
            or (name == "compact" and not compaction_enabled())
        ):
            report(client, name, None, "not supported by this client or broker setup")
            continue
        if failed is not None:
            report(client, name, False, f"skipped: {failed} failed")
            continue
        started = time.monotonic()
        try:
            detail = steps[name]()
            report(client, name, True, f"{detail} ({time.monotonic() - started:.1f}s)")
        except Exception as err:  # noqa: BLE001 -- any client error fails the scenario, reported
            traceback.print_exc(file=sys.stderr)
            report(client, name, False, f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
            if name not in INDEPENDENT:
                failed = name
            else:
                independent_failed = True
    return 0 if failed is None and not independent_failed else 1


def report(client, scenario, passed, detail):
    """`passed` None: the scenario does not apply (`n/a`, neither a pass nor a failure)."""
    verdict = "n/a" if passed is None else "PASS" if passed else "FAIL"
    print(f"RESULT {client} {scenario} {verdict} {detail}", flush=True)
