"""Judges the interop run: compares what every reader dumped with what docs/interop.md says it
must get for what was written, and prints the direction x check table.

  python check.py --out DIR --base-ms MS [--expected-failures "row:check ..."]

A row is a source topic read by one client; a check is PASS, FAIL, XFAIL (failed, and listed as
expected to fail), XPASS (listed, but passed: take it off the list) or "-" (the reader cannot
show that part). Exits 1 on any FAIL. Every check needs all messages: a check over fewer than
were sent fails, since a miss anywhere is a miss.
"""

import argparse
import json
import os
import sys

import plan

CHECKS = ("count", "values", "keys", "headers", "timestamps", "order")
# Properties a RocketMQ reader may show beyond the record's headers: ali-ons's decoder always
# creates TAGS (null when absent) and an entry "" = "" (it splits at every 0x02, and the
# property string ends with one, as RocketMQ writes it), and its pull path adds the queue's
# MIN_OFFSET and MAX_OFFSET. (A record's empty name would reach it escaped, as "=?b64?".)
ALI_ONS_NULL_ADDED = {"TAGS"}
ALI_ONS_ADDED = {"MIN_OFFSET", "MAX_OFFSET"}
ALI_ONS_EMPTY_ADDED = ("", "")
# RabbitMQ's stream consumers get each message's offset in this header.
AMQP_ADDED = {"x-stream-offset"}


def rows():
    """(row id, source, topic key, reader), in table order."""
    out = [
        ("kafka>amqp", "kafka", "kafka", "amqp"),
        ("kafka>rocketmq", "kafka", "kafka", "ali-ons"),
        ("amqp>kafka", "amqp", "amqp", "kafka"),
        ("amqp>rocketmq", "amqp", "amqp", "ali-ons"),
        ("rocketmq>kafka", "rocketmq", "rocketmq", "kafka"),
        ("rocketmq>amqp", "rocketmq", "rocketmq", "amqp"),
    ]
    for codec in (*plan.CODECS, "mixed"):
        for reader in ("amqp", "ali-ons", "rocketmq-cpp"):
            out.append((f"{codec}>{reader}", "kafka-codec", codec, reader))
    for source in ("large-ali", "large-cpp"):
        for reader in ("kafka", "amqp"):
            out.append((f"{source}>{reader}", "rocketmq", source, reader))
    out += [
        ("kafka-4p>amqp-super", "kafka", "kafka-4p", "amqp-super"),
        ("kafka>amqp-classic", "kafka", "feed", "amqp-classic"),
        ("kafka>amqp-quorum", "kafka", "feed", "amqp-quorum"),
        ("amqp-exchange>kafka", "amqp", "exchange", "kafka"),
    ]
    return out


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Expected:
    """One written message in neutral form: index, key, value, timestamp (exact or a window),
    the non-reserved headers as (name, matcher), and the reserved names that must be stored."""

    def __init__(self, index, key, value, timestamp, headers, reserved=(), subset=False,
                 partition=None):
        self.index, self.key, self.value = index, key, value
        self.timestamp = timestamp  # int, or (lo, hi) for a time the writer could only bracket
        self.headers, self.reserved, self.subset = headers, reserved, subset
        self.partition = partition  # where a partitioned topic must hold it (None: anywhere)


