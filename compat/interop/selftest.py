"""Self-test of check.py, run by ./run before the broker starts (no broker, no clients).

Builds the dumps that readers would write if the broker did exactly what docs/interop.md says
(reader-side extras included: reserved headers for Kafka, `x-stream-offset` for AMQP, ali-ons's
TAGS=null) and asserts that every check of every row passes on them; then breaks one thing at a
time (a message missing, duplicated, altered, reordered; a key, header or timestamp wrong) and
asserts that the check meant to catch it fails. Most rows cannot pass against today's broker, so
this is what shows that a PASS is reachable and that a FAIL means something.
"""

import copy
import json
import os
import sys
import tempfile

import check
import plan

BASE_MS = 1_790_000_000_123


def text(matcher):
    if matcher[0] == "null":
        return None
    if matcher[0] == "json":
        return json.dumps(matcher[1], separators=(",", ":")).encode()
    return matcher[1]


def timestamp(expected):
    return expected.timestamp[0] if isinstance(expected.timestamp, tuple) else expected.timestamp


def ideal_kafka(position, e, source):
    headers = [[n, None if text(m) is None else plan.b64(text(m))] for n, m in e.headers]
    if e.subset:  # a client's own properties around the ones the writer set, in its own order
        headers.reverse()
        headers.insert(1, ["UNIQ_KEY", plan.b64(b"0A0B")])
        headers.append(["WAIT", plan.b64(b"true")])
    headers += [[name, plan.b64(b"\x00opaque")] for name in e.reserved]
    if source == "rocketmq":
        headers.append(["rmq.born_host", plan.b64(b"127.0.0.1:1234")])
    return {"offset": position, "key": None if e.key is None else plan.b64(e.key),
            "value": plan.b64(e.value), "timestamp": timestamp(e), "timestamp_type": 1,
            "headers": headers}


def pika_form(value):
    if value is None:
        return None
    try:
        return {"s": value.decode()}
    except UnicodeDecodeError:
        return {"b": plan.b64(value)}


