"""What the interop runner writes, and what each reader must get back, per docs/interop.md.

The Kafka and AMQP messages are generated here, deterministically from the run's start time, so
the writers (kafka_amqp.py) and the checker (check.py) build the same ones without passing them
around. The RocketMQ writers (node/ali_ons.js, rocketmq_cpp.py) record what they sent in a
`sent-<topic>.json` file instead, since they run in other languages or venvs.

Expected values are "matchers": ("bytes", b), ("null",) or ("json", obj), the last for AMQP
tables and arrays nested in arrays, whose JSON text form is compared parsed (the spec fixes the
structure, not the spacing).
"""

import base64
import datetime
import decimal
import json

COUNT = 200  # messages per direction and per codec topic
TOPICS = {
    "kafka": "interop-kafka",  # written by confluent-kafka, read by pika and ali-ons
    "amqp": "interop-amqp",  # written by pika, read by confluent-kafka and ali-ons
    "rocketmq": "interop-rocketmq",  # written by ali-ons, read by confluent-kafka and pika
    "gzip": "interop-codec-gzip",
    "snappy": "interop-codec-snappy",
    "lz4": "interop-codec-lz4",
    "zstd": "interop-codec-zstd",
    "mixed": "interop-codec-mixed",
    "large-ali": "interop-large-ali-ons",  # RocketMQ bodies over 4 KiB, zlib-compressed by ali-ons
    "large-cpp": "interop-large-cpp",  # the same by the C++ client (Python `rocketmq`)
    # Partitioned topics, seen from AMQP the RabbitMQ way (docs/interop.md, "Topics seen from AMQP"):
    "kafka-4p": "interop-kafka-4p",  # written by Kafka into partition i % 4, read as super stream
    "feed": "interop-feed",  # written by Kafka after FEED_QUEUES are bound to exchange "interop-feed"
    "exchange": "interop-exchange",  # AMQP publishes to exchange "interop-exchange", Kafka reads
    "exchange-ref": "interop-exchange-ref",  # the same keys by librdkafka's murmur2 partitioner
}
PARTITIONS = {"kafka-4p": 4, "feed": 4, "exchange": 4, "exchange-ref": 4}  # others have 1
# Queues bound with "#" to the exchange of TOPICS["feed"] before it is written: (name, arguments).
FEED_QUEUES = {"classic": ("interop-feed-classic", {}),
               "quorum": ("interop-feed-quorum", {"x-queue-type": "quorum"})}
CODECS = ("gzip", "snappy", "lz4", "zstd")
# The mixed-codec topic: chunks of (codec, count), each flushed as its own batches.
MIXED_CHUNKS = (("none", 40), ("gzip", 40), ("none", 30), ("zstd", 30), ("snappy", 30), ("lz4", 30))
# The C++ client cannot list a message's properties: it reads these by name (from
# kafka_messages's headers and their `#n` names; check.py expects absent ones to be absent).
CPP_PROPERTIES = ("TAGS", "KEYS", "trace-id", "bin", "ctl", "dup", "dup#2", "dup#3",
                  "\u00fcn\u00ef", "nothing", "empty")
AMQP_EXCHANGE = "interop-amqp-in"  # a topic exchange bound to the stream queue TOPICS["amqp"]
# Header names a reader must never show as native headers or properties (docs/interop.md).
RESERVED_EXACT = {"amqp.props", "amqp.exchange", "queue.priority", "amqp.expires"}
ESCAPE_B64 = "=?b64?"
ESCAPE_NULL = "=?null?"


def partitions(topic_key):
    return PARTITIONS.get(topic_key, 1)


def super_stream(topic_key):
    """The stream queues an AMQP client reads a partitioned topic through: T-0 .. T-(N-1)."""
    return [f"{TOPICS[topic_key]}-{p}" for p in range(partitions(topic_key))]


def is_reserved(name):
    return name in RESERVED_EXACT or name.startswith("rmq.")


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return None if text is None else base64.b64decode(text)


def index_prefix(i):
    """Every value starts with its message index, so a reader's copy is matched to what was sent."""
    return b"IDX:%05d:" % i


def parse_index(value):
    if value is None or len(value) < 10 or not value.startswith(b"IDX:"):
        return None
    try:
        return int(value[4:9])
    except ValueError:
        return None


