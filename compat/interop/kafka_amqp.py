"""The Kafka (confluent-kafka) and AMQP (pika) sides of the interop runner: topic creation, the
writers of plan.py's messages, and readers that dump what they got as JSON for check.py.

  create-topics  every topic of plan.TOPICS (one partition, or plan.PARTITIONS) (Kafka admin)
  amqp-bind      the classic and the quorum queue of plan.FEED_QUEUES, bound with "#" to the
                 exchange of the feed topic (before anything is written to it)
  kafka-write    the Kafka source topic, the codec topics (plan.kafka_messages), the 4-partition
                 topic (record i into partition i % 4), the feed topic, and the AMQP routing keys
                 to the reference topic with librdkafka's murmur2 partitioner (the partition of
                 each key goes to sent-<reference topic>.json)
  amqp-write     the AMQP source topic via a topic exchange bound to its stream queue, and the
                 same messages to the exchange of the partitioned topic TOPICS["exchange"], with
                 publisher confirms (plan.amqp_messages); records each publish's time window
  kafka-read     every partition of each topic from the first offset
  amqp-read      a stream queue per topic (x-stream-offset=first, prefetch, manual acks), and
                 queues (--queues) consumed with manual acks

A refusal by the broker of something docs/interop.md promises (a bind to a topic's exchange, a
publish to it) is recorded in the output (`errors`) and fails the checks that need it; it is not
a client crash.

A reader stops when every topic has its expected count and nothing more came for QUIET_S, when
nothing came for STALL_S, or at its deadline; check.py judges what it got. Dumps hold bytes as
base64, so values and headers are compared byte for byte.
"""

import argparse
import json
import os
import sys
import time

import pika
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import plan

QUIET_S = 2.0  # keep reading this long after the expected count, so extras would show
STALL_S = 20.0  # give up when nothing arrived for this long (a reader that never gets a batch)
DEADLINE_S = 90.0


def dump(path, data):
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out)


def create_topics(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=plan.partitions(key), replication_factor=1)
         for key, topic in plan.TOPICS.items()],
        operation_timeout=30,
    )
    for topic, future in futures.items():
        future.result(timeout=30)  # raises on any failure, TOPIC_ALREADY_EXISTS included
    print(f"created {len(futures)} topics")


def produce(bootstrap, topic, messages, compression, partitions=1):
    """Produces (key, value, timestamp, headers) messages; with several partitions message i goes
    to partition i % partitions. Returns the partition of each message."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": compression,
        "linger.ms": 50,
        "enable.idempotence": True,
        "acks": "all",
    })
    errors = []
    placed = [None] * len(messages)

    def delivered(err, msg, i):
        if err is not None:
            errors.append(err)
        else:
            placed[i] = msg.partition()

    for i, (key, value, timestamp, headers) in enumerate(messages):
        extra = {"partition": i % partitions} if partitions > 1 else {}
        producer.produce(topic, value=value, key=key, timestamp=timestamp, headers=headers,
                         on_delivery=lambda err, msg, i=i: delivered(err, msg, i), **extra)
        producer.poll(0)
    left = producer.flush(30)
    if left or errors:
        raise RuntimeError(f"{topic}: {left} undelivered, errors {errors[:3]}")
    return placed


def reference_partitions(bootstrap, base_ms):
    """The partition librdkafka's murmur2 partitioner (Java-compatible) picks for each non-empty
    AMQP routing key, by producing the keys to the reference topic."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    keys = sorted({rk for rk, _, _ in plan.amqp_messages(base_ms // 1000) if rk})
    placed = {}

    def delivered(err, msg):
        if err is None:
            placed[msg.key().decode()] = msg.partition()

    for key in keys:
        producer.produce(plan.TOPICS["exchange-ref"], value=b"", key=key.encode(), on_delivery=delivered)
    producer.flush(30)
    if len(placed) != len(keys):
        raise RuntimeError(f"only {len(placed)} of {len(keys)} reference keys delivered")
    return placed


