"""aiokafka (asyncio, old non-flexible protocol versions) running the compat/kafka scenarios."""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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
            },
        )
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
