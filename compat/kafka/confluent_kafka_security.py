"""confluent-kafka (librdkafka) against Tributary's security features (./run's security table).

Two brokers, each started by ./run, get a subset of these scenarios (`--scenarios`), in order;
each prints `RESULT confluent-kafka <scenario> PASS|FAIL <detail>`, and a scenario after a failed
one is reported FAIL ("skipped: ..."). Every connection verifies the broker's certificate against
`--ca` with host name checking (the certificate names 127.0.0.1). The four-scenario plan over
`SSL` is confluent_kafka_client.py with `--ssl-ca` (row confluent-kafka-ssl of the main table).

On a broker with `kafka.tls_port` and no SASL (Kafka's `SSL`):
  plaintext-on-tls  a PLAINTEXT client on the TLS port gets no metadata (a transport error or a
                    timeout, within seconds); an SSL client still gets it afterwards

On a broker with `kafka.sasl_enabled`, `kafka.authorizer` and super user `admin` (`SASL_SSL`):
  acl-admin         `admin` creates the topic and ACLs (alice: WRITE+READ on the topic, READ on
                    her group; mallory: DESCRIBE on the topic and on his group only), and
                    DescribeAcls returns exactly those bindings
  sasl-ssl          alice (SCRAM-SHA-512) produces and consumes with her group over TLS
  acl-denied        mallory (SCRAM-SHA-512) is refused, each error asserted by name: produce
                    TOPIC_AUTHORIZATION_FAILED, fetch TOPIC_AUTHORIZATION_FAILED, group join
                    GROUP_AUTHORIZATION_FAILED, CreateTopics TOPIC_AUTHORIZATION_FAILED
  acl-delete        `admin` deletes alice's ACLs (3 bindings gone, DescribeAcls shows none);
                    alice's next produce is refused TOPIC_AUTHORIZATION_FAILED
"""

import argparse
import sys
import time
import traceback

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

import scenarios

CLIENT = "confluent-kafka"
RECORDS = 20
# How long a refused client may take to report its refusal.
REFUSAL_TIMEOUT_S = 15.0


def parse_args():
    parser = argparse.ArgumentParser(description=f"{CLIENT} security scenarios")
    parser.add_argument("--bootstrap", required=True, help="host:port of the TLS listener")
    parser.add_argument("--ca", required=True, help="PEM of the CA that signed the broker")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--scenarios", required=True, help="space-separated, run in order")
    parser.add_argument("--password", action="append", default=[], help="user=password")
    return parser.parse_args()


