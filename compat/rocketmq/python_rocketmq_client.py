"""Python `rocketmq` 0.4.4 (ctypes over the bundled C++ client 1.2.x) running the compat/rocketmq
scenarios against Tributary.

The plan (the same in node/ali_ons_client.js), one RESULT line per scenario for ./run:

  send     sync-send FIRST_BATCH messages with tags cycling TagA/TagB/TagC and keys; every send
           result is SEND_OK with a distinct message id
  consume  a push consumer of GROUP subscribed to "TagA || TagC" receives exactly the matching
           messages (tags, keys and bodies byte-identical, each once), then shuts down, which
           commits its offsets
  resume   SECOND_BATCH more are sent; a new push consumer in GROUP receives exactly the new
           matching ones (none of the first batch: the offsets were committed)
  delay    on a second topic, with a consumer already receiving, a message with delay level
           DELAY_LEVEL and then an immediate one are sent: the immediate one arrives before the
           level has passed, the delayed one no earlier than the level (and within a bound)
  retry    on a third topic, the consumer fails a message's first delivery (the callback
           raises): the client sends it back and it is delivered once more, with reconsume
           times 1, no earlier than RETRY_SECONDS later (level 3, the first retry level)
  broadcast on a fourth topic, two BROADCASTING members of one group (distinct instance
           names): once both receive probes from every queue (a new member starts each queue
           at its end), BROADCAST_BATCH messages sent over all QUEUES queues reach each member,
           each exactly once

A scenario after a failed one is reported FAIL ("skipped: ..."). Every wait has a deadline.
"""

import argparse
import sys
import threading
import time
import traceback

from rocketmq.client import Message, MessageModel, Producer, PushConsumer, SendStatus

CLIENT = "python-rocketmq"
SCENARIOS = ("send", "consume", "resume", "delay", "retry", "broadcast")
TAGS = ("TagA", "TagB", "TagC")
SUBSCRIPTION = "TagA || TagC"
MATCHING = {"TagA", "TagC"}
FIRST_BATCH = 30
SECOND_BATCH = 15
# ./run configures the broker's delay levels so that this level is DELAY_SECONDS long.
DELAY_LEVEL = 2
DELAY_SECONDS = 3.0
# A first retry waits delay level 3, 5 s with ./run's levels.
RETRY_SECONDS = 5.0
# Rebalancing and the first pulls of a C++ push consumer take a few seconds; be generous.
CONSUME_TIMEOUT_S = 60.0
# Keep listening this long after the last expected message, so duplicates would still show.
QUIET_AFTER_S = 3.0
# How late after its level a delayed message may arrive (a suspended pull wakes within 15 s).
DELAY_LATE_BOUND_S = 30.0
LARGE_BODY_BYTES = 6000
# ./run configures the broker's default queue count.
QUEUES = 4
BROADCAST_BATCH = 24


def parse_args():
    parser = argparse.ArgumentParser(description=f"{CLIENT} scenarios against Tributary")
    parser.add_argument("--namesrv", required=True, help="host:port of the name server")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    return parser.parse_args()


def planned(start, count):
    """The messages of one batch as (tag, key, body) triples. Bodies carry non-ASCII UTF-8 (the C++
    API takes C strings, so no NUL byte); messages 6, 21, 36 (TagA) are over the 4 KiB from which
    the client compresses bodies."""
    return [
        (
            TAGS[i % len(TAGS)],
            f"key-{i}",
            f"{CLIENT} body {i} \u00e9\u2713 ".encode() + bytes([65 + i % 26]) * LARGE_BODY_BYTES
            if i % 15 == 6
            else f"{CLIENT} body {i} \u00e9\u2713 {'x' * (i % 7)}".encode(),
        )
        for i in range(start, start + count)
    ]


class Received:
    """Messages a push consumer's callback delivered, with their arrival times (thread-safe)."""

    def __init__(self, fail_first_delivery=False):
        self.lock = threading.Lock()
        self.messages = []  # (arrived_at_monotonic, tag, key, body, msg_id)
        self.queue_ids = []  # the queue of each of `messages`
        self.reconsume_times = []
        self.fail_first_delivery = fail_first_delivery

    def on_message(self, msg):
        arrived = time.monotonic()
        tag = (msg.tags or b"").decode()
        key = (msg.keys or b"").decode()
        with self.lock:
            self.messages.append((arrived, tag, key, bytes(msg.body), msg.id))
            self.queue_ids.append(msg.queue_id)
        self.reconsume_times.append(msg.reconsume_times)
        if self.fail_first_delivery and msg.reconsume_times == 0:
            # Raising is how this API asks for a later redelivery (RECONSUME_LATER).
            raise RuntimeError("compat: fail the first delivery")

    def queues_with_tag(self, tag):
        with self.lock:
            return {q for m, q in zip(self.messages, self.queue_ids) if m[1] == tag}

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout_s, quiet_s=QUIET_AFTER_S):
        """Waits until `predicate(messages)` holds and `quiet_s` more passed, or the deadline."""
        deadline = time.monotonic() + timeout_s
        satisfied_at = None
        while time.monotonic() < deadline:
            if satisfied_at is None and predicate(self.snapshot()):
                satisfied_at = time.monotonic()
            if satisfied_at is not None and time.monotonic() - satisfied_at >= quiet_s:
                break
            time.sleep(0.1)
        return self.snapshot()


