//! The Kafka frontend end to end: the real `tributary` binary driven by librdkafka (the `rdkafka`
//! crate, vendored build).

#[path = "support/broker.rs"]
mod broker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);

/// What a test compares: partition, key, value and headers of one record.
type Seen = (
    i32,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

fn assigned_consumer(bootstrap: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

fn seen(message: &impl Message) -> Seen {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    (
        message.partition(),
        message.key().map(<[u8]>::to_vec),
        message.payload().map(<[u8]>::to_vec),
        headers,
    )
}

/// Polls until `count` records arrived (failing after [`WAIT`]).
fn consume(consumer: &BaseConsumer, count: usize) -> Vec<(Seen, i64)> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records arrived",
            got.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume error");
            got.push((seen(&message), message.offset()));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_round_trip_is_byte_identical() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let producer = producer(&bootstrap, &[]);
    let topic = "round-trip";
    let mut sent: Vec<Seen> = Vec::new();
    for i in 0..60u32 {
        let partition = (i % 4) as i32;
        let key = format!("key-{i}").into_bytes();
        // Binary values, including every byte value and an empty one.
        let value: Vec<u8> = (0..(i * 7)).map(|b| (b % 256) as u8).collect();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some(&i.to_be_bytes()[..]),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&value)
            .headers(headers);
        let delivery = producer
            .send(record, WAIT)
            .await
            .unwrap_or_else(|(err, _)| panic!("delivery {i} failed: {err}"));
        assert_eq!(delivery.partition, partition);
        sent.push((
            partition,
            Some(key),
            Some(value),
            vec![
                ("trace".to_owned(), Some(i.to_be_bytes().to_vec())),
                ("empty".to_owned(), None),
            ],
        ));
    }

    let consumer = assigned_consumer(&bootstrap, topic, 4);
    let got = consume(&consumer, sent.len());
    // Per partition, records come back in produce order with dense offsets from 0.
    let mut by_partition: BTreeMap<i32, Vec<(Seen, i64)>> = BTreeMap::new();
    for (record, offset) in got {
        by_partition
            .entry(record.0)
            .or_default()
            .push((record, offset));
    }
    for partition in 0..4 {
        let expected: Vec<&Seen> = sent.iter().filter(|r| r.0 == partition).collect();
        let actual = by_partition.remove(&partition).unwrap_or_default();
        assert_eq!(actual.len(), expected.len(), "partition {partition}");
        for (at, ((record, offset), wanted)) in actual.iter().zip(expected).enumerate() {
            assert_eq!(record, wanted, "partition {partition} record {at}");
            assert_eq!(*offset, at as i64);
        }
    }
}