# --- Kafka writes ------------------------------------------------------------------------------
def kafka_messages(base_ms, nul_free=False, count=COUNT):
    """(key, value, timestamp_ms, headers) per message. Binary values hold every byte value (NUL
    included) unless `nul_free` (the C++ RocketMQ client reads bodies as C strings); codec topic
    values repeat text so every codec really shrinks them (librdkafka sends a batch
    uncompressed when compression does not pay)."""
    messages = []
    for i in range(count):
        if i % 10 == 9:
            key = None
        elif i % 25 == 3:
            key = b"\xffbinary-key\x00%d" % i  # not UTF-8: AMQP gets it in x-key
        else:
            key = f"k-{i}-\u00e9".encode()
        if nul_free:
            value = index_prefix(i) + (f"codec text {i} \u00e9\u2713 " * (8 + i % 5)).encode()
        else:
            value = index_prefix(i) + bytes((j * 7 + i) % 256 for j in range(256 + i % 17))
        headers = [
            ("trace-id", f"t-{i}".encode()),
            ("bin", bytes([0xFF, 0xFE, i % 256, 0x00, 0x80])),
            ("ctl", b"a\x01b\x02c"),
            ("dup", b"one"),
            ("\u00fcn\u00ef", f"v\u00e4lue \u2713 {i}".encode()),
            ("dup", b"two"),
        ]
        if i % 3 == 0:
            headers.append(("nothing", None))
        if i % 4 == 0:
            headers.append(("empty", b""))
        if i % 5 == 0:
            headers.append(("dup", None))
        timestamp = base_ms - 3_600_000 + i * 1001 + 7
        messages.append((key, value, timestamp, headers))
    return messages


def codec_plan(codec):
    """[(compression.type, first index, count)] for a codec topic."""
    if codec == "mixed":
        plan, start = [], 0
        for name, count in MIXED_CHUNKS:
            plan.append((name, start, count))
            start += count
        assert start == COUNT
        return plan
    return [(codec, 0, COUNT)]


# --- AMQP writes -------------------------------------------------------------------------------
AMQP_PROPERTY_HEADERS = (  # (pika attribute, header name), in docs/interop.md order
    ("content_type", "amqp.content-type"),
    ("content_encoding", "amqp.content-encoding"),
    ("delivery_mode", "amqp.delivery-mode"),
    ("priority", "amqp.priority"),
    ("correlation_id", "amqp.correlation-id"),
    ("reply_to", "amqp.reply-to"),
    ("expiration", "amqp.expiration"),
    ("message_id", "amqp.message-id"),
    ("type", "amqp.type"),
    ("user_id", "amqp.user-id"),
    ("app_id", "amqp.app-id"),
    ("cluster_id", "amqp.cluster-id"),
)


def amqp_messages(base_s, count=COUNT):
    """(routing_key, body, properties) per message; `properties` are pika BasicProperties keyword
    arguments, `headers` an ordered dict of every field type pika can write (pika 1.4 cannot
    write floats: its encoder has no `f`/`d` case, so the float text form is not exercised)."""
    messages = []
    for i in range(count):
        routing_key = "" if i % 10 == 9 else f"a-key-{i}-\u00fc"
        body = index_prefix(i) + bytes((j * 13 + i) % 256 for j in range(200 + i % 11))
        headers = {
            "s": f"text-{i}-\u2713",
            "x": bytes([0, 1, 2, 0xFF, i % 256]),
            "xs": b"utf8 bytes",
            "t": i % 2 == 0,
            "n": -42 - i,
            "big": 2**40 + i,
            "dec": decimal.Decimal("123.45"),
            "dec2": decimal.Decimal("0.05"),
            "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "void": None,
            "arr": [i, "b", b"\xff", None],
            "empty-arr": [],
            "tbl": {"a": 1, "s": "x", "bin": b"\xfe", "u": b"ok", "nested": [1, [2, 3]],
                    "none": None, "yes": True},
            "arr2": [{"k": "v"}, [1, 2]],
        }
        properties = {
            "headers": headers,
            "content_type": "application/x-interop",
            "delivery_mode": 2 if i % 3 else 1,
            "message_id": f"msg-{i}",
            "app_id": "interop",
        }
        if i % 7 != 5:
            properties["timestamp"] = base_s - 7200 + i
        if i % 2 == 0:
            properties["correlation_id"] = f"corr-{i}"
            properties["reply_to"] = "replies"
        if i % 4 == 1:
            properties["priority"] = i % 10
            properties["content_encoding"] = "identity"
            properties["type"] = "interop.kind"
        messages.append((routing_key, body, properties))
    return messages