def start_consumer(
    args, group, topic, expression, instance, fail_first_delivery=False,
    message_model=MessageModel.CLUSTERING, credentials=None,
):
    """A started push consumer and its Received; `credentials` (AccessKey, SecretKey) sign its
    requests (python_rocketmq_acl.py)."""
    received = Received(fail_first_delivery)
    consumer = PushConsumer(group, message_model=message_model)
    consumer.set_namesrv_addr(args.namesrv)
    if credentials is not None:
        consumer.set_session_credentials(*credentials, "")
    # A distinct instance name makes each consumer its own client, as a new process would be.
    consumer.set_instance_name(instance)
    consumer.set_thread_count(2)
    consumer.subscribe(topic, received.on_message, expression)
    consumer.start()
    return consumer, received


def compare(expected, messages):
    """Raises unless `messages` hold exactly the (tag, key, body) triples of `expected`, each once."""
    seen = [(tag, key, body) for _, tag, key, body, _ in messages]
    expected_set, seen_set = set(expected), set(seen)
    duplicates = len(seen) - len(seen_set)
    missing = expected_set - seen_set
    unexpected = seen_set - expected_set
    if duplicates or missing or unexpected:
        raise AssertionError(
            f"expected {len(expected)} messages, got {len(seen)}: {len(missing)} missing "
            f"(e.g. {sorted(missing)[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {sorted(unexpected)[:2]}), {duplicates} duplicates"
        )


