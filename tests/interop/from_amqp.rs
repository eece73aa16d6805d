//! AMQP → Kafka and AMQP → RocketMQ: 1,000 messages lapin published through a topic exchange
//! into a stream (routing keys ASCII, Cyrillic, with a space, or empty; bodies binary or empty;
//! `headers` tables with every field type: long strings with 0x00/0x01/0x02 and non-UTF-8
//! bytes, byte arrays, booleans, every integer width, floats, decimals, timestamps, void,
//! arrays, nested tables; every basic property; some messages with no properties at all), read
//! by librdkafka and by a RocketMQ push consumer and checked against docs/interop.md.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray};

use crate::amqp::{publish_all, stream_publisher};
use crate::broker::TestBroker;
use crate::checks::Checks;
use crate::from_kafka::COUNT;
use crate::kafka::read_exactly as kafka_read;
use crate::mapping::{
    Expected, amqp_publish_headers, headers_match, is_reserved, long, properties_match,
    rocketmq_properties, table,
};
use crate::rmq::{now_ms, read_exactly as rocketmq_read};
use crate::rocketmq::runtime;

type Publish = (String, Vec<u8>, BasicProperties);

const EXCHANGE: &str = "interop-in";

fn headers_table(n: usize) -> lapin::types::FieldTable {
    let array = |values: Vec<AMQPValue>| AMQPValue::FieldArray(FieldArray::from(values));
    let mut entries = vec![
        ("s-bin", long(vec![0x00, 0x01, 0x02, 0xFF, n as u8])),
        ("s-text", long(format!("text-{n}"))),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0xDE, 0xAD, 0x01, 0x02])),
        ),
        ("bool", AMQPValue::Boolean(n.is_multiple_of(2))),
        ("i8", AMQPValue::ShortShortInt(-5)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-300)),
        ("u16", AMQPValue::ShortUInt(60_000)),
        ("i32", AMQPValue::LongInt(-70_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-(n as i64) * 1_000_000_007)),
        ("f32", AMQPValue::Float(0.1)),
        ("f64", AMQPValue::Double(1.5)),
        (
            "dec",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12_345,
            }),
        ),
        (
            "dec-small",
            AMQPValue::DecimalValue(DecimalValue { scale: 3, value: 5 }),
        ),
        ("ts", AMQPValue::Timestamp(1_700_000_000 + n as u64)),
        ("void", AMQPValue::Void),
        (
            "arr",
            array(vec![
                long("a"),
                AMQPValue::LongInt(7),
                AMQPValue::Void,
                AMQPValue::Boolean(false),
            ]),
        ),
        ("arr-empty", array(Vec::new())),
        (
            "arr-nested",
            array(vec![
                AMQPValue::FieldTable(table(vec![("a", AMQPValue::LongInt(1))])),
                array(vec![AMQPValue::LongInt(2), long("x")]),
            ]),
        ),
        (
            "nested",
            AMQPValue::FieldTable(table(vec![
                ("k", long("v")),
                ("n", AMQPValue::LongInt(n as i32)),
                ("bin", long(vec![0xFF, 0xFE])),
                ("list", array(vec![AMQPValue::Boolean(true), long("x")])),
                (
                    "inner",
                    AMQPValue::FieldTable(table(vec![("z", AMQPValue::Void)])),
                ),
                ("f", AMQPValue::Double(2.5)),
            ])),
        ),
    ];
    if n.is_multiple_of(50) {
        entries.push(("nan", AMQPValue::Double(f64::NAN)));
        entries.push(("inf", AMQPValue::Double(f64::INFINITY)));
    }
    table(entries)
}

/// The messages lapin publishes; `base_seconds` is the first `timestamp` property.
fn amqp_messages(count: usize, base_seconds: u64) -> Vec<Publish> {
    (0..count)
        .map(|n| {
            let routing_key = match n % 10 {
                9 => String::new(),
                4 => format!("ключ.{n}"),
                6 => format!("a b.{n}"),
                _ => format!("rk.{n}"),
            };
            let body = if n == 0 {
                Vec::new()
            } else {
                let mut body = format!("body-{n}-").into_bytes();
                body.extend_from_slice(&[0x00, 0x01, 0x02, 0xFF, n as u8]);
                body
            };
            let timestamped = BasicProperties::default()
                .with_timestamp(base_seconds + n as u64)
                .with_headers(headers_table(n));
            let properties = match n % 10 {
                9 => BasicProperties::default(),
                _ if n % 3 == 0 => timestamped
                    .with_content_type("application/octet-stream".into())
                    .with_content_encoding("identity".into())
                    .with_delivery_mode(2)
                    .with_priority((n % 10) as u8)
                    .with_correlation_id(format!("corr-{n}").into())
                    .with_reply_to("replies".into())
                    .with_expiration("3600000".into())
                    .with_message_id(format!("msg-{n}").into())
                    .with_type("interop.test".into())
                    .with_user_id("guest".into())
                    .with_app_id("interop-suite".into())
                    .with_cluster_id("cluster-a".into()),
                _ if n % 3 == 1 => timestamped.with_content_type("text/plain".into()),
                _ => timestamped.with_delivery_mode(1).with_priority(0),
            };
            (routing_key, body, properties)
        })
        .collect()
}

