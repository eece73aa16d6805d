"""kcat (Debian's, librdkafka 2.0.x) running the compat/kafka scenarios through its CLI modes.

kcat has no admin API, so `create` is metadata auto-creation: `-L -t TOPIC` on a topic the
broker does not list yet must create it with the broker's default partition count (passed in as
--default-partitions). `produce` is `-P` with keys, checked by reading the topic back with `-C -e`
(no group); `consume` and `resume` are `-G` balanced consumers that exit at the end of every
assigned partition (`-e`) and commit on close (auto-commit, kcat's default).
"""

import json
import subprocess
import sys

import scenarios

CLIENT = "kcat"
KCAT_TIMEOUT_S = 45
KEY_DELIMITER = ":"


def main():
    args = scenarios.parse_args(
        CLIENT,
        lambda parser: parser.add_argument(
            "--default-partitions",
            type=int,
            required=True,
            help="the broker's kafka.default_partitions (kcat's topic is auto-created)",
        ),
    )
    default_partitions = args.default_partitions
    first = scenarios.records(CLIENT, 0, scenarios.FIRST_BATCH)
    second = scenarios.records(CLIENT, scenarios.FIRST_BATCH, scenarios.SECOND_BATCH)
    base = ["kcat", "-b", args.bootstrap, "-X", "broker.address.family=v4"]

    def kcat(*kcat_args, stdin=None):
        done = subprocess.run(
            base + list(kcat_args),
            input=stdin,
            capture_output=True,
            timeout=KCAT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"kcat {' '.join(kcat_args)} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()[-300:]}"
            )
        return done.stdout

    def topic_names():
        listing = json.loads(kcat("-L", "-J"))
        return {topic["topic"] for topic in listing["topics"]}

    def create():
        if args.topic in topic_names():
            raise AssertionError(f"{args.topic} exists before the scenario")
        listing = json.loads(kcat("-L", "-J", "-t", args.topic))
        topic = next(t for t in listing["topics"] if t["topic"] == args.topic)
        if topic.get("error") or len(topic["partitions"]) != default_partitions:
            raise AssertionError(f"metadata for the auto-created topic: {topic}")
        if args.topic not in topic_names():
            raise AssertionError(f"{args.topic} is missing from the full topic list")
        return f"auto-created by -L, metadata shows {len(topic['partitions'])} partitions"

    def parse(output):
        seen = []
        for line in output.decode().splitlines():
            key, _, value = line.partition(KEY_DELIMITER)
            seen.append((key.encode(), value.encode()))
        return seen

    def produce(batch):
        lines = "".join(f"{k.decode()}{KEY_DELIMITER}{v.decode()}\n" for k, v in batch)
        kcat("-P", "-t", args.topic, "-K", KEY_DELIMITER, "-z", "snappy", stdin=lines.encode())
        return f"{len(batch)} produced with -P (snappy)"

    def read_back(expected):
        # Without a group: everything in the topic from the beginning, exiting at its end.
        out = kcat("-C", "-t", args.topic, "-o", "beginning", "-e", "-q", "-f", "%k:%s\n")
        return scenarios.compare(expected, parse(out))

    def group_consume(expected):
        out = kcat(
            "-G",
            args.group,
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "-q",
            "-f",
            "%k:%s\n",
            args.topic,
        )
        return f"{scenarios.compare(expected, parse(out))}; committed on close"

    def produce_first():
        detail = produce(first)
        return f"{detail}; -C read back {read_back(first)}"

    def resume():
        produce(second)
        return group_consume(second)

    return scenarios.run(
        CLIENT,
        {
            "create": create,
            "produce": produce_first,
            "consume": lambda: group_consume(first),
            "resume": resume,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