def _json_form(value):
    """A value inside an AMQP table or a nested array, as docs/interop.md's JSON form."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": b64(value)}
    if isinstance(value, dict):
        return {k: _json_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_form(v) for v in value]
    if isinstance(value, (decimal.Decimal, datetime.datetime)):
        raise ValueError("not used nested in this plan")
    return value


def _amqp_field_text(value):
    """The header matcher(s) of one AMQP table value (a list for an array, one per element)."""
    if isinstance(value, str):
        return [("bytes", value.encode())]
    if isinstance(value, bytes):
        return [("bytes", value)]
    if isinstance(value, bool):
        return [("bytes", b"true" if value else b"false")]
    if isinstance(value, int):
        return [("bytes", str(value).encode())]
    if isinstance(value, float):
        if value != value:
            text = "NaN"
        elif value in (float("inf"), float("-inf")):
            text = "inf" if value > 0 else "-inf"
        else:
            text = repr(value)
        return [("bytes", text.encode())]
    if isinstance(value, decimal.Decimal):
        return [("bytes", str(value).encode())]
    if isinstance(value, datetime.datetime):
        return [("bytes", str(int(value.replace(tzinfo=datetime.timezone.utc).timestamp())).encode())]
    if value is None:
        return [("null",)]
    if isinstance(value, dict):
        return [("json", _json_form(value))]
    if isinstance(value, list):
        out = []
        for element in value:
            if isinstance(element, (list, dict)):
                out.append(("json", _json_form(element)))
            else:
                out.extend(_amqp_field_text(element))
        return out
    raise ValueError(f"no text form for {value!r}")


def amqp_expected_headers(properties):
    """The non-reserved record headers an AMQP publish stores, in order: the table, then one per
    set basic property."""
    headers = []
    for name, value in properties.get("headers", {}).items():
        headers.extend((name, matcher) for matcher in _amqp_field_text(value))
    for attribute, name in AMQP_PROPERTY_HEADERS:
        if attribute in properties:
            headers.append((name, ("bytes", str(properties[attribute]).encode())))
    return headers


# --- RocketMQ read form ------------------------------------------------------------------------
def rocketmq_escape(data):
    """A property name or value (bytes or None) as a RocketMQ reader must see it."""
    if data is None:
        return ESCAPE_NULL
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return ESCAPE_B64 + b64(data)
    if (not data or any(c in data for c in b"\x00\x01\x02") or text.startswith(ESCAPE_B64)
            or text == ESCAPE_NULL):
        return ESCAPE_B64 + b64(data)
    return text


def rocketmq_properties(headers, key):
    """Expected properties (name, matcher) from a record's (name, matcher) headers and key:
    reserved dropped, names and values escaped, repeated names numbered, KEYS from the key."""
    out, seen = [], {}
    has_keys = any(name == "KEYS" for name, _ in headers)
    for name, matcher in headers:
        if is_reserved(name):
            continue
        escaped = rocketmq_escape(name.encode())
        seen[escaped] = seen.get(escaped, 0) + 1
        if seen[escaped] > 1:
            escaped = f"{escaped}#{seen[escaped]}"
        if matcher[0] == "json":
            out.append((escaped, matcher))
        else:
            value = None if matcher[0] == "null" else matcher[1]
            out.append((escaped, ("bytes", rocketmq_escape(value).encode())))
    if key is not None and not has_keys:
        out.append(("KEYS", ("bytes", rocketmq_escape(key).encode())))
    return out


def matches(matcher, actual):
    """Whether header value `actual` (bytes or None) satisfies `matcher`."""
    if matcher[0] == "null":
        return actual is None
    if matcher[0] == "bytes":
        return actual == matcher[1]
    if not isinstance(actual, bytes):  # null, an array, or a type no text form produces
        return False
    try:
        return json.loads(actual) == matcher[1]
    except ValueError:
        return False


def describe(matcher):
    if matcher[0] == "null":
        return "null"
    if matcher[0] == "json":
        return "json " + json.dumps(matcher[1])
    return repr(matcher[1])