def kafka_write(args):
    produce(args.bootstrap, plan.TOPICS["kafka"], plan.kafka_messages(args.base_ms), "none")
    codec_messages = plan.kafka_messages(args.base_ms, nul_free=True)
    for codec in (*plan.CODECS, "mixed"):
        for compression, start, count in plan.codec_plan(codec):
            # One producer (and flush) a chunk, so chunks of the mixed topic are separate batches.
            produce(args.bootstrap, plan.TOPICS[codec], codec_messages[start:start + count], compression)
    for key in ("kafka-4p", "feed"):
        produce(args.bootstrap, plan.TOPICS[key], plan.kafka_messages(args.base_ms), "none",
                plan.partitions(key))
    dump(os.path.join(args.out, f"sent-{plan.TOPICS['exchange-ref']}.json"),
         {"partitions": reference_partitions(args.bootstrap, args.base_ms)})
    print(f"wrote {plan.COUNT} records to {1 + len(plan.CODECS) + 3} topics")


def amqp_bind(args):
    connection = amqp_connection(args.amqp_url)
    errors = []
    for name, arguments in plan.FEED_QUEUES.values():
        channel = connection.channel()
        try:
            channel.queue_declare(name, durable=True, arguments=arguments)
            channel.queue_bind(name, plan.TOPICS["feed"], routing_key="#")
        except pika.exceptions.AMQPError as err:
            errors.append(f"{name}: {err!r}")
    connection.close()
    dump(os.path.join(args.out, "sent-feed-bind.json"), {"errors": errors})
    print(f"bound {len(plan.FEED_QUEUES) - len(errors)} feed queues" +
          (f"; refused: {errors}" if errors else ""))


def amqp_connection(url):
    params = pika.URLParameters(url)
    params.heartbeat = 0
    params.blocked_connection_timeout = 60
    return pika.BlockingConnection(params)


def amqp_write(args):
    connection = amqp_connection(args.amqp_url)
    channel = connection.channel()
    topic = plan.TOPICS["amqp"]
    channel.queue_declare(topic, durable=True, arguments={"x-queue-type": "stream"})
    channel.exchange_declare(plan.AMQP_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_bind(topic, plan.AMQP_EXCHANGE, routing_key="#")
    channel.confirm_delivery()  # basic_publish raises when a publish is nacked or returned
    windows = publish(channel, plan.AMQP_EXCHANGE, args.base_s, mandatory=True)
    dump(os.path.join(args.out, f"sent-{topic}.json"), {"windows": windows})
    # Every topic is also an exchange: publishing to it appends to the topic (docs/interop.md).
    exchange_windows, errors = [], []
    channel = connection.channel()
    try:
        channel.confirm_delivery()
        exchange_windows = publish(channel, plan.TOPICS["exchange"], args.base_s, mandatory=False)
    except pika.exceptions.AMQPError as err:
        errors.append(repr(err))
    dump(os.path.join(args.out, f"sent-{plan.TOPICS['exchange']}.json"),
         {"windows": exchange_windows, "errors": errors})
    if connection.is_open:
        connection.close()
    print(f"published {len(windows)} messages with confirms, {len(exchange_windows)} to exchange "
          f"{plan.TOPICS['exchange']}" + (f"; refused: {errors}" if errors else ""))


def publish(channel, exchange, base_s, mandatory):
    """Publishes plan.amqp_messages; returns each publish's (before, after) time in ms."""
    windows = []
    for routing_key, body, properties in plan.amqp_messages(base_s):
        before = time.time_ns() // 1_000_000
        channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(**properties),
                              mandatory=mandatory)
        windows.append((before, time.time_ns() // 1_000_000))
    return windows


def kafka_read(args):
    expected = parse_expect(args.expect)
    got = {topic: [] for topic in expected}
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"interop-kafka-reader-{os.getpid()}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    consumer.assign([TopicPartition(topic, p, 0)  # offset 0: the first
                     for topic in expected for p in range(partitions_of(topic))])
    started = last_new = time.monotonic()
    done_at = None
    try:
        while not finished(started, last_new, done_at):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                ts_type, ts = msg.timestamp()
                got[msg.topic()].append({
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": plan_b64(msg.key()),
                    "value": plan_b64(msg.value()),
                    "timestamp": ts,
                    "timestamp_type": ts_type,
                    "headers": [[name, plan_b64(value)] for name, value in (msg.headers() or [])],
                })
                last_new = time.monotonic()
            elif msg is not None:
                print(f"consumer error: {msg.error()}", file=sys.stderr)
            done_at = complete(got, expected, done_at)
    except KafkaException as err:
        print(f"consumer failed: {err}", file=sys.stderr)
    finally:
        consumer.close()
        for topic, messages in got.items():  # what came before any failure still counts
            dump(os.path.join(args.out, f"recv-kafka-{topic}.json"), messages)
        print(" ".join(f"{topic}={len(messages)}" for topic, messages in got.items()))