def main():
    args = parse_args()
    passwords = dict(entry.split("=", 1) for entry in args.password)
    alice_group = f"{args.group}-alice"
    mallory_group = f"{args.group}-mallory"

    def config(user=None, protocol=None):
        common = {
            "bootstrap.servers": args.bootstrap,
            "broker.address.family": "v4",
            "security.protocol": protocol or ("SASL_SSL" if user else "SSL"),
            "ssl.ca.location": args.ca,
            # librdkafka's default; stated because the scenario depends on it.
            "ssl.endpoint.identification.algorithm": "https",
        }
        if user is not None:
            common.update(
                {
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": user,
                    "sasl.password": passwords[user],
                }
            )
        return common

    def produce(conf, count, idempotent=True):
        """Produces `count` records; returns (delivered partitions, delivery errors)."""
        producer = Producer(
            {
                **conf,
                "acks": "all",
                "enable.idempotence": idempotent,
                "linger.ms": 5,
                "message.timeout.ms": int(REFUSAL_TIMEOUT_S * 1000),
            }
        )
        delivered, errors = [], []

        def on_delivery(err, msg):
            (errors if err is not None else delivered).append(err or msg.partition())

        for key, value in scenarios.records(CLIENT, 0, count):
            producer.produce(args.topic, key=key, value=value, on_delivery=on_delivery)
        left = producer.flush(REFUSAL_TIMEOUT_S + 5)
        if left:
            raise AssertionError(f"{left} records neither delivered nor failed")
        return delivered, errors

    def round_trip(conf, group):
        delivered, errors = produce(conf, RECORDS)
        if errors or len(delivered) != RECORDS:
            raise AssertionError(f"{len(delivered)} delivered, errors {errors[:2]}")
        consumer = Consumer(
            {
                **conf,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 200,
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
            seen = scenarios.collect(poll_once, RECORDS)
            detail = scenarios.compare(scenarios.records(CLIENT, 0, RECORDS), seen)
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        return f"{RECORDS} acked; {detail}; committed"

    def plaintext_on_tls():
        admin = AdminClient({**config(protocol="PLAINTEXT"), "socket.timeout.ms": 3000})
        started = time.monotonic()
        try:
            admin.list_topics(timeout=3)
        except KafkaException as err:
            refused = f"{err.args[0].name()} after {time.monotonic() - started:.1f}s"
        else:
            raise AssertionError("a PLAINTEXT client got metadata from the TLS port")
        topics = AdminClient(config()).list_topics(timeout=10).topics
        return f"PLAINTEXT refused ({refused}); SSL still served ({len(topics)} topics)"

    def bindings(principal, resource_type, name, operation):
        return AclBinding(
            resource_type,
            name,
            ResourcePatternType.LITERAL,
            principal,
            "*",
            operation,
            AclPermissionType.ALLOW,
        )

    def wanted_acls():
        return [
            bindings("User:alice", ResourceType.TOPIC, args.topic, AclOperation.WRITE),
            bindings("User:alice", ResourceType.TOPIC, args.topic, AclOperation.READ),
            bindings("User:alice", ResourceType.GROUP, alice_group, AclOperation.READ),
            bindings("User:mallory", ResourceType.TOPIC, args.topic, AclOperation.DESCRIBE),
            bindings("User:mallory", ResourceType.GROUP, mallory_group, AclOperation.DESCRIBE),
        ]

    def described(admin, principal):
        query = AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            principal,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        return set(admin.describe_acls(query, request_timeout=10).result(timeout=15))

    def acl_admin():
        admin = AdminClient(config("admin"))
        admin.create_topics(
            [NewTopic(args.topic, num_partitions=1, replication_factor=1)], request_timeout=10
        )[args.topic].result(timeout=15)
        wanted = wanted_acls()
        for future in admin.create_acls(wanted, request_timeout=10).values():
            future.result(timeout=15)
        seen = described(admin, "User:alice") | described(admin, "User:mallory")
        if seen != set(wanted):
            raise AssertionError(f"DescribeAcls gave {sorted(map(str, seen))}")
        return f"topic created, {len(wanted)} ACLs created and described back"

    def sasl_ssl():
        return "alice over SASL_SSL/SCRAM-SHA-512: " + round_trip(config("alice"), alice_group)

    def refusal(what, expected, action):
        """Runs `action()`, which returns the KafkaError it saw (or None); checks its name."""
        err = action()
        name = err.name() if err is not None else "no error"
        if name != expected:
            raise AssertionError(f"{what}: expected {expected}, got {name} ({err})")
        return f"{what} {name}"

    def produce_error(conf):
        delivered, errors = produce(conf, 3, idempotent=False)
        if delivered:
            raise AssertionError(f"{len(delivered)} records delivered")
        return errors[0] if errors else None

    def consumer_error(conf, group, start):
        consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
        try:
            start(consumer)
            deadline = time.monotonic() + REFUSAL_TIMEOUT_S
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is None:
                    raise AssertionError(f"a record was served at offset {msg.offset()}")
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    return msg.error()
            return None
        finally:
            consumer.close()

    def create_error(conf):
        admin = AdminClient(conf)
        topic = f"{args.topic}-by-mallory"
        future = admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1)], request_timeout=10
        )[topic]
        try:
            future.result(timeout=15)
        except KafkaException as err:
            return err.args[0]
        return None

    def acl_denied():
        conf = config("mallory")
        return "; ".join(
            [
                refusal("produce", "TOPIC_AUTHORIZATION_FAILED", lambda: produce_error(conf)),
                refusal(
                    "fetch",
                    "TOPIC_AUTHORIZATION_FAILED",
                    lambda: consumer_error(
                        conf,
                        mallory_group,
                        lambda c: c.assign(
                            [TopicPartition(args.topic, 0, 0)]  # explicit offset: Fetch only
                        ),
                    ),
                ),
                refusal(
                    "group join",
                    "GROUP_AUTHORIZATION_FAILED",
                    lambda: consumer_error(
                        conf, mallory_group, lambda c: c.subscribe([args.topic])
                    ),
                ),
                refusal("create topic", "TOPIC_AUTHORIZATION_FAILED", lambda: create_error(conf)),
            ]
        )

    def acl_delete():
        admin = AdminClient(config("admin"))
        query = AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            "User:alice",
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        deleted = admin.delete_acls([query], request_timeout=10)[query].result(timeout=15)
        if len(deleted) != 3:
            raise AssertionError(f"{len(deleted)} bindings deleted, expected alice's 3")
        left = described(admin, "User:alice")
        if left:
            raise AssertionError(f"still described: {sorted(map(str, left))}")
        refused = refusal(
            "alice's produce", "TOPIC_AUTHORIZATION_FAILED", lambda: produce_error(config("alice"))
        )
        return f"3 deleted, none described; {refused}"

    steps = {
        "plaintext-on-tls": plaintext_on_tls,
        "acl-admin": acl_admin,
        "sasl-ssl": sasl_ssl,
        "acl-denied": acl_denied,
        "acl-delete": acl_delete,
    }
    failed = None
    for name in args.scenarios.split():
        if failed is not None:
            scenarios.report(CLIENT, name, False, f"skipped: {failed} failed")
            continue
        started = time.monotonic()
        try:
            detail = steps[name]()
            scenarios.report(CLIENT, name, True, f"{detail} ({time.monotonic() - started:.1f}s)")
        except Exception as err:  # noqa: BLE001 -- any client error fails the scenario, reported
            traceback.print_exc(file=sys.stderr)
            scenarios.report(CLIENT, name, False, f"{type(err).__name__}: {err}"[:300])
            failed = name
    return 0 if failed is None else 1


if __name__ == "__main__":
    sys.exit(main())