def expected_messages(source, topic_key, out, base_ms):
    if source in ("kafka", "kafka-codec"):
        # The 4-partition topic holds record i in partition i % 4 (kafka_amqp.produce).
        spread = plan.partitions(topic_key) if topic_key == "kafka-4p" else None
        return [
            Expected(i, key, value, ts, [(n, ("null",) if v is None else ("bytes", v)) for n, v in h],
                     partition=None if spread is None else i % spread)
            for i, (key, value, ts, h) in enumerate(
                plan.kafka_messages(base_ms, nul_free=source == "kafka-codec"))
        ]
    if source == "amqp":
        sent = read_json(os.path.join(out, f"sent-{plan.TOPICS[topic_key]}.json")) or {"windows": []}
        # Publishes to a partitioned topic's exchange go where murmur2 puts the routing key;
        # the reference file has librdkafka's choice for every non-empty key.
        reference = (read_json(os.path.join(out, f"sent-{plan.TOPICS['exchange-ref']}.json"))
                     or {"partitions": {}})["partitions"] if topic_key == "exchange" else {}
        messages = []
        for i, (routing_key, body, props) in enumerate(plan.amqp_messages(base_ms // 1000)):
            window = sent["windows"][i] if i < len(sent["windows"]) else (0, 0)
            ts = props["timestamp"] * 1000 if "timestamp" in props else tuple(window)
            partition = reference.get(routing_key, -1) if topic_key == "exchange" and routing_key else None
            messages.append(Expected(i, routing_key.encode() or None, body, ts,
                                     plan.amqp_expected_headers(props),
                                     reserved=("amqp.exchange", "amqp.props"), partition=partition))
        return messages
    sent = read_json(os.path.join(out, f"sent-{plan.TOPICS[topic_key]}.json"))
    if sent is None:
        return None
    return [
        Expected(i, m["keys"].encode(), plan.unb64(m["body"]), (m["before"], m["after"]),
                 [(n, ("bytes", v.encode())) for n, v in m["properties"]],
                 subset=m.get("subset", False))
        for i, m in enumerate(sent["messages"])
    ]


def ts_ok(expected, actual, divisor=1):
    if actual is None:
        return False
    if isinstance(expected, tuple):
        return expected[0] // divisor <= actual <= expected[1] // divisor
    return actual == expected // divisor


def contains(expected, actual):
    """Whether every (name, matcher) of `expected` is among the (name, value) pairs of `actual`.
    For writers that add properties of their own (the C++ client: UNIQ_KEY, WAIT) and send them in
    their own order (its map sorts them by name), so only presence is checked."""
    return all(any(n == name and plan.matches(matcher, v) for n, v in actual)
               for name, matcher in expected)


def compare_lists(expected, actual):
    """None when the (name, matcher) list equals the (name, value) list, else the first difference."""
    for n, (want, got) in enumerate(zip(expected, actual)):
        if want[0] != got[0] or not plan.matches(want[1], got[1]):
            return f"#{n}: expected {want[0]!r}={plan.describe(want[1])}, got {got[0]!r}={got[1]!r}"
    if len(expected) != len(actual):
        return f"{len(expected)} expected, {len(actual)} got: {[n for n, _ in actual]}"
    return None


# --- per-reader views: each returns {check: error or None} for one received message ----------
def kafka_view(want, got):
    headers = [(n, plan.unb64(v)) for n, v in got["headers"]]
    plain = [(n, v) for n, v in headers if not plan.is_reserved(n)]
    names = {n for n, _ in headers}
    if want.subset:
        header_error = None if contains(want.headers, plain) else f"not all of {want.headers} in {plain}"
    else:
        header_error = compare_lists(want.headers, plain)
    missing = [n for n in want.reserved if n not in names]
    if header_error is None and missing:
        header_error = f"reserved headers {missing} not stored"
    return {
        "keys": None if plan.unb64(got["key"]) == want.key else f"key {got['key']!r}",
        "headers": header_error,
        "timestamps": None if ts_ok(want.timestamp, got["timestamp"]) and got["timestamp_type"] == 1
        else f"timestamp {got['timestamp']} (type {got['timestamp_type']}), expected {want.timestamp}",
    }


def amqp_value(value):
    if isinstance(value, list):
        return [amqp_value(v) for v in value]
    if value is None:
        return None
    if "s" in value:
        return value["s"].encode()
    if "b" in value:
        return plan.unb64(value["b"])
    return value  # any other type is wrong; kept so the difference shows


def amqp_view(want, got):
    headers = [(n, amqp_value(v)) for n, v in (got["headers"] or []) if n not in AMQP_ADDED]
    key_header = None
    if want.key is None:
        routing_key = ""
    else:
        try:
            routing_key = want.key.decode()
            if len(want.key) > 255:
                raise UnicodeError
        except UnicodeError:
            routing_key, key_header = "", want.key
    actual_key_header = [v for n, v in headers if n == "x-key"]
    key_error = None
    if got["routing_key"] != routing_key or got["exchange"] != "":
        key_error = f"routing key {got['routing_key']!r} exchange {got['exchange']!r}, expected {routing_key!r}"
    elif actual_key_header != ([key_header] if key_header is not None else []):
        key_error = f"x-key {actual_key_header!r}, expected {key_header!r}"
    headers = [(n, v) for n, v in headers if not (key_header is not None and n == "x-key")]
    # Repeated names become one array at the first occurrence.
    grouped = {}
    for name, matcher in want.headers:
        grouped.setdefault(name, []).append(matcher)
    if want.subset:
        flat = [(n, m[0]) for n, m in grouped.items() if len(m) == 1]
        header_error = None if contains(flat, headers) else f"not all of {flat} in {headers}"
    else:
        header_error = None
        if [n for n, _ in headers] != list(grouped):
            header_error = f"names {[n for n, _ in headers]}, expected {list(grouped)}"
        for name, value in headers if header_error is None else []:
            matchers = grouped[name]
            if len(matchers) == 1:
                ok = plan.matches(matchers[0], value)
            else:
                ok = isinstance(value, list) and len(value) == len(matchers) and all(
                    plan.matches(m, v) for m, v in zip(matchers, value))
            if not ok:
                header_error = f"{name!r}: got {value!r}, expected {[plan.describe(m) for m in matchers]}"
                break
    if header_error is None and got["other_properties"]:
        # Every record here was written by another protocol: only `timestamp` and `headers` are set.
        header_error = f"properties {got['other_properties']} set on a foreign record"
    return {
        "keys": key_error,
        "headers": header_error,
        "timestamps": None if ts_ok(want.timestamp, got["timestamp"], 1000)
        else f"timestamp {got['timestamp']}, expected {want.timestamp} ms / 1000",
    }


def ali_ons_view(want, got):
    props = [(n, None if v is None else v.encode()) for n, v in got["properties"]
             if not (n in ALI_ONS_NULL_ADDED and v is None) and n not in ALI_ONS_ADDED
             and (n, v) != ALI_ONS_EMPTY_ADDED]
    expected = plan.rocketmq_properties(want.headers, want.key)
    keys_expected = [m for n, m in expected if n == "KEYS"]
    keys_actual = [v for n, v in props if n == "KEYS"]
    key_error = None
    if len(keys_actual) != len(keys_expected) or not all(
            plan.matches(m, v) for m, v in zip(keys_expected, keys_actual)):
        key_error = f"KEYS {keys_actual}, expected {[plan.describe(m) for m in keys_expected]}"
    header_error = compare_lists([(n, m) for n, m in expected if n != "KEYS"],
                                 [(n, v) for n, v in props if n != "KEYS"])
    born_ok = ts_ok(want.timestamp, got["born_timestamp"])
    store_ok = ts_ok(want.timestamp, got["store_timestamp"])
    return {
        "keys": key_error,
        "headers": header_error,
        "timestamps": None if born_ok and store_ok
        else f"born {got['born_timestamp']} store {got['store_timestamp']}, expected {want.timestamp}",
    }


def cpp_view(want, got):
    expected = dict(plan.rocketmq_properties(want.headers, want.key))
    header_error = None
    for name in plan.CPP_PROPERTIES:
        if name in ("KEYS", "TAGS"):
            continue
        value = got["properties"].get(name, "").encode()
        ok = plan.matches(expected[name], value) if name in expected else value == b""
        if not ok:
            header_error = f"property {name!r}={value!r}, expected " + (
                plan.describe(expected[name]) if name in expected else "none")
            break
    keys_expected = plan.rocketmq_escape(want.key) if want.key is not None else ""
    return {
        "keys": None if got["keys"] == keys_expected else f"keys {got['keys']!r}, expected {keys_expected!r}",
        "headers": header_error,
        "timestamps": None if ts_ok(want.timestamp, got["born_timestamp"])
        else f"born {got['born_timestamp']}, expected {want.timestamp}",
    }


def dump_names(reader, topic_key):
    """The dump files a reader leaves for a row: one per topic, per stream of a super stream
    (T-0 .. T-3), or per fed queue."""
    if reader == "amqp-super":
        return [f"recv-amqp-{stream}.json" for stream in plan.super_stream(topic_key)]
    if reader in ("amqp-classic", "amqp-quorum"):
        return [f"recv-amqp-{plan.FEED_QUEUES[reader.split('-')[1]][0]}.json"]
    return [f"recv-{'amqp' if reader.startswith('amqp') else reader}-{plan.TOPICS[topic_key]}.json"]


def load(out, reader, topic_key):
    """What the reader got for a row; each message of a super stream gets `_partition` (its
    stream's p) and `_seq` (its place in that stream)."""
    received = []
    for p, name in enumerate(dump_names(reader, topic_key)):
        messages = read_json(os.path.join(out, name))
        if messages is None:
            return None
        for seq, message in enumerate(messages):
            received.append(dict(message, _partition=p, _seq=seq))
    return received


READERS = {  # reader -> (value field, order: (partition field, position field) or None, view)
    "kafka": ("value", ("partition", "offset"), kafka_view),
    "amqp": ("body", ("_partition", "_seq"), amqp_view),  # one stream: delivery order
    "amqp-super": ("body", ("_partition", "_seq"), amqp_view),
    "amqp-classic": ("body", None, amqp_view),  # a feed from 4 partitions has no one order
    "amqp-quorum": ("body", None, amqp_view),
    "ali-ons": ("body", ("_partition", "queue_offset"), ali_ons_view),  # one queue
    "rocketmq-cpp": ("body", ("_partition", "queue_offset"), cpp_view),
}


def order_check(wanted, received, matched, value_field, fields):
    """Each partition's (or stream's) records in write order, each where it belongs."""
    partition_field, position_field = fields
    n = len(wanted)
    by_partition, misplaced = {}, []
    for message in received:
        index = plan.parse_index(plan.unb64(message[value_field]))
        by_partition.setdefault(message[partition_field], []).append((message[position_field], index))
        if index is not None and index < n and wanted[index].partition not in (None, message[partition_field]):
            misplaced.append(f"#{index} in {message[partition_field]}, not {wanted[index].partition}")
    out_of_order = []
    for partition, entries in sorted(by_partition.items()):
        positions = [position for position, _ in entries]
        ordered = [index for _, index in sorted(entries, key=lambda e: e[0])]
        if (len(set(positions)) != len(positions) or None in ordered
                or ordered != sorted(set(ordered))):
            out_of_order.append(f"partition {partition}: {ordered[:8]}...")
    if misplaced or out_of_order:
        return False, "; ".join((misplaced + out_of_order)[:3])
    if len(matched) < n:
        return False, f"{len(matched)} of {n} in write order"
    return True, "in write order" + (f" in {len(by_partition)} partitions" if len(by_partition) > 1 else "")


def judge(source, topic_key, reader, out, base_ms):
    """{check: (passed, detail)} for one row."""
    wanted = expected_messages(source, topic_key, out, base_ms)
    value_field, order_fields, view = READERS[reader]
    received = load(out, reader, topic_key)
    if wanted is None or received is None:
        why = "the writer" if wanted is None else "the reader"
        return {c: (False, f"no output from {why}") for c in CHECKS}
    n = len(wanted)
    result = {"count": (len(received) == n, f"{len(received)} of {n}")}
    indices = [plan.parse_index(plan.unb64(m[value_field])) for m in received]
    matched = {}
    bad_values = []
    for index, message in zip(indices, received):
        value = plan.unb64(message[value_field])
        if index is None or index >= n or value != wanted[index].value:
            bad_values.append(index)
        elif index in matched:
            bad_values.append(f"{index} again")
        else:
            matched[index] = message
    result["values"] = (not bad_values and len(matched) == n,
                        f"{len(matched)} of {n} byte-identical" +
                        (f"; wrong: {bad_values[:5]}" if bad_values else ""))
    errors = {check: [] for check in ("keys", "headers", "timestamps")}
    for index, message in sorted(matched.items()):
        for check, error in view(wanted[index], message).items():
            if error is not None:
                errors[check].append(f"#{index}: {error}")
    for check, found in errors.items():
        if len(matched) < n:
            result[check] = (False, f"only {len(matched)} of {n} comparable" +
                             (f"; {found[0]}" if found else ""))
        else:
            result[check] = (not found, f"{len(found)} wrong; first {found[0]}" if found else f"{n} ok")
    result["order"] = None if order_fields is None else order_check(
        wanted, received, matched, value_field, order_fields)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--base-ms", type=int, required=True)
    parser.add_argument("--expected-failures", default="")
    args = parser.parse_args()
    known = set(args.expected_failures.split())
    row_ids = {row[0] for row in rows()}
    for item in known:
        row, _, check = item.partition(":")
        if row not in row_ids or check not in (*CHECKS, "*"):
            print(f"unknown INTEROP_EXPECTED_FAILURES entry {item!r} (row:check)", file=sys.stderr)
            return 2
    counts = {"PASS": 0, "FAIL": 0, "XFAIL": 0, "XPASS": 0}
    lines, details = [], []
    for row, source, topic_key, reader in rows():
        result = judge(source, topic_key, reader, args.out, args.base_ms)
        cells = []
        for check in CHECKS:
            if result.get(check) is None:
                cells.append("-")
                continue
            passed, detail = result[check]
            listed = f"{row}:{check}" in known or f"{row}:*" in known
            verdict = ("XPASS" if listed else "PASS") if passed else ("XFAIL" if listed else "FAIL")
            counts[verdict] += 1
            cells.append(verdict)
            if verdict != "PASS":
                details.append(f"  {verdict:5} {row}:{check}: {detail}"[:400])
        lines.append(f"{row:24}" + "".join(f" {c:10}" for c in cells))
    print(f"\n{'direction':24}" + "".join(f" {c:10}" for c in CHECKS))
    print("\n".join(lines))
    if details:
        print("\nnot passed:")
        print("\n".join(details))
    print(f"\ncompat/interop: {counts['PASS']} passed, {counts['FAIL']} failed, "
          f"{counts['XFAIL']} expected failures, {counts['XPASS']} listed but passed")
    if counts["XPASS"]:
        print("take the XPASS entries off INTEROP_EXPECTED_FAILURES (compat/interop/run)")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