def partitions_of(topic):
    return next((plan.partitions(k) for k, t in plan.TOPICS.items() if t == topic), 1)


def amqp_read(args):
    expected = parse_expect(args.expect)
    queues = parse_expect(args.queues)
    expected.update(queues)
    got = {topic: [] for topic in expected}
    connection = amqp_connection(args.amqp_url)
    try:
        read_streams(connection, expected, set(queues), got)
    finally:
        for topic, messages in got.items():  # what came before any failure still counts
            dump(os.path.join(args.out, f"recv-amqp-{topic}.json"), messages)
        print(" ".join(f"{topic}={len(messages)}" for topic, messages in got.items()))


def read_streams(connection, expected, queues, got):
    """Consumes the streams and `queues` of `expected` (a queue's messages are dumped as a topic's)."""
    for topic in expected:
        channel = connection.channel()
        try:
            if topic in queues:  # declared by amqp-bind
                channel.queue_declare(topic, passive=True)
            else:
                channel.queue_declare(topic, durable=True, arguments={"x-queue-type": "stream"})
        except pika.exceptions.AMQPError as err:  # the others are still read
            print(f"declaring {topic} failed: {err!r}", file=sys.stderr)
            continue
        channel.basic_qos(prefetch_count=50)

        def on_message(ch, method, properties, body, topic=topic):
            got[topic].append({
                "exchange": method.exchange,
                "routing_key": method.routing_key,
                "body": plan.b64(body),
                "timestamp": properties.timestamp,
                "headers": None if properties.headers is None else
                [[name, amqp_value(value)] for name, value in properties.headers.items()],
                "other_properties": sorted(
                    name for name in ("content_type", "content_encoding", "delivery_mode",
                                      "priority", "correlation_id", "reply_to", "expiration",
                                      "message_id", "type", "user_id", "app_id", "cluster_id")
                    if getattr(properties, name) is not None),
            })
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(topic, on_message,
                              arguments=None if topic in queues else {"x-stream-offset": "first"})
    started = last_new = time.monotonic()
    done_at = None
    seen = 0
    try:
        while not finished(started, last_new, done_at):
            connection.process_data_events(time_limit=0.2)
            total = sum(len(m) for m in got.values())
            if total != seen:
                seen, last_new = total, time.monotonic()
            done_at = complete(got, expected, done_at)
    except pika.exceptions.AMQPError as err:
        print(f"AMQP reader failed: {err!r}", file=sys.stderr)
    finally:
        try:
            connection.close()
        except pika.exceptions.AMQPError:
            pass


def amqp_value(value):
    """A decoded AMQP field value as JSON: {"s": text} for a long string, {"b": base64} for bytes
    (pika returns a long string that is not UTF-8 as bytes), null, or a list of those."""
    if isinstance(value, str):
        return {"s": value}
    if isinstance(value, bytes):
        return {"b": plan.b64(value)}
    if value is None:
        return None
    if isinstance(value, list):
        return [amqp_value(v) for v in value]
    return {"other": repr(value)}


def plan_b64(data):
    return None if data is None else plan.b64(data)


def parse_expect(items):
    return {item.split("=")[0]: int(item.split("=")[1]) for item in items}


def complete(got, expected, done_at):
    if done_at is None and all(len(got[t]) >= n for t, n in expected.items()):
        return time.monotonic()
    return done_at


def finished(started, last_new, done_at):
    now = time.monotonic()
    return ((done_at is not None and now - done_at >= QUIET_S) or now - last_new >= STALL_S
            or now - started >= DEADLINE_S)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("create-topics", "amqp-bind", "kafka-write",
                                            "amqp-write", "kafka-read", "amqp-read"))
    parser.add_argument("--bootstrap")
    parser.add_argument("--amqp-url")
    parser.add_argument("--base-ms", type=int)
    parser.add_argument("--out")
    parser.add_argument("--expect", nargs="*", default=[], help="topic=count to read")
    parser.add_argument("--queues", nargs="*", default=[], help="queue=count to read (AMQP)")
    args = parser.parse_args()
    if args.base_ms is not None:
        args.base_s = args.base_ms // 1000
    {
        "create-topics": create_topics,
        "amqp-bind": amqp_bind,
        "kafka-write": kafka_write,
        "amqp-write": amqp_write,
        "kafka-read": kafka_read,
        "amqp-read": amqp_read,
    }[args.command](args)


if __name__ == "__main__":
    main()