/// Publishes [`amqp_messages`] into a stream bound to [`EXCHANGE`]; returns them with the
/// wall-clock window (ms) of the run, for messages without a `timestamp` property.
async fn write_with_amqp(broker: &mut TestBroker, stream: &str) -> (Vec<Publish>, (i64, i64)) {
    let base_seconds = (now_ms() / 1000 - 7_200) as u64;
    let messages = amqp_messages(COUNT, base_seconds);
    let (connection, channel) = stream_publisher(broker.addr("amqp"), EXCHANGE, stream).await;
    let before = now_ms();
    publish_all(&channel, EXCHANGE, &messages).await;
    let after = now_ms();
    let _ = connection.close(200, "done".into()).await;
    (messages, (before, after))
}

fn key_of(routing_key: &str) -> Option<Vec<u8>> {
    (!routing_key.is_empty()).then(|| routing_key.as_bytes().to_vec())
}

fn timestamp_ok(properties: &BasicProperties, window: (i64, i64), actual: i64) -> bool {
    match properties.timestamp() {
        Some(seconds) => actual == *seconds as i64 * 1000,
        None => (window.0 - 1_000..=window.1 + 1_000).contains(&actual),
    }
}

#[test]
fn amqp_to_kafka_1000_messages() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    runtime().block_on(async {
        let stream = "amqp-to-kafka";
        let (messages, window) = write_with_amqp(&mut broker, stream).await;
        let reader = tokio::task::spawn_blocking(move || kafka_read(&bootstrap, stream, 1, COUNT));
        let got = reader.await.expect("Kafka reader");
        let mut checks = Checks::default();
        for (n, ((routing_key, body, properties), fetched)) in messages.iter().zip(&got).enumerate()
        {
            let record = &fetched.record;
            checks.eq("order (offset)", n, fetched.offset, n as i64);
            checks.eq("value = body", n, record.value.as_ref(), Some(body));
            checks.eq(
                "key = routing key",
                n,
                record.key.clone(),
                key_of(routing_key),
            );
            checks.that(
                "timestamp = timestamp property × 1000 (else broker time)",
                n,
                timestamp_ok(properties, window, record.timestamp),
                || format!("got {} for {:?}", record.timestamp, properties.timestamp()),
            );
            let (reserved, plain): (Vec<_>, Vec<_>) = record
                .headers
                .iter()
                .cloned()
                .partition(|(name, _)| is_reserved(name));
            let expected = amqp_publish_headers(properties);
            checks.that(
                "headers (text form, in order)",
                n,
                headers_match(&plain, &expected),
                || format!("got {plain:?}, want {expected:?}"),
            );
            let exchange = reserved
                .iter()
                .find(|(name, _)| name == "amqp.exchange")
                .map(|(_, value)| value.clone());
            checks.eq(
                "reserved amqp.exchange",
                n,
                exchange,
                Some(Some(EXCHANGE.as_bytes().to_vec())),
            );
            checks.that(
                "reserved amqp.props",
                n,
                reserved.iter().any(|(name, _)| name == "amqp.props"),
                || format!("reserved headers {reserved:?}"),
            );
        }
        checks.finish("AMQP → Kafka", COUNT);
    });
}

#[test]
fn amqp_to_rocketmq_1000_messages() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    runtime().block_on(async {
        let stream = "amqp-to-rocketmq";
        let (messages, window) = write_with_amqp(&mut broker, stream).await;
        let read = rocketmq_read(&namesrv, "CID-amqp-to-rocketmq", stream, COUNT).await;
        let mut checks = Checks::default();
        checks.eq("no redeliveries", 0, read.redelivered, 0);
        for (n, ((routing_key, body, properties), pulled)) in
            messages.iter().zip(&read.messages).enumerate()
        {
            checks.eq(
                "order (queue offset)",
                n,
                (pulled.queue_id, pulled.queue_offset),
                (0, n as i64),
            );
            checks.eq("body", n, &pulled.body, body);
            let stored: Vec<(String, Expected)> = amqp_publish_headers(properties);
            let expected = rocketmq_properties(&stored, key_of(routing_key).as_deref());
            checks.that(
                "properties (text form escaped, #n, KEYS = routing key)",
                n,
                properties_match(&pulled.properties, &expected),
                || format!("got {:?}, want {expected:?}", pulled.properties),
            );
            checks.that(
                "born timestamp = timestamp property × 1000 (else broker time)",
                n,
                timestamp_ok(properties, window, pulled.born_timestamp),
                || {
                    format!(
                        "got {} for {:?}",
                        pulled.born_timestamp,
                        properties.timestamp()
                    )
                },
            );
            checks.eq(
                "store timestamp = born timestamp",
                n,
                pulled.store_timestamp,
                pulled.born_timestamp,
            );
        }
        checks.finish("AMQP → RocketMQ", COUNT);
    });
}
