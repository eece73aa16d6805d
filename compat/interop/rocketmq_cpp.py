"""Python `rocketmq` 0.4.4 (the bundled C++ client) for the interop runner; runs in its own venv.

  write --namesrv A --out DIR   sends the large-body topic (bodies over 4 KiB, which the client
                                zlib-compresses) and records what it sent in DIR/sent-<topic>.json
  read --namesrv A --out DIR --expect topic=count ...
                                a push consumer of a new group per topic dumps what it got (and
                                plan.CPP_PROPERTIES, since this API cannot list properties) to
                                DIR/recv-rocketmq-cpp-<topic>.json

The API passes bodies as C strings, so what it sends and reads holds no NUL byte (plan.py's
codec topics are NUL-free for this reader). A reader stops when every topic has its count and
nothing more came for QUIET_S, when nothing came for STALL_S, or at DEADLINE_S.
"""

import argparse
import json
import os
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer, SendStatus

import plan  # standard library only, so it loads in this venv too

TOPIC = plan.TOPICS["large-cpp"]
LARGE_SIZES = (4097, 8192, 20000, 70000)
QUIET_S = 2.0
STALL_S = 25.0
DEADLINE_S = 90.0


def write(args):
    producer = Producer(f"interop-cpp-producer-{os.getpid()}", timeout=10000)
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    sent = []
    try:
        for i, size in enumerate(LARGE_SIZES):
            body = plan.index_prefix(i) + bytes(
                97 + j % 26 if j % 64 < 48 else 33 + (j * 31 + i) % 90 for j in range(size))
            msg = Message(TOPIC)
            msg.set_tags("TagL")
            msg.set_keys(f"large-{i}")
            msg.set_property("trace-id", f"large-{i}")
            msg.set_body(body)
            before = time.time_ns() // 1_000_000
            result = producer.send_sync(msg)
            after = time.time_ns() // 1_000_000
            if result.status != SendStatus.OK:
                raise RuntimeError(f"send {i}: {result}")
            sent.append({"body": plan.b64(body), "tags": "TagL", "keys": f"large-{i}",
                         "properties": [["TAGS", "TagL"], ["KEYS", f"large-{i}"],
                                        ["trace-id", f"large-{i}"]],
                         "subset": True, "before": before, "after": after})
    finally:
        producer.shutdown()
    with open(os.path.join(args.out, f"sent-{TOPIC}.json"), "w", encoding="utf-8") as out:
        json.dump({"messages": sent}, out)
    print(f"sent {len(sent)} to {TOPIC}")


def read(args):
    expected = {item.split("=")[0]: int(item.split("=")[1]) for item in args.expect}
    got = {topic: [] for topic in expected}
    lock = threading.Lock()
    last_new = [time.monotonic()]
    consumers = []

    def on_message(topic):
        def handle(msg):
            record = {
                "queue_offset": msg.queue_offset,
                "body": plan.b64(msg.body or b""),
                "keys": (msg.keys or b"").decode("utf-8", "replace"),
                "tags": (msg.tags or b"").decode("utf-8", "replace"),
                "born_timestamp": msg.born_timestamp,
                "properties": {name: (msg.get_property(name) or b"").decode("utf-8", "replace")
                               for name in plan.CPP_PROPERTIES},
            }
            with lock:
                got[topic].append(record)
                last_new[0] = time.monotonic()
        return handle

    started = time.monotonic()
    try:
        for topic in expected:
            consumer = PushConsumer(f"interop-cpp-{topic}-{os.getpid()}")
            consumer.set_namesrv_addr(args.namesrv)
            consumer.set_instance_name(f"interop-{topic}-{os.getpid()}")
            consumer.set_thread_count(1)
            consumer.subscribe(topic, on_message(topic), "*")
            consumer.start()
            consumers.append(consumer)
        done_at = None
        while True:
            now = time.monotonic()
            with lock:
                complete = all(len(got[t]) >= n for t, n in expected.items())
            if done_at is None and complete:
                done_at = now
            if ((done_at is not None and now - done_at >= QUIET_S) or now - last_new[0] >= STALL_S
                    or now - started >= DEADLINE_S):
                break
            time.sleep(0.1)
    finally:
        for consumer in consumers:
            consumer.shutdown()
        with lock:  # what came before any failure still counts
            for topic, messages in got.items():
                with open(os.path.join(args.out, f"recv-rocketmq-cpp-{topic}.json"), "w",
                          encoding="utf-8") as out:
                    json.dump(messages, out)
            print(" ".join(f"{topic}={len(messages)}" for topic, messages in got.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("write", "read"))
    parser.add_argument("--namesrv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--expect", nargs="*", default=[])
    args = parser.parse_args()
    {"write": write, "read": read}[args.command](args)


if __name__ == "__main__":
    main()