def main():
    args = parse_args()
    first = planned(0, FIRST_BATCH)
    second = planned(FIRST_BATCH, SECOND_BATCH)
    sent_ids = {}  # (tag, key, body) -> msg id from the send result

    producer = Producer(f"{args.group}-producer", timeout=10000)
    producer.set_namesrv_addr(args.namesrv)
    producer.start()

    def send_sync(topic, tag, key, body, delay_level=0):
        msg = Message(topic)
        msg.set_tags(tag)
        msg.set_keys(key)
        msg.set_body(body)
        if delay_level:
            msg.set_delay_time_level(delay_level)
        result = producer.send_sync(msg)
        if result.status != SendStatus.OK or not result.msg_id or result.offset < 0:
            raise AssertionError(f"send of {key}: {result}")
        return result

    def send(batch):
        ids = set()
        for tag, key, body in batch:
            result = send_sync(args.topic, tag, key, body)
            ids.add(result.msg_id)
            sent_ids[(tag, key, body)] = result.msg_id
        if len(ids) != len(batch):
            raise AssertionError(f"{len(batch)} sends returned only {len(ids)} distinct ids")
        return f"{len(batch)} sync sends SEND_OK, distinct ids"

    def consume(batch, instance):
        expected = [m for m in batch if m[0] in MATCHING]
        consumer, received = start_consumer(args, args.group, args.topic, SUBSCRIPTION, instance)
        try:
            messages = received.wait_for(lambda got: len(got) >= len(expected), CONSUME_TIMEOUT_S)
        finally:
            consumer.shutdown()  # persists the consumed offsets to the broker
        compare(expected, messages)
        wrong_ids = [m for m in messages if m[4] != sent_ids[(m[1], m[2], m[3])]]
        if wrong_ids:
            raise AssertionError(f"{len(wrong_ids)} received ids differ from the sent ids")
        return f"{len(messages)} of {len(batch)} matched {SUBSCRIPTION!r}, bodies and ids equal"

    def resume():
        send(second)
        return consume(second, "resume") + " (none of the first batch)"

    def delay():
        topic, group = f"{args.topic}-delay", f"{args.group}-delay"
        warm_up = ("TagW", "warm-up", b"warm-up")
        send_sync(topic, *warm_up)
        consumer, received = start_consumer(args, group, topic, "*", "delay")
        try:
            got = received.wait_for(lambda got: len(got) >= 1, CONSUME_TIMEOUT_S, quiet_s=0)
            if [m[1:4] for m in got] != [warm_up]:
                raise AssertionError(f"the warm-up message did not arrive alone: {got}")
            delayed = ("TagD", "delayed", f"delayed level {DELAY_LEVEL}".encode())
            immediate = ("TagI", "immediate", b"immediate")
            sent_at = time.monotonic()
            send_sync(topic, *delayed, delay_level=DELAY_LEVEL)
            send_sync(topic, *immediate)
            got = received.wait_for(
                lambda got: len(got) >= 3, DELAY_SECONDS + DELAY_LATE_BOUND_S, quiet_s=1.0
            )
        finally:
            consumer.shutdown()
        arrivals = {m[1:4]: m[0] - sent_at for m in got[1:]}
        if len(got) != 3 or set(arrivals) != {delayed, immediate}:
            raise AssertionError(f"expected the delayed and the immediate message once: {got}")
        if arrivals[immediate] >= DELAY_SECONDS:
            raise AssertionError(f"the immediate message took {arrivals[immediate]:.2f}s")
        if not DELAY_SECONDS <= arrivals[delayed] <= DELAY_SECONDS + DELAY_LATE_BOUND_S:
            raise AssertionError(
                f"level {DELAY_LEVEL} ({DELAY_SECONDS}s) arrived after {arrivals[delayed]:.2f}s"
            )
        return (
            f"immediate after {arrivals[immediate]:.2f}s, level {DELAY_LEVEL} "
            f"({DELAY_SECONDS:g}s) after {arrivals[delayed]:.2f}s"
        )

    def retry():
        topic, group = f"{args.topic}-retry", f"{args.group}-retry"
        message = ("TagR", "retry-me", "retry me \u2713".encode())
        send_sync(topic, *message)
        consumer, received = start_consumer(args, group, topic, "*", "retry", True)
        try:
            got = received.wait_for(
                lambda got: len(got) >= 2, CONSUME_TIMEOUT_S + RETRY_SECONDS, quiet_s=2.0
            )
        finally:
            consumer.shutdown()
        if [m[1:4] for m in got] != [message, message] or received.reconsume_times != [0, 1]:
            raise AssertionError(
                f"expected two deliveries (reconsume times 0, 1): {got} {received.reconsume_times}"
            )
        gap = got[1][0] - got[0][0]
        if not RETRY_SECONDS <= gap <= RETRY_SECONDS + DELAY_LATE_BOUND_S:
            raise AssertionError(f"the retry came {gap:.2f}s after the failed delivery")
        return f"failed once, redelivered after {gap:.2f}s with reconsume times 1"

    def broadcast():
        topic, group = f"{args.topic}-broadcast", f"{args.group}-broadcast"
        members = []
        try:
            for n in (1, 2):
                members.append(start_consumer(
                    args, group, topic, "*", f"broadcast-{n}",
                    message_model=MessageModel.BROADCASTING,
                ))

            def send_to(queue, tag, key, body):
                msg = Message(topic)
                msg.set_tags(tag)
                msg.set_keys(key)
                msg.set_body(body)
                # The default selector puts the message on queue `arg % queue count`.
                result = producer.send_orderly(msg, queue)
                if result.status != SendStatus.OK:
                    raise AssertionError(f"send of {key}: {result}")

            deadline = time.monotonic() + CONSUME_TIMEOUT_S
            rounds = 0
            while not all(r.queues_with_tag("TagP") >= set(range(QUEUES)) for _, r in members):
                if time.monotonic() > deadline:
                    seen = [sorted(r.queues_with_tag("TagP")) for _, r in members]
                    raise AssertionError(f"members never received probes from every queue: {seen}")
                for queue in range(QUEUES):
                    send_to(queue, "TagP", f"probe-{rounds}-{queue}", f"probe {rounds} {queue}".encode())
                rounds += 1
                time.sleep(0.3)
            batch = [
                ("TagB", f"broadcast-{i}", f"{CLIENT} broadcast {i} \u00e9\u2713".encode())
                for i in range(BROADCAST_BATCH)
            ]
            for i, (tag, key, body) in enumerate(batch):
                send_to(i % QUEUES, tag, key, body)
            got = [
                r.wait_for(
                    lambda got: sum(m[1] == "TagB" for m in got) >= len(batch), CONSUME_TIMEOUT_S
                )
                for _, r in members
            ]
        finally:
            for consumer, _ in members:
                consumer.shutdown()
        for n, messages in enumerate(got, 1):
            try:
                compare(batch, [m for m in messages if m[1] == "TagB"])
            except AssertionError as err:
                raise AssertionError(f"member {n}: {err}") from None
        queues = [sorted(r.queues_with_tag("TagB")) for _, r in members]
        return (
            f"both members got all {len(batch)} messages of queues {queues[0]} / {queues[1]} "
            f"once (after {rounds} probe rounds)"
        )

    steps = {
        "send": lambda: send(first),
        "consume": lambda: consume(first, "consume"),
        "resume": resume,
        "delay": delay,
        "retry": retry,
        "broadcast": broadcast,
    }
    failed = None
    try:
        for name in SCENARIOS:
            if failed is not None:
                report(name, False, f"skipped: {failed} failed")
                continue
            started = time.monotonic()
            try:
                detail = steps[name]()
                report(name, True, f"{detail} ({time.monotonic() - started:.1f}s)")
            except Exception as err:  # noqa: BLE001 -- any client error fails the scenario
                traceback.print_exc(file=sys.stderr)
                report(name, False, f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
                failed = name
    finally:
        producer.shutdown()
    return 0 if failed is None else 1


def report(scenario, passed, detail):
    print(f"RESULT {CLIENT} {scenario} {'PASS' if passed else 'FAIL'} {detail}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
