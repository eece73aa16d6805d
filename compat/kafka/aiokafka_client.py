"""aiokafka (asyncio, old non-flexible protocol versions) running the compat/kafka scenarios."""

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import scenarios

CLIENT = "aiokafka"


def main():
    args = scenarios.parse_args(CLIENT)
    first = scenarios.records(CLIENT, 0, scenarios.FIRST_BATCH)
    second = scenarios.records(CLIENT, scenarios.FIRST_BATCH, scenarios.SECOND_BATCH)
    loop = asyncio.new_event_loop()

    async def create():
        admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(args.topic, num_partitions=scenarios.PARTITIONS, replication_factor=1)],
                timeout_ms=15000,
            )
            errors = [topic for topic in response.topic_errors if topic[1] != 0]
            if errors:
                raise AssertionError(f"create_topics errors: {errors}")
            described = await admin.describe_topics([args.topic])
        finally:
            await admin.close()
        topic = described[0]
        if topic["error_code"] != 0 or len(topic["partitions"]) != scenarios.PARTITIONS:
            raise AssertionError(f"metadata after create: {topic}")
        return f"created, metadata shows {len(topic['partitions'])} partitions"

    async def produce(batch):
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            linger_ms=5,
        )
        await producer.start()
        try:
            sent = [await producer.send(args.topic, key=key, value=value) for key, value in batch]
            metadata = await asyncio.wait_for(asyncio.gather(*sent), timeout=30)
        finally:
            await producer.stop()
        partitions = len({m.partition for m in metadata})
        return f"{len(metadata)} acked on {partitions} partitions (idempotent, gzip)"

    async def consume(expected):
        consumer = AIOKafkaConsumer(
            args.topic,
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
        )
        await asyncio.wait_for(consumer.start(), timeout=20)
        try:
            collector = scenarios.Collector(len(expected))
            while collector.running():
                batches = await consumer.getmany(timeout_ms=500)
                collector.add((m.key, m.value) for msgs in batches.values() for m in msgs)
            seen = collector.seen
            detail = scenarios.compare(expected, seen)
            await consumer.commit()
        finally:
            await consumer.stop()
        return f"{detail}; committed"

    async def resume():
        await produce(second)
        return await consume(second)

    async def read_all(topic, isolation, expected):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation,
            fetch_max_wait_ms=200,
        )
        await asyncio.wait_for(consumer.start(), timeout=20)
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            collector = scenarios.Collector(len(expected))
            while collector.running():
                batches = await consumer.getmany(timeout_ms=500)
                collector.add((m.key, m.value) for msgs in batches.values() for m in msgs)
        finally:
            await consumer.stop()
        return scenarios.compare_ordered(expected, collector.seen, isolation)

    async def txn():
        topic = f"{args.topic}-txn"
        admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(topic, num_partitions=1, replication_factor=1)], timeout_ms=15000
            )
            errors = [t for t in response.topic_errors if t[1] != 0]
            if errors:
                raise AssertionError(f"create_topics errors: {errors}")
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap,
            transactional_id=f"{topic}-producer",
            enable_idempotence=True,
            linger_ms=5,
        )
        await producer.start()  # InitProducerId with the transactional id
        plan = scenarios.txn_plan(CLIENT)
        try:
            for batch, commit in plan:
                await producer.begin_transaction()
                sent = [
                    await producer.send(topic, key=key, value=value, partition=0)
                    for key, value in batch
                ]
                await asyncio.wait_for(asyncio.gather(*sent), timeout=30)
                if commit:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()
        committed, everything = scenarios.txn_expected(plan)
        return (
            "commit, abort, commit; "
            + await read_all(topic, "read_committed", committed)
            + ", "
            + await read_all(topic, "read_uncommitted", everything)
        )

    compact_topic = f"{args.topic}-compact"

    async def compact_create():
        """Creates the topic, checks its described cleanup.policy, produces the plan."""
        admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            response = await admin.create_topics(
                [
                    NewTopic(
                        compact_topic,
                        num_partitions=1,
                        replication_factor=1,
                        topic_configs=dict(scenarios.COMPACT_CONFIGS),
                    )
                ],
                timeout_ms=15000,
            )
            errors = [t for t in response.topic_errors if t[1] != 0]
            if errors:
                raise AssertionError(f"create_topics errors: {errors}")
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, compact_topic)]
            )
        finally:
            await admin.close()
        # resources: (error_code, error_message, type, name, [(name, value, ...)])
        policies = [
            entry[1]
            for response in responses
            for resource in response.resources
            if resource[0] == 0 and resource[3] == compact_topic
            for entry in resource[4]
            if entry[0] == "cleanup.policy"
        ]
        detail = scenarios.check_cleanup_policy(policies[0] if policies else None)
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            linger_ms=5,
        )
        await producer.start()
        rounds = scenarios.compact_plan(CLIENT)
        try:
            for batch in rounds:
                # Each round in a segment of its own: the next append rolls one older than
                # segment.ms.
                await asyncio.sleep(scenarios.COMPACT_SEGMENT_MS * 1.5 / 1000)
                sent = [
                    await producer.send(compact_topic, key=key, value=value, partition=0)
                    for key, value in batch
                ]
                await asyncio.wait_for(asyncio.gather(*sent), timeout=30)
        finally:
            await producer.stop()
        return detail, scenarios.compact_produced(rounds)

    async def compact_read():
        """The log from offset 0 up to the seal record: [(offset, key, value)]."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await asyncio.wait_for(consumer.start(), timeout=20)
        seen = []
        deadline = time.monotonic() + scenarios.COMPACT_READ_TIMEOUT_S
        try:
            partition = TopicPartition(compact_topic, 0)
            consumer.assign([partition])
            consumer.seek(partition, 0)
            while not seen or seen[-1][1] != scenarios.COMPACT_SEAL_KEY:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the seal record not read: {len(seen)} records")
                batches = await consumer.getmany(timeout_ms=500)
                seen.extend((m.offset, m.key, m.value) for msgs in batches.values() for m in msgs)
        finally:
            await consumer.stop()
        return seen

    def compact():
        detail, produced = loop.run_until_complete(compact_create())
        waited = scenarios.compact_wait(lambda: loop.run_until_complete(compact_read()), produced)
        return f"{detail}; {waited}"

    def blocking(coroutine_fn, *fn_args):
        return lambda: loop.run_until_complete(coroutine_fn(*fn_args))

    try:
        return scenarios.run(
            CLIENT,
            {
                "create": blocking(create),
                "produce": blocking(produce, first),
                "consume": blocking(consume, first),
                "resume": blocking(resume),
                "txn": blocking(txn),
                "compact": compact,
            },
        )
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
