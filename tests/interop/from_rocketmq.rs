//! RocketMQ → Kafka and RocketMQ → AMQP: 1,000 messages rocketmq-client-rust sent one by one
//! into a one-queue topic (binary bodies; tags; one key, two space-separated keys, or none;
//! text user properties, UTF-8 beyond ASCII, JSON text, a value that looks like an escape),
//! read by librdkafka and through a stream queue and checked against docs/interop.md.
//! RocketMQ properties are text only and the client keeps them in a map, so header order and
//! null or binary values are not part of this direction; the client also refuses empty bodies.

use std::collections::{BTreeMap, HashMap};

use lapin::types::AMQPValue;
use rocketmq_model::common::message::message_single::Message;

use crate::amqp::read_stream;
use crate::broker::TestBroker;
use crate::checks::Checks;
use crate::from_kafka::COUNT;
use crate::kafka::{create_topic, read_exactly as kafka_read};
use crate::mapping::is_reserved;
use crate::rmq::{producer, send_in_order};
use crate::rocketmq::{Client, runtime};

/// A property's name and a check of its value.
type PropertyCheck = (&'static str, fn(&str) -> bool);

/// Properties the client adds to every message it sends.
const CLIENT_SET: [PropertyCheck; 2] = [
    ("UNIQ_KEY", |value| value.len() == 32),
    ("WAIT", |value| value == "true"),
];

/// A message to send and the properties it is sent with (besides [`CLIENT_SET`]).
struct Sent {
    message: Message,
    body: Vec<u8>,
    keys: Option<String>,
    properties: HashMap<String, String>,
}

fn rocketmq_messages(topic: &str, count: usize) -> Vec<Sent> {
    (0..count)
        .map(|n| {
            let mut body = format!("rmq-{n}-").into_bytes();
            body.extend_from_slice(&[0x00, 0x01, 0x02, 0xFF, 0xFE, n as u8]);
            let tag = if n % 2 == 0 { "TagA" } else { "TagB" };
            let keys = match n % 10 {
                3 => Some(format!("k1-{n} k2-{n}")),
                7 => None,
                _ => Some(format!("key-{n}")),
            };
            let mut user: Vec<(&str, String)> = vec![
                ("p-text", format!("v-{n}")),
                ("p-utf8", "grüße € ключ".to_owned()),
                ("p-json", r#"{"a":[1,2]}"#.to_owned()),
            ];
            if n % 10 == 0 {
                user.push(("p-escape-like", "=?b64?as-sent".to_owned()));
            }
            let mut builder = Message::builder().topic(topic).tags(tag).body(body.clone());
            builder = match (n % 10, &keys) {
                (3, _) => builder.keys(vec![format!("k1-{n}"), format!("k2-{n}")]),
                (_, Some(key)) => builder.key(key.as_str()),
                (_, None) => builder,
            };
            let mut properties: HashMap<String, String> =
                [("TAGS".to_owned(), tag.to_owned())].into_iter().collect();
            if let Some(keys) = &keys {
                properties.insert("KEYS".to_owned(), keys.clone());
            }
            for (name, value) in user {
                builder = builder
                    .raw_property(name, value.as_str())
                    .expect("user property");
                properties.insert(name.to_owned(), value);
            }
            Sent {
                message: builder.build().expect("message"),
                body,
                keys,
                properties,
            }
        })
        .collect()
}

/// Creates a one-partition topic (so the producer's route has one queue) and sends the
/// messages in order; returns what was sent and each message's send window (ms).
async fn write_with_rocketmq(
    broker: &mut TestBroker,
    topic: &str,
) -> Vec<(Vec<u8>, Option<String>, HashMap<String, String>, (i64, i64))> {
    create_topic(&broker.addr("kafka").to_string(), topic, 1).await;
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let client = Client::new("interop-producer").expect("RocketMQ client");
    let mut producer = producer(&client, &namesrv, "PID-interop").await;
    let sent = rocketmq_messages(topic, COUNT);
    let mut described = Vec::with_capacity(sent.len());
    let mut messages = Vec::with_capacity(sent.len());
    for item in sent {
        described.push((item.body, item.keys, item.properties));
        messages.push(item.message);
    }
    let windows = send_in_order(&producer, messages).await;
    producer.shutdown().await;
    client.shutdown().await;
    described
        .into_iter()
        .zip(windows)
        .map(|((body, keys, properties), sent)| (body, keys, properties, sent.window))
        .collect()
}

/// Checks that `actual` (name -> value) holds exactly the sent properties plus the ones the
/// client sets itself.
fn sent_properties_match(
    actual: &BTreeMap<String, Vec<u8>>,
    sent: &HashMap<String, String>,
) -> bool {
    let client_set_ok = CLIENT_SET.iter().all(|(name, ok)| {
        actual
            .get(*name)
            .and_then(|value| std::str::from_utf8(value).ok())
            .is_some_and(ok)
    });
    let sent_ok = sent
        .iter()
        .all(|(name, value)| actual.get(name).map(Vec::as_slice) == Some(value.as_bytes()));
    client_set_ok && sent_ok && actual.len() == sent.len() + CLIENT_SET.len()
}

fn in_window(window: (i64, i64), actual: i64) -> bool {
    (window.0..=window.1).contains(&actual)
}

#[test]
fn rocketmq_to_kafka_1000_messages() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    runtime().block_on(async {
        let topic = "rocketmq-to-kafka";
        let sent = write_with_rocketmq(&mut broker, topic).await;
        let reader = tokio::task::spawn_blocking(move || kafka_read(&bootstrap, topic, 1, COUNT));
        let got = reader.await.expect("Kafka reader");
        let mut checks = Checks::default();
        for (n, ((body, keys, properties, window), fetched)) in sent.iter().zip(&got).enumerate() {
            let record = &fetched.record;
            checks.eq("order (offset)", n, fetched.offset, n as i64);
            checks.eq("value = body", n, record.value.as_ref(), Some(body));
            checks.eq(
                "key = KEYS as sent",
                n,
                record.key.clone(),
                keys.as_ref().map(|k| k.as_bytes().to_vec()),
            );
            checks.that(
                "timestamp = born timestamp",
                n,
                in_window(*window, record.timestamp),
                || format!("{} outside {window:?}", record.timestamp),
            );
            let plain: Vec<_> = record
                .headers
                .iter()
                .filter(|(name, _)| !is_reserved(name))
                .collect();
            let as_map: BTreeMap<String, Vec<u8>> = plain
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.clone()?)))
                .collect();
            checks.that(
                "headers = properties as sent (UTF-8, once each)",
                n,
                as_map.len() == plain.len() && sent_properties_match(&as_map, properties),
                || format!("got {plain:?}, sent {properties:?} + {CLIENT_SET:?}"),
            );
        }
        checks.finish("RocketMQ → Kafka", COUNT);
    });
}

