//! Kafka → AMQP and Kafka → RocketMQ: 1,000 records a librdkafka producer wrote (binary, empty
//! and null values; UTF-8, binary, over-long and null keys; headers with binary and null
//! values, repeated names, 0x01/0x02 bytes, empty values, values that look like escapes, a name
//! holding 0x02; CreateTimes with milliseconds) read through a stream queue and a push
//! consumer, each checked against the read forms of docs/interop.md.

use crate::amqp::{Delivered, read_stream};
use crate::broker::TestBroker;
use crate::checks::Checks;
use crate::kafka::{create_topic, produce, producer};
use crate::lapin_support::{sample, scrape};
use crate::mapping::{
    Header, Record, amqp_headers_table, amqp_routing_key, exact, long, properties_match,
    rocketmq_escapes, rocketmq_properties,
};
use crate::rmq::{Pulled, read_exactly};
use crate::rocketmq::runtime;

pub(crate) const COUNT: usize = 1_000;
const ESCAPED_PROPERTIES: &str = "tributary_interop_escaped_properties_total";

/// The records a Kafka producer sends; record `n` varies with `n` so every form occurs often.
pub(crate) fn kafka_records(count: usize) -> Vec<Record> {
    let base_ms = crate::rmq::now_ms() - 3_600_000;
    (0..count)
        .map(|n| {
            let key = match n % 10 {
                3 => None,
                7 => Some(vec![0xFF, 0xFE, 0x01, n as u8]),
                8 if n % 20 == 8 => Some(format!("long-{n}-{}", "k".repeat(300)).into_bytes()),
                _ => Some(format!("key-{n}").into_bytes()),
            };
            let value = match n {
                0 => Some(Vec::new()),
                _ if n % 100 == 50 => None,
                _ => {
                    let mut value = format!("value-{n}-").into_bytes();
                    value.extend_from_slice(&[0x00, 0x01, 0x02, 0xFF, 0xFE, n as u8]);
                    Some(value)
                }
            };
            Record {
                key,
                value,
                timestamp: base_ms + n as i64 * 1_001 + (n % 7) as i64,
                headers: kafka_headers(n),
            }
        })
        .collect()
}

fn kafka_headers(n: usize) -> Vec<Header> {
    if n % 10 == 9 {
        return Vec::new();
    }
    let header = |name: &str, value: Option<&[u8]>| (name.to_owned(), value.map(<[u8]>::to_vec));
    let text = format!("text-{n}");
    let first = format!("first-{n}");
    let mut headers = vec![
        header("h-text", Some(text.as_bytes())),
        header("h-bin", Some(&[0x00, 0xFF, 0x80, n as u8])),
        header("h-null", None),
        header("dup", Some(first.as_bytes())),
        header("h-ctl", Some(b"a\x01b\x02c")),
        header("dup", None),
        header("h-utf8", Some("grüße €".as_bytes())),
        header("dup", Some(b"third")),
        header("h-empty", Some(b"")),
        header("h-escape-like", Some(b"=?b64?not-really")),
        header("h-null-like", Some(b"=?null?")),
    ];
    if n.is_multiple_of(2) {
        headers.push(header("name\u{2}ctl", Some(b"named")));
    }
    if n % 50 == 1 {
        headers.push(header("KEYS", Some(b"from-a-header")));
    }
    headers
}

/// Creates a one-partition topic and writes [`kafka_records`] into it with librdkafka.
async fn write_with_kafka(broker: &mut TestBroker, topic: &str) -> Vec<Record> {
    let bootstrap = broker.addr("kafka").to_string();
    create_topic(&bootstrap, topic, 1).await;
    let records = kafka_records(COUNT);
    produce(&producer(&bootstrap, &[]), topic, 0, &records).await;
    records
}

