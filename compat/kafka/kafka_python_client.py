"""kafka-python 3.x (pure Python, newest protocol versions) running the compat/kafka scenarios."""

import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

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

    return scenarios.run(
        CLIENT,
        {
            "create": create,
            "produce": lambda: produce(first),
            "consume": lambda: consume(first),
            "resume": resume,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