#[test]
fn rocketmq_to_amqp_1000_messages() {
    let mut broker = TestBroker::start();
    let amqp = broker.addr("amqp");
    runtime().block_on(async {
        let topic = "rocketmq-to-amqp";
        let sent = write_with_rocketmq(&mut broker, topic).await;
        let got = read_stream(amqp, topic, COUNT).await;
        let mut checks = Checks::default();
        for (n, ((body, keys, properties, window), delivered)) in sent.iter().zip(&got).enumerate()
        {
            checks.eq(
                "order (x-stream-offset)",
                n,
                delivered.stream_offset,
                Some(n as i64),
            );
            checks.eq("body", n, &delivered.body, body);
            checks.eq(
                "routing key = KEYS",
                n,
                delivered.routing_key.as_str(),
                keys.as_deref().unwrap_or(""),
            );
            checks.eq("exchange is empty", n, delivered.exchange.as_str(), "");
            let seconds = delivered.properties.timestamp().map(|s| s as i64);
            checks.that(
                "timestamp = born timestamp / 1000",
                n,
                seconds.is_some_and(|s| in_window((window.0 / 1000, window.1 / 1000), s)),
                || format!("{seconds:?} outside {window:?} ms"),
            );
            let mut as_map = BTreeMap::new();
            let mut long_strings = true;
            for (name, value) in &delivered.headers {
                match value {
                    AMQPValue::LongString(bytes) => {
                        as_map.insert(name.clone(), bytes.as_bytes().to_vec());
                    }
                    _ => long_strings = false,
                }
            }
            checks.that(
                "headers = properties as long strings",
                n,
                long_strings && sent_properties_match(&as_map, properties),
                || format!("got {:?}, sent {properties:?}", delivered.headers),
            );
        }
        checks.finish("RocketMQ → AMQP", COUNT);
    });
}