def ideal_amqp(position, e, _source):
    headers = [["x-stream-offset", {"other": str(position)}]]
    grouped = {}
    for name, matcher in e.headers:
        grouped.setdefault(name, []).append(text(matcher))
    for name, values in grouped.items():
        headers.append([name, pika_form(values[0]) if len(values) == 1 else [pika_form(v) for v in values]])
    routing_key = ""
    if e.key is not None:
        try:
            routing_key = e.key.decode()
        except UnicodeDecodeError:
            headers.append(["x-key", pika_form(e.key)])
    return {"exchange": "", "routing_key": routing_key, "body": plan.b64(e.value),
            "timestamp": timestamp(e) // 1000, "headers": headers, "other_properties": []}


def ideal_ali_ons(position, e, _source):
    props = [["TAGS", None]] + [[n, text(m).decode()] for n, m in plan.rocketmq_properties(e.headers, e.key)]
    props += [["", ""], ["MIN_OFFSET", "0"], ["MAX_OFFSET", str(plan.COUNT)]]  # ali-ons adds these
    return {"queue_offset": position, "body": plan.b64(e.value), "tags": None,
            "keys": dict(props).get("KEYS"), "born_timestamp": timestamp(e),
            "store_timestamp": timestamp(e), "sys_flag": 0, "properties": props}


def ideal_cpp(position, e, _source):
    props = {n: text(m).decode() for n, m in plan.rocketmq_properties(e.headers, e.key)}
    return {"queue_offset": position, "body": plan.b64(e.value),
            "keys": props.get("KEYS", ""), "tags": "", "born_timestamp": timestamp(e),
            "properties": {n: props.get(n, "") for n in plan.CPP_PROPERTIES}}


IDEAL = {"kafka": ideal_kafka, "amqp": ideal_amqp, "ali-ons": ideal_ali_ons, "rocketmq-cpp": ideal_cpp}


def write_sent_files(out):
    """The files the RocketMQ writers and the AMQP writer leave, as a run would."""
    windows = [[BASE_MS + i, BASE_MS + i + 3] for i in range(plan.COUNT)]
    dump(os.path.join(out, f"sent-{plan.TOPICS['amqp']}.json"), {"windows": windows})
    dump(os.path.join(out, f"sent-{plan.TOPICS['exchange']}.json"), {"windows": windows, "errors": []})
    keys = {rk for rk, _, _ in plan.amqp_messages(BASE_MS // 1000) if rk}
    dump(os.path.join(out, f"sent-{plan.TOPICS['exchange-ref']}.json"),
         {"partitions": {key: sum(key.encode()) % 4 for key in keys}})
    source = [{"body": plan.b64(plan.index_prefix(i) + bytes(range(256))), "tags": f"Tag{i % 3}",
               "keys": f"r-key-{i}", "properties": [["TAGS", f"Tag{i % 3}"], ["KEYS", f"r-key-{i}"],
                                                    ["p\u00fc", f"v {i}"]],
               "before": BASE_MS + i, "after": BASE_MS + i + 5} for i in range(plan.COUNT)]
    dump(os.path.join(out, f"sent-{plan.TOPICS['rocketmq']}.json"), {"messages": source})
    dump(os.path.join(out, f"sent-{plan.TOPICS['large-ali']}.json"), {"messages": source[:4]})
    subset = [dict(m, subset=True) for m in source[:4]]
    dump(os.path.join(out, f"sent-{plan.TOPICS['large-cpp']}.json"), {"messages": subset})


def dump(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def write_ideal_dumps(out):
    for _row, source, topic_key, reader in check.rows():
        wanted = check.expected_messages(source, topic_key, out, BASE_MS)
        names = check.dump_names(reader, topic_key)
        files = [[] for _ in names]
        positions = {}
        for i, e in enumerate(wanted):
            # Unkeyed publishes to a partitioned topic may go anywhere: round-robin here.
            partition = e.partition if e.partition is not None else i % plan.partitions(topic_key)
            positions[partition] = positions.get(partition, -1) + 1
            message = IDEAL[reader.split("-")[0] if reader.startswith("amqp") else reader](
                positions[partition], e, source)
            if reader == "kafka":
                message["partition"] = partition
            files[partition if len(files) > 1 else 0].append(message)
        for name, messages in zip(names, files):
            dump(os.path.join(out, name), messages)


def verdicts(out, row_id):
    for row, source, topic_key, reader in check.rows():
        if row == row_id:
            result = check.judge(source, topic_key, reader, out, BASE_MS)
            return {c: (None if result.get(c) is None else result[c][0]) for c in check.CHECKS}
    raise KeyError(row_id)


# --- mutations: (name, check that must fail, function(reader, messages)) ------------------------
KEY_FIELD = {"kafka": "key", "amqp": "routing_key", "rocketmq-cpp": "keys"}
TIME_FIELD = {"kafka": "timestamp", "amqp": "timestamp", "ali-ons": "born_timestamp",
              "rocketmq-cpp": "born_timestamp"}
POSITION_FIELD = {"kafka": "offset", "ali-ons": "queue_offset", "rocketmq-cpp": "queue_offset"}


def value_field(reader):
    return check.READERS[reader][0]


def drop(reader, messages):
    messages.pop()


def duplicate(reader, messages):
    messages[-1] = copy.deepcopy(messages[0])


def alter_value(reader, messages):
    value = bytearray(plan.unb64(messages[1][value_field(reader)]))
    value[-1] ^= 0x01
    messages[1][value_field(reader)] = plan.b64(bytes(value))


def reorder(reader, messages):
    if reader in POSITION_FIELD:  # two records of one partition trade places
        field = POSITION_FIELD[reader]
        first = messages[1]
        second = next(m for m in messages[2:] if m.get("partition") == first.get("partition"))
        first[field], second[field] = second[field], first[field]
    else:
        messages[1], messages[2] = messages[2], messages[1]


def alter_key(reader, messages):
    m = messages[0]
    if reader == "ali-ons":
        m["properties"] = [[n, v + "x" if n == "KEYS" else v] for n, v in m["properties"]]
    elif reader == "kafka":
        m["key"] = plan.b64(b"other")
    else:
        m[KEY_FIELD[reader]] = "other"


def alter_header(reader, messages):
    m = messages[0]
    if reader == "kafka":
        name, _ = next(h for h in m["headers"] if not plan.is_reserved(h[0]))
        m["headers"] = [[n, plan.b64(b"changed") if n == name else v] for n, v in m["headers"]]
    elif reader == "amqp":
        m["headers"] = [h for h in m["headers"] if h[0] == "x-stream-offset"] + \
            [h for h in m["headers"] if h[0] != "x-stream-offset"][1:]  # the first one lost
    elif reader == "ali-ons":
        m["properties"] = m["properties"] + [["rmq.flag", "0"]]  # a reserved header leaks
    else:
        m["properties"]["bin"] = "cut"


def alter_header_or_property(reader, messages):
    if reader == "amqp":
        messages[0]["other_properties"] = ["content_type"]  # a property a foreign record lacks
    else:
        alter_header(reader, messages)


def alter_time(reader, messages):
    messages[0][TIME_FIELD[reader]] += 1000


def misplace(reader, messages):
    """Moves a keyed record to another partition (Kafka dumps of partitioned topics only)."""
    if reader == "kafka" and len({m["partition"] for m in messages}) > 1:
        m = next(m for m in messages if m["key"])
        m["partition"] = (m["partition"] + 1) % 4
        m["offset"] += 1000  # past every record of its new partition: only the place is wrong
    else:
        reorder(reader, messages)


MUTATIONS = (
    ("a message missing", "count", drop),
    ("a message twice, one missing", "values", duplicate),
    ("a value byte flipped", "values", alter_value),
    ("two messages swapped", "order", reorder),
    ("a key changed", "keys", alter_key),
    ("a header changed, lost or leaked", "headers", alter_header),
    ("a basic property set on a foreign record (AMQP)", "headers", alter_header_or_property),
    ("a timestamp off by a second", "timestamps", alter_time),
    ("a record in another partition than its key's (else swapped)", "order", misplace),
)
MUTATED_ROWS = ("kafka>amqp", "kafka>rocketmq", "amqp>kafka", "amqp>rocketmq", "rocketmq>kafka",
                "rocketmq>amqp", "mixed>rocketmq-cpp", "large-cpp>amqp", "kafka-4p>amqp-super",
                "amqp-exchange>kafka")


def main():
    problems = []
    with tempfile.TemporaryDirectory() as out:
        write_sent_files(out)
        write_ideal_dumps(out)
        for row, *_ in check.rows():
            for name, passed in verdicts(out, row).items():
                if passed is False:
                    problems.append(f"ideal dumps: {row}:{name} does not pass")
        rows = {row: (source, topic_key, reader) for row, source, topic_key, reader in check.rows()}
        tried = 0
        for row in MUTATED_ROWS:
            _source, topic_key, reader = rows[row]
            path = os.path.join(out, check.dump_names(reader, topic_key)[0])
            with open(path, encoding="utf-8") as f:
                pristine = f.read()
            for description, must_fail, mutate in MUTATIONS:
                messages = json.loads(pristine)
                mutate("amqp" if reader.startswith("amqp") else reader, messages)
                dump(path, messages)
                if verdicts(out, row)[must_fail] is not False:
                    problems.append(f"{row}: {description} does not fail {must_fail}")
                tried += 1
            with open(path, "w", encoding="utf-8") as f:
                f.write(pristine)
    for problem in problems:
        print(f"selftest: {problem}", file=sys.stderr)
    print(f"checker self-test: {len(check.rows())} rows pass on ideal dumps, "
          f"{tried - sum('does not fail' in p for p in problems)} of {tried} mutations caught"
          if not problems else f"checker self-test: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
