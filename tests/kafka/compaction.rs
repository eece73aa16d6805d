//! Log compaction through librdkafka: a compacted topic created with its configs through the
//! admin API, 100,000 records over 1,000 keys with tombstones, the broker's own cleaner (a
//! short interval), and a consumer from offset 0 that must see exactly the latest value of each
//! live key, in offset order, also after a SIGKILL while the cleaner runs. Also: keyless records
//! refused, configs described, and the one-replica `min.insync.replicas` rule.

use crate::broker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::TestBroker;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: usize = 100_000;
const KEYS: usize = 1_000;
const WAIT: Duration = Duration::from_secs(30);
/// The cleaner needs two passes (the second drops the tombstones) plus a segment roll.
const CLEANED_WITHIN: Duration = Duration::from_secs(90);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Key `i % KEYS`; the last record of every tenth key is a tombstone.
fn record_at(i: usize) -> (String, Option<String>) {
    let key = i % KEYS;
    let tombstone = key.is_multiple_of(10) && i + KEYS >= RECORDS;
    (
        format!("key-{key}"),
        (!tombstone).then(|| format!("value-{i}")),
    )
}

/// Every record from offset 0 up to the high watermark, as (offset, key, value).
fn read_from_start(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, WAIT)
        .expect("watermarks");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let position = consumer
            .position()
            .expect("position")
            .find_partition(topic, 0)
            .and_then(|p| match p.offset() {
                Offset::Offset(at) => Some(at),
                _ => None,
            })
            .unwrap_or(0);
        if position >= high {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck at offset {position} of {high}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume error");
            got.push((
                message.offset(),
                String::from_utf8(message.key().expect("every record has a key").to_vec())
                    .expect("utf-8"),
                message
                    .payload()
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf-8")),
            ));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_of_each_live_key() {
    let mut broker = TestBroker::start_with_env(
        &[],
        &[
            ("TRIBUTARY_STORAGE_CLEANER_INTERVAL_MS", "300"),
            ("TRIBUTARY_STORAGE_RETENTION_CHECK_INTERVAL_MS", "300"),
        ],
    );
    let bootstrap = broker.addr("kafka").to_string();
    let admin = admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let topic = "compacted";
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")
                .set("segment.bytes", "65536")
                // The active segment is never cleaned: roll it soon after the last write.
                .set("segment.ms", "1000")
                .set("delete.retention.ms", "0")
                .set("min.cleanable.dirty.ratio", "0.01")],
            &options,
        )
        .await
        .expect("create topics");
    assert!(created[0].is_ok(), "{created:?}");
    let refused = admin
        .create_topics(
            &[NewTopic::new("two-isr", 1, TopicReplication::Fixed(1))
                .set("min.insync.replicas", "2")],
            &options,
        )
        .await
        .expect("create topics");
    assert!(
        matches!(&refused[0], Err((_, RDKafkaErrorCode::InvalidConfig))),
        "{refused:?}"
    );

    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .expect("describe configs");
    let resource = described[0].as_ref().expect("topic configs");
    let policy = resource.get("cleanup.policy").expect("cleanup.policy");
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert_eq!(policy.source, ConfigSource::DynamicTopic);
    let ratio = resource
        .get("min.cleanable.dirty.ratio")
        .expect("min.cleanable.dirty.ratio");
    assert_eq!(ratio.value.as_deref(), Some("0.01"));
    let lag = resource.get("min.compaction.lag.ms").expect("lag");
    assert_eq!(lag.value.as_deref(), Some("0"));
    assert_eq!(lag.source, ConfigSource::Default);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let keyless = producer
        .send(FutureRecord::<(), str>::to(topic).payload("no key"), WAIT)
        .await;
    assert!(
        matches!(
            &keyless,
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
                _
            ))
        ),
        "{keyless:?}"
    );
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(5_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let (key, value) = record_at(i);
            let mut record = FutureRecord::<String, str>::to(topic).key(&key);
            if let Some(value) = value.as_deref() {
                record = record.payload(value);
            }
            deliveries.push(producer.send_result(record).expect("queued"));
            latest.insert(key, value);
        }
        for delivery in deliveries {
            delivery
                .await
                .expect("delivery future")
                .unwrap_or_else(|(err, _)| panic!("delivery failed: {err}"));
        }
    }
    let expected: Vec<(String, String)> = {
        let mut live: Vec<(usize, String, String)> = latest
            .iter()
            .filter_map(|(key, value)| {
                let value = value.clone()?;
                let at = value.trim_start_matches("value-").parse().expect("index");
                Some((at, key.clone(), value))
            })
            .collect();
        live.sort();
        live.into_iter()
            .map(|(_, key, value)| (key, value))
            .collect()
    };
    assert_eq!(expected.len(), KEYS - KEYS / 10);
    drop(producer);
    // SIGKILL while the cleaner is likely at work (one tick after the last write): whatever
    // step it was at, the restarted broker must end with the same cleaned log.
    tokio::time::sleep(Duration::from_millis(400)).await;
    broker.kill_and_restart();
    let bootstrap = broker.addr("kafka").to_string();

    let deadline = Instant::now() + CLEANED_WITHIN;
    let seen = loop {
        let seen = read_from_start(&bootstrap, topic);
        // A valid, ordered log at every read, cleaned or not.
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "offsets not ascending"
        );
        let records: Vec<(String, String)> = seen
            .iter()
            .filter_map(|(_, key, value)| Some((key.clone(), value.clone()?)))
            .collect();
        let tombstones = seen.iter().filter(|(_, _, value)| value.is_none()).count();
        if records == expected && tombstones == 0 {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "not cleaned within {CLEANED_WITHIN:?}: {} records, {tombstones} tombstones",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Offsets are the original ones: the record of `value-i` sits at offset i + 0 (the one
    // keyless record was refused, so offsets start at 0).
    for (offset, _, value) in &seen {
        let index: i64 = value
            .as_deref()
            .and_then(|v| v.trim_start_matches("value-").parse().ok())
            .expect("value");
        assert_eq!(*offset, index, "record kept at its original offset");
    }
    drop(broker);
}

/// `compression.type=zstd` and `message.timestamp.type=LogAppendTime` set at creation: an
/// uncompressed producer's records come back whole, stamped with the broker's append time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recompressed_log_append_time_topic_reads_back_whole() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let admin = admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let topic = "stamped";
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))
                .set("compression.type", "zstd")
                .set("message.timestamp.type", "LogAppendTime")],
            &options,
        )
        .await
        .expect("create topics");
    assert!(created[0].is_ok(), "{created:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .expect("describe configs");
    let resource = described[0].as_ref().expect("topic configs");
    let codec = resource.get("compression.type").expect("compression.type");
    assert_eq!(codec.value.as_deref(), Some("zstd"));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for i in 0..100 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .timestamp(1_000 + i),
                WAIT,
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("delivery {i} failed: {err}"));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "stamped-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut got = 0i64;
    while got < 100 {
        assert!(Instant::now() < deadline, "only {got} records");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume error");
        assert_eq!(message.offset(), got);
        assert_eq!(message.payload(), Some(format!("v{got}").as_bytes()));
        match message.timestamp() {
            rdkafka::Timestamp::LogAppendTime(at) => assert!(at >= before, "{at} < {before}"),
            other => panic!("record {got}: {other:?}, not the log append time"),
        }
        got += 1;
    }
    drop(broker);
}