/// Checks delivery `n` against the read form of a foreign `record` stored at `offset`.
pub(crate) fn check_amqp_read_form(
    checks: &mut Checks,
    n: usize,
    offset: i64,
    record: &Record,
    got: &Delivered,
) {
    checks.eq(
        "order (x-stream-offset)",
        n,
        got.stream_offset,
        Some(offset),
    );
    checks.eq(
        "body = value",
        n,
        &got.body,
        record.value.as_ref().unwrap_or(&Vec::new()),
    );
    checks.eq("exchange is empty", n, got.exchange.as_str(), "");
    let (routing_key, x_key) = amqp_routing_key(record.key.as_deref());
    checks.eq("routing key = key", n, &got.routing_key, &routing_key);
    checks.eq(
        "timestamp = record timestamp / 1000",
        n,
        *got.properties.timestamp(),
        Some((record.timestamp / 1000) as u64),
    );
    let mut table = amqp_headers_table(&record.headers);
    if let Some(key) = x_key {
        table.insert("x-key".to_owned(), long(key));
    }
    checks.eq("headers table", n, &got.headers, &table);
    let properties = &got.properties;
    let set_properties: Vec<&str> = [
        ("content-type", properties.content_type().is_some()),
        ("content-encoding", properties.content_encoding().is_some()),
        ("delivery-mode", properties.delivery_mode().is_some()),
        ("priority", properties.priority().is_some()),
        ("correlation-id", properties.correlation_id().is_some()),
        ("reply-to", properties.reply_to().is_some()),
        ("expiration", properties.expiration().is_some()),
        ("message-id", properties.message_id().is_some()),
        ("type", properties.kind().is_some()),
        ("user-id", properties.user_id().is_some()),
        ("app-id", properties.app_id().is_some()),
        ("cluster-id", properties.cluster_id().is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    checks.eq("no other properties", n, set_properties, Vec::new());
}

/// Checks one RocketMQ message against the read form of a foreign `record` at offset `n`.
pub(crate) fn check_rocketmq_read_form(
    checks: &mut Checks,
    n: usize,
    record: &Record,
    got: &Pulled,
) {
    checks.eq(
        "order (queue offset)",
        n,
        (got.queue_id, got.queue_offset),
        (0, n as i64),
    );
    checks.eq(
        "body = value",
        n,
        &got.body,
        record.value.as_ref().unwrap_or(&Vec::new()),
    );
    let expected = rocketmq_properties(&exact(&record.headers), record.key.as_deref());
    checks.that(
        "properties (escaped, #n, KEYS)",
        n,
        properties_match(&got.properties, &expected),
        || format!("got {:?}, want {expected:?}", got.properties),
    );
    checks.eq("born timestamp", n, got.born_timestamp, record.timestamp);
    checks.eq("store timestamp", n, got.store_timestamp, record.timestamp);
    checks.that(
        "born host = the broker's address",
        n,
        got.born_host.ip().is_loopback(),
        || format!("born host {}", got.born_host),
    );
    checks.eq(
        "flag, sysFlag bit 0, reconsume times",
        n,
        (got.flag, got.sys_flag & 1, got.reconsume_times),
        (0, 0, 0),
    );
}

#[test]
fn kafka_to_amqp_1000_records() {
    let mut broker = TestBroker::start();
    let amqp = broker.addr("amqp");
    runtime().block_on(async {
        let topic = "kafka-to-amqp";
        let records = write_with_kafka(&mut broker, topic).await;
        let got = read_stream(amqp, topic, COUNT).await;
        let mut checks = Checks::default();
        for (n, (record, got)) in records.iter().zip(&got).enumerate() {
            check_amqp_read_form(&mut checks, n, n as i64, record, got);
        }
        checks.finish("Kafka → AMQP", COUNT);
    });
}

#[test]
fn kafka_to_rocketmq_1000_records() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    runtime().block_on(async {
        let topic = "kafka-to-rocketmq";
        let records = write_with_kafka(&mut broker, topic).await;
        let read = read_exactly(&namesrv, "CID-kafka-to-rocketmq", topic, COUNT).await;
        let mut checks = Checks::default();
        checks.eq("no redeliveries", 0, read.redelivered, 0);
        for (n, (record, got)) in records.iter().zip(&read.messages).enumerate() {
            check_rocketmq_read_form(&mut checks, n, record, got);
        }
        let escapes: usize = records
            .iter()
            .map(|record| rocketmq_escapes(&record.headers, record.key.as_deref()))
            .sum();
        let metrics = scrape(broker.http_addr());
        let counted = sample(&metrics, ESCAPED_PROPERTIES).unwrap_or(0.0);
        // A message pulled twice is escaped twice, so the count is a lower bound.
        checks.that("escapes counted", 0, counted >= escapes as f64, || {
            format!("{ESCAPED_PROPERTIES} is {counted}, {escapes} escapes delivered")
        });
        checks.finish("Kafka → RocketMQ", COUNT);
    });
}
