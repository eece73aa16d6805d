"""kafka-python 3.x (pure Python, newest protocol versions) running the compat/kafka scenarios.

Its txn scenario also asks the admin client's DescribeTransactions and ListTransactions (KIP-664)
about the transactional id: Ongoing with its partition while the first transaction is open,
CompleteCommit after the last."""

import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

import scenarios

CLIENT = "kafka-python"


def main():
    args = scenarios.parse_args(CLIENT)
    first = scenarios.records(CLIENT, 0, scenarios.FIRST_BATCH)
    second = scenarios.records(CLIENT, scenarios.FIRST_BATCH, scenarios.SECOND_BATCH)

    def create():
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
        try:
            # raise_errors (the default) turns a topic error code into an exception.
            admin.create_topics(
                {args.topic: {"num_partitions": scenarios.PARTITIONS, "replication_factor": 1}},
                timeout_ms=15000,
            )
            described = admin.describe_topics([args.topic])
        finally:
            admin.close()
        partitions = described[0]["partitions"]
        if described[0]["error_code"] != 0 or len(partitions) != scenarios.PARTITIONS:
            raise AssertionError(f"metadata after create: {described[0]}")
        return f"created, metadata shows {len(partitions)} partitions"

    def produce(batch):
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            linger_ms=5,
        )
        try:
            futures = [producer.send(args.topic, key=key, value=value) for key, value in batch]
            producer.flush(timeout=30)
            partitions = {future.get(timeout=30).partition for future in futures}
        finally:
            producer.close(timeout=10)
        return f"{len(futures)} acked on {len(partitions)} partitions (idempotent, gzip)"

    def consume(expected):
        consumer = KafkaConsumer(
            args.topic,
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
        )

        def poll_once():
            batches = consumer.poll(timeout_ms=500)
            return [(m.key, m.value) for messages in batches.values() for m in messages]

        try:
            seen = scenarios.collect(poll_once, len(expected))
            detail = scenarios.compare(expected, seen)
            consumer.commit()
        finally:
            consumer.close(autocommit=False)
        return f"{detail}; committed"

    def resume():
        produce(second)
        return consume(second)

    def read_all(topic, isolation, expected):
        consumer = KafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation,
            fetch_max_wait_ms=200,
        )
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()

        def poll_once():
            batches = consumer.poll(timeout_ms=500)
            return [(m.key, m.value) for messages in batches.values() for m in messages]

        try:
            seen = scenarios.collect(poll_once, len(expected))
        finally:
            consumer.close(autocommit=False)
        return scenarios.compare_ordered(expected, seen, isolation)

    def txn():
        topic = f"{args.topic}-txn"
        transactional_id = f"{topic}-producer"
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
        try:
            admin.create_topics(
                {topic: {"num_partitions": 1, "replication_factor": 1}}, timeout_ms=15000
            )
            producer = KafkaProducer(
                bootstrap_servers=args.bootstrap,
                transactional_id=transactional_id,
                enable_idempotence=True,
                linger_ms=5,
            )
            states = []
            try:
                producer.init_transactions()
                plan = scenarios.txn_plan(CLIENT)
                for batch, commit in plan:
                    producer.begin_transaction()
                    for key, value in batch:
                        producer.send(topic, key=key, value=value, partition=0)
                    producer.flush(timeout=30)
                    if not states:
                        described = admin.describe_transactions([transactional_id])
                        ongoing = described[transactional_id]
                        if ongoing.topic_partitions != {TopicPartition(topic, 0)}:
                            raise AssertionError(f"open transaction described as {ongoing}")
                        states.append(ongoing.state.value)
                    if commit:
                        producer.commit_transaction()
                    else:
                        producer.abort_transaction()
            finally:
                producer.close(timeout=10)
            described = admin.describe_transactions([transactional_id])
            states.append(described[transactional_id].state.value)
            listed = [
                (listing.transactional_id, listing.state.value)
                for listings in admin.list_transactions().values()
                for listing in listings
            ]
            if (transactional_id, "CompleteCommit") not in listed:
                raise AssertionError(f"ListTransactions: {listed}")
            still_open = [
                listing
                for listings in admin.list_transactions(state_filters=["Ongoing"]).values()
                for listing in listings
                if listing.transactional_id == transactional_id
            ]
            if still_open:
                raise AssertionError(f"listed Ongoing after the last commit: {still_open}")
        finally:
            admin.close()
        if states != ["Ongoing", "CompleteCommit"]:
            raise AssertionError(f"DescribeTransactions states: {states}")
        committed, everything = scenarios.txn_expected(plan)
        return (
            "commit, abort, commit; described Ongoing then CompleteCommit, listed; "
            + read_all(topic, "read_committed", committed)
            + ", "
            + read_all(topic, "read_uncommitted", everything)
        )

    def compact():
        topic = f"{args.topic}-compact"
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
        try:
            admin.create_topics(
                {
                    topic: {
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "configs": dict(scenarios.COMPACT_CONFIGS),
                    }
                },
                timeout_ms=15000,
            )
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            admin.close()
        policy = described.get("topic", {}).get(topic, {}).get("cleanup.policy", {})
        detail = scenarios.check_cleanup_policy(policy.get("value"))
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            linger_ms=5,
        )
        rounds = scenarios.compact_plan(CLIENT)
        try:
            for batch in rounds:
                # Each round in a segment of its own: the next append rolls one older than
                # segment.ms.
                time.sleep(scenarios.COMPACT_SEGMENT_MS * 1.5 / 1000)
                futures = [
                    producer.send(topic, key=key, value=value, partition=0) for key, value in batch
                ]
                producer.flush(timeout=30)
                for future in futures:
                    future.get(timeout=30)
        finally:
            producer.close(timeout=10)
        produced = scenarios.compact_produced(rounds)

        def read_once():
            consumer = KafkaConsumer(
                bootstrap_servers=args.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=100,
            )
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek(partition, 0)
            seen = []
            deadline = time.monotonic() + scenarios.COMPACT_READ_TIMEOUT_S
            try:
                while not seen or seen[-1][1] != scenarios.COMPACT_SEAL_KEY:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"the seal record not read: {len(seen)} records")
                    for messages in consumer.poll(timeout_ms=500).values():
                        seen.extend((m.offset, m.key, m.value) for m in messages)
            finally:
                consumer.close(autocommit=False)
            return seen

        return f"{detail}; {scenarios.compact_wait(read_once, produced)}"

    return scenarios.run(
        CLIENT,
        {
            "create": create,
            "produce": lambda: produce(first),
            "consume": lambda: consume(first),
            "resume": resume,
            "txn": txn,
            "compact": compact,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
