"""confluent-kafka (librdkafka, bundled in the wheel) running the compat/kafka scenarios.

With `--ssl-ca CA.pem` every connection is Kafka `SSL` (the broker's TLS port; CA verification
and host name checking on) and the results are reported as client `confluent-kafka-ssl`."""

import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

import scenarios

CLIENT = "confluent-kafka"


def main():
    args = scenarios.parse_args(
        CLIENT, lambda parser: parser.add_argument("--ssl-ca", help="PEM CA: connect with SSL")
    )
    client = CLIENT
    common = {"bootstrap.servers": args.bootstrap, "broker.address.family": "v4"}
    if args.ssl_ca:
        client = f"{CLIENT}-ssl"
        common.update(
            {
                "security.protocol": "SSL",
                "ssl.ca.location": args.ssl_ca,
                "ssl.endpoint.identification.algorithm": "https",
            }
        )
    first = scenarios.records(CLIENT, 0, scenarios.FIRST_BATCH)
    second = scenarios.records(CLIENT, scenarios.FIRST_BATCH, scenarios.SECOND_BATCH)

    def create():
        admin = AdminClient(common)
        futures = admin.create_topics(
            [NewTopic(args.topic, num_partitions=scenarios.PARTITIONS, replication_factor=1)],
            request_timeout=15,
        )
        futures[args.topic].result(timeout=20)
        topic = admin.list_topics(topic=args.topic, timeout=10).topics[args.topic]
        if topic.error is not None:
            raise AssertionError(f"metadata error for the new topic: {topic.error}")
        if len(topic.partitions) != scenarios.PARTITIONS:
            raise AssertionError(
                f"{len(topic.partitions)} partitions, expected {scenarios.PARTITIONS}"
            )
        return f"created, metadata shows {len(topic.partitions)} partitions"

    def produce(batch):
        producer = Producer(
            {
                **common,
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": 5,
                "message.timeout.ms": 20000,
            }
        )
        failures = []
        delivered = []

        def on_delivery(err, msg):
            (failures if err is not None else delivered).append(err or msg.partition())

        for key, value in batch:
            producer.produce(args.topic, key=key, value=value, on_delivery=on_delivery)
        left = producer.flush(30)
        if left or failures or len(delivered) != len(batch):
            raise AssertionError(
                f"{len(delivered)} delivered, {len(failures)} failed ({failures[:2]}), {left} unflushed"
            )
        return f"{len(delivered)} acked on {len(set(delivered))} partitions (idempotent, lz4)"

    def consume(expected):
        consumer = Consumer(
            {
                **common,
                "group.id": args.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 200,
                "session.timeout.ms": 10000,
            }
        )
        consumer.subscribe([args.topic])

        def poll_once():
            got = []
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                got.append((msg.key(), msg.value()))
            return got

        try:
            seen = scenarios.collect(poll_once, len(expected))
            detail = scenarios.compare(expected, seen)
            committed = consumer.commit(asynchronous=False)
            errors = [tp for tp in committed if tp.error is not None]
            if errors:
                raise AssertionError(f"commit errors: {errors}")
        finally:
            consumer.close()
        return f"{detail}; committed"

    def resume():
        produce(second)
        return consume(second)

    def txn():
        topic = f"{args.topic}-txn"
        admin = AdminClient(common)
        created = admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1)], request_timeout=15
        )
        created[topic].result(timeout=20)
        producer = Producer(
            {**common, "transactional.id": f"{topic}-producer", "linger.ms": 5}
        )
        producer.init_transactions(30)
        plan = scenarios.txn_plan(CLIENT)
        for batch, commit in plan:
            producer.begin_transaction()
            for key, value in batch:
                producer.produce(topic, key=key, value=value, partition=0)
            if commit:
                producer.commit_transaction(30)
            else:
                producer.flush(30)  # the records are in the log before the abort
                producer.abort_transaction(30)
        committed, everything = scenarios.txn_expected(plan)
        details = []
        for isolation, expected in (
            ("read_committed", committed),
            ("read_uncommitted", everything),
        ):
            consumer = Consumer(
                {
                    **common,
                    "group.id": f"{args.group}-txn-{isolation}",
                    "enable.auto.commit": False,
                    "isolation.level": isolation,
                    "fetch.wait.max.ms": 200,
                }
            )
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

            def poll_once(consumer=consumer):
                got = []
                for msg in consumer.consume(num_messages=100, timeout=0.5):
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                    got.append((msg.key(), msg.value()))
                return got

            try:
                seen = scenarios.collect(poll_once, len(expected))
            finally:
                consumer.close()
            details.append(scenarios.compare_ordered(expected, seen, isolation))
        return "commit, abort, commit; " + ", ".join(details)

    def kip848():
        topic = f"{args.topic}-kip848"
        group = f"{args.group}-kip848"
        partitions = scenarios.KIP848_PARTITIONS
        admin = AdminClient(common)
        admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)], request_timeout=15
        )[topic].result(timeout=20)
        producer = Producer({**common, "acks": "all", "linger.ms": 5})
        total = scenarios.KIP848_RECORDS
        expected = [(f"k-{i}".encode(), f"{CLIENT}-kip848-{i}".encode()) for i in range(total)]

        def produce_range(start, end):
            for key, value in expected[start:end]:
                producer.produce(topic, key=key, value=value, partition=int(key[2:]) % partitions)
            if producer.flush(30):
                raise AssertionError("records left unflushed")

        commit_errors = []

        def on_revoke(consumer, revoked):
            if revoked:
                try:
                    answer = consumer.commit(asynchronous=False)
                    commit_errors.extend(str(tp.error) for tp in answer if tp.error)
                except KafkaException as err:
                    if err.args[0].code() != KafkaError._NO_OFFSET:
                        commit_errors.append(str(err))

        def member(name):
            consumer = Consumer(
                {
                    **common,
                    "group.id": group,
                    "group.protocol": "consumer",
                    "client.id": name,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 100,
                }
            )
            consumer.subscribe([topic], on_revoke=on_revoke)
            return consumer

        seen = []
        reads = {}  # key -> [(member, partition, offset)], to explain a duplicate

        def poll_all(consumers, until, timeout_s=40):
            deadline = time.monotonic() + timeout_s
            while not until():
                if time.monotonic() > deadline:
                    sizes = [len(c.assignment()) for c in consumers]
                    raise AssertionError(f"timed out: {len(seen)} read, assignments {sizes}")
                for consumer in consumers:
                    msg = consumer.poll(0.05)
                    if msg is None:
                        continue
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                    seen.append((msg.key(), msg.value()))
                    reads.setdefault(msg.key(), []).append(
                        (consumer.memberid()[:8], msg.partition(), msg.offset())
                    )
                    try:
                        answer = consumer.commit(message=msg, asynchronous=False)
                        commit_errors.extend(str(tp.error) for tp in answer if tp.error)
                    except KafkaException as err:
                        commit_errors.append(str(err))

        a = member("a")
        produce_range(0, total // 4)
        poll_all([a], lambda: len(a.assignment()) == partitions and len(seen) >= total // 8)
        b, c = member("b"), member("c")
        produce_range(total // 4, total // 2)
        trio = [a, b, c]
        poll_all(trio, lambda: sorted(len(x.assignment()) for x in trio) == [4, 4, 4])
        described = admin.describe_consumer_groups([group], request_timeout=15)[group].result(
            timeout=20
        )
        group_type = getattr(described, "type", None)
        if group_type is not None and group_type != ConsumerGroupType.CONSUMER:
            raise AssertionError(f"described as a {group_type} group")
        if len(described.members) != 3:
            raise AssertionError(f"described {len(described.members)} members")
        owned = sorted(
            tp.partition for m in described.members for tp in m.assignment.topic_partitions
        )
        if owned != list(range(partitions)):
            raise AssertionError(f"described assignments cover {owned}")
        state = described.state
        a.close()
        produce_range(total // 2, total)
        pair = [b, c]
        poll_all(
            pair,
            lambda: sorted(len(x.assignment()) for x in pair) == [6, 6] and len(seen) >= total,
        )
        # Keep polling a while, so a record read twice would still show.
        quiet_end = time.monotonic() + scenarios.QUIET_AFTER_S
        poll_all(pair, lambda: time.monotonic() > quiet_end)
        b.close()
        c.close()
        if commit_errors:
            raise AssertionError(f"commits refused: {commit_errors[:3]}")
        doubled = {key.decode(): where for key, where in reads.items() if len(where) > 1}
        if doubled:
            raise AssertionError(f"{len(doubled)} read twice, e.g. {sorted(doubled.items())[:3]}")
        detail = scenarios.compare(expected, seen)
        return f"3 members 4/4/4 then 2 members 6/6; {detail}; described {state}, 3 members"

    def compact():
        topic = f"{args.topic}-compact"
        admin = AdminClient(common)
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=1,
                    config=dict(scenarios.COMPACT_CONFIGS),
                )
            ],
            request_timeout=15,
        )[topic].result(timeout=20)
        resource = ConfigResource(ResourceType.TOPIC, topic)
        described = admin.describe_configs([resource], request_timeout=15)[resource].result(
            timeout=20
        )
        policy = described.get("cleanup.policy")
        detail = scenarios.check_cleanup_policy(policy.value if policy else None)
        producer = Producer(
            {
                **common,
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",
                "linger.ms": 5,
                "message.timeout.ms": 20000,
            }
        )
        rounds = scenarios.compact_plan(CLIENT)
        for batch in rounds:
            # Each round in a segment of its own: the next append rolls one older than segment.ms.
            time.sleep(scenarios.COMPACT_SEGMENT_MS * 1.5 / 1000)
            for key, value in batch:
                producer.produce(topic, key=key, value=value, partition=0)
            if producer.flush(30):
                raise AssertionError("records left unflushed")
        produced = scenarios.compact_produced(rounds)

        def read_once():
            consumer = Consumer(
                {
                    **common,
                    "group.id": f"{args.group}-compact",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 100,
                }
            )
            consumer.assign([TopicPartition(topic, 0, 0)])
            seen = []
            deadline = time.monotonic() + scenarios.COMPACT_READ_TIMEOUT_S
            try:
                while not seen or seen[-1][1] != scenarios.COMPACT_SEAL_KEY:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"the seal record not read: {len(seen)} records")
                    for msg in consumer.consume(num_messages=100, timeout=0.5):
                        if msg.error() is not None:
                            raise KafkaException(msg.error())
                        seen.append((msg.offset(), msg.key(), msg.value()))
            finally:
                consumer.close()
            return seen

        return f"{detail}; {scenarios.compact_wait(read_once, produced)}"

    return scenarios.run(
        client,
        {
            "create": create,
            "produce": lambda: produce(first),
            "consume": lambda: consume(first),
            "resume": resume,
            "txn": txn,
            "kip848": kip848,
            "compact": compact,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
