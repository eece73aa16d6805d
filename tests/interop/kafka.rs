//! librdkafka (rdkafka) on the Kafka side: topic creation, producing records exactly as given
//! (key, value, CreateTime, headers), reading partitions whole with exact counts, and a look at
//! the stored batches' codec bits so codec tests know the producer really compressed.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::mapping::Record;

const WAIT: Duration = Duration::from_secs(30);

/// Creates `topic` with `partitions` partitions.
pub(crate) async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for result in results {
        result.unwrap_or_else(|(name, err)| panic!("create topic {name}: {err:?}"));
    }
}

/// A producer with acks=all and `extra` settings (e.g. `compression.codec`).
pub(crate) fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "30000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

/// Sends `records` to `partition` of `topic` in order (all enqueued before any is awaited, so
/// they share batches) and waits for every delivery.
pub(crate) async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    records: &[Record],
) {
    let mut deliveries = Vec::with_capacity(records.len());
    for record in records {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name.as_str(),
                value: value.as_deref(),
            });
        }
        let mut future = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .timestamp(record.timestamp)
            .headers(headers);
        if let Some(key) = &record.key {
            future = future.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future = future.payload(value.as_slice());
        }
        let delivery = producer
            .send_result(future)
            .unwrap_or_else(|(err, _)| panic!("enqueue: {err}"));
        deliveries.push(delivery);
    }
    for (n, delivery) in deliveries.into_iter().enumerate() {
        delivery
            .await
            .expect("delivery future")
            .unwrap_or_else(|(err, _)| panic!("delivery {n}: {err}"));
    }
    producer.flush(WAIT).expect("flush");
}

/// A record as a Kafka consumer saw it.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    pub(crate) offset: i64,
    pub(crate) record: Record,
}

/// Reads `count` records of `partitions` of `topic` from the beginning, then makes sure no
/// further record shows up for a moment (exact counts). Blocking: call from a blocking task.
pub(crate) fn read_exactly(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<Fetched> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-kafka-reader"))
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
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "Kafka read only {} of {count} records of {topic}",
            got.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            got.push(fetched(&message.expect("Kafka consume")));
        }
    }
    let settle = Instant::now() + Duration::from_millis(700);
    while Instant::now() < settle {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let extra = fetched(&message.expect("Kafka consume"));
            panic!("more than {count} records in {topic}: {extra:?}");
        }
    }
    got
}

fn fetched(message: &impl Message) -> Fetched {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Fetched {
        offset: message.offset(),
        record: Record {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp: message.timestamp().to_millis().expect("a record timestamp"),
            headers,
        },
    }
}

/// The compression codec (attributes & 7) of every stored batch of `topic`, in file order,
/// read from the segment files under the broker's data directory.
pub(crate) fn stored_codecs(data_dir: &Path, topic: &str) -> Vec<u8> {
    let mut codecs = Vec::new();
    let mut segments = Vec::new();
    collect_segments(data_dir, topic, false, &mut segments);
    segments.sort();
    for segment in segments {
        let bytes = std::fs::read(&segment).expect("read segment");
        let mut at = 0;
        // Batch header: base offset (8), length (4), leader epoch (4), magic (1), crc (4),
        // attributes (2).
        while at + 23 <= bytes.len() {
            let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
            if length <= 0 {
                break;
            }
            let attributes =
                u16::from_be_bytes(bytes[at + 21..at + 23].try_into().expect("2 bytes"));
            codecs.push((attributes & 7) as u8);
            at += 12 + length as usize;
        }
    }
    codecs
}

fn collect_segments(dir: &Path, topic: &str, inside: bool, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            collect_segments(&path, topic, inside || name == topic, out);
        } else if inside && name.ends_with(".log") {
            out.push(path);
        }
    }
}

/// The names of every topic the broker lists (a metadata request for all topics creates none).
pub(crate) fn topic_names(bootstrap: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|topic| topic.name().to_owned())
        .collect()
}
