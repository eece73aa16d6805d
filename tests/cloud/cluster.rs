//! Several real broker processes over one PostgreSQL and one object store: Metadata lists the
//! live brokers and spreads leadership, a SIGKILLed broker's partitions move to the others once
//! its lease expires, and an idempotent rdkafka producer bootstrapped with every address carries
//! on: every acknowledged record is consumed back, none twice. `/health` follows the lease.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;

use crate::broker::{TestBroker, http_get};
use crate::kafka::consumer;
use crate::services::{bucket, fresh_database, unique};

const PARTITIONS: i32 = 12;
const RECORDS: u32 = 1_500;
const LEASE_MS: u64 = 3_000;

/// Acknowledged record ids, by (partition, offset), with when the acknowledgement came; failed
/// deliveries; the retries librdkafka reported in its statistics (with `statistics.interval.ms`).
#[derive(Default)]
pub(crate) struct Acks {
    pub(crate) acked: Mutex<Vec<(i32, i64, u32, Instant)>>,
    pub(crate) failed: Mutex<Vec<String>>,
    pub(crate) retries: AtomicU64,
}

pub(crate) struct Counting(pub(crate) Arc<Acks>);

impl ClientContext for Counting {
    fn stats(&self, statistics: Statistics) {
        let retries = statistics.brokers.values().map(|b| b.txretries).sum();
        // Brokers leave the statistics when they die: keep the highest total seen.
        self.0.retries.fetch_max(retries, Ordering::Relaxed);
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let id = record_id(message);
                self.0.acked.lock().push((
                    message.partition(),
                    message.offset(),
                    id,
                    Instant::now(),
                ));
            }
            Err((error, _)) => self.0.failed.lock().push(error.to_string()),
        }
    }
}

/// The record number a payload starts with.
pub(crate) fn record_id(message: &impl Message) -> u32 {
    let payload = message.payload().expect("payload");
    u32::from_be_bytes(payload[..4].try_into().expect("id"))
}

pub(crate) fn start_broker(id: u32, database: &str, objects: &str, config: &str) -> TestBroker {
    let id = id.to_string();
    let lease = LEASE_MS.to_string();
    let mut broker = TestBroker::start_with(&[
        "--metadata-url",
        database,
        "--objects-url",
        objects,
        "--broker-id",
        &id,
        "--lease-ms",
        &lease,
        "--lease-renew-ms",
        "300",
        "--config",
        config,
    ]);
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(20));
    broker
}

pub(crate) fn health(broker: &mut TestBroker) -> u16 {
    let answer = http_get(broker.http_addr(), "/health");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The value of the unlabelled series `name` on `broker`'s `/metrics` (0 when absent).
pub(crate) fn sample(broker: &mut TestBroker, name: &str) -> u64 {
    let metrics = http_get(broker.http_addr(), "/metrics");
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// Leaders by partition, as the cluster's Metadata says.
pub(crate) fn leaders(bootstrap: &str, topic: &str) -> BTreeMap<i32, i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect()
}

/// Auto-creates `topic` with one record (id `u32::MAX`) to partition 0, then forgets its
/// acknowledgement; wait a moment before reading leaders, so every broker knows the topic.
pub(crate) fn create_by_first_send(producer: &ThreadedProducer<Counting>, topic: &str) {
    producer
        .send(
            BaseRecord::<(), _>::to(topic)
                .payload(&u32::MAX.to_be_bytes()[..])
                .partition(0),
        )
        .map_err(|(error, _)| error)
        .expect("first send");
    producer
        .flush(Duration::from_secs(30))
        .expect("first flush");
    producer.context().0.acked.lock().clear();
}

async fn produce_through_a_kill(brokers: u32) {
    let database = fresh_database("cluster").await;
    let objects = format!("s3://{}/{}", bucket(), unique("cluster"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!("[kafka]\ndefault_partitions = {PARTITIONS}\n[cluster]\nflush_interval_ms = 50\n"),
    )
    .expect("write config");
    let config = config.path().to_str().expect("utf-8").to_owned();
    let mut running: Vec<TestBroker> = (1..=brokers)
        .map(|id| start_broker(id, &database, &objects, &config))
        .collect();
    let addrs: Vec<String> = running
        .iter_mut()
        .map(|b| b.addr("kafka").to_string())
        .collect();
    let bootstrap = addrs.join(",");
    for broker in &mut running {
        assert_eq!(health(broker), 200, "a live broker holds its lease");
    }
    let topic = "spread";

    let acks = Arc::new(Acks::default());
    let producer: ThreadedProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("message.timeout.ms", "60000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create_with_context(Counting(acks.clone()))
        .expect("producer");
    create_by_first_send(&producer, topic);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = leaders(&bootstrap, topic);
    let ids: HashSet<i32> = before.values().copied().collect();
    assert_eq!(
        ids.len(),
        brokers as usize,
        "leadership spread over every broker: {before:?}"
    );

    let victim = brokers as usize; // the last broker started
    let started = Instant::now();
    for n in 0..RECORDS {
        if n == RECORDS / 3 {
            running[victim - 1].signal("KILL");
        }
        let mut payload = n.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0x5a; 60]);
        let key = format!("k{n}");
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((error, _)) => {
                    assert!(started.elapsed() < Duration::from_secs(120), "{error}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    producer
        .flush(Duration::from_secs(90))
        .expect("every record delivered or failed");
    let failed = acks.failed.lock().clone();
    let acked = acks.acked.lock().clone();

    // After the lease expired the survivors lead everything, and the dead broker is not listed.
    let survivors: Vec<String> = addrs[..victim - 1].to_vec();
    let after = leaders(&survivors.join(","), topic);
    assert!(
        after
            .values()
            .all(|leader| *leader != victim as i32 && *leader > 0),
        "the killed broker still leads: {after:?}"
    );

    // Consume everything back from the survivors.
    let consumer = consumer(&survivors.join(","), "cluster-check", topic, PARTITIONS);
    let wanted: HashSet<u32> = acked.iter().map(|a| a.2).collect();
    let mut seen: HashMap<u32, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while wanted.iter().any(|id| !seen.contains_key(id)) && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            *seen
                .entry(record_id(&message.expect("consume")))
                .or_default() += 1;
        }
    }
    // Whatever else is there (records a failed delivery may still have stored).
    let quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            *seen.entry(record_id(&message)).or_default() += 1;
        }
    }
    let lost: Vec<u32> = wanted
        .iter()
        .copied()
        .filter(|id| !seen.contains_key(id))
        .collect();
    let duplicates: u32 = seen.values().map(|count| count - 1).sum();
    eprintln!(
        "{brokers} brokers, one killed: {} acknowledged, {} failed, {} lost, {duplicates} duplicates; leaders before {before:?}, after {after:?}",
        acked.len(),
        failed.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but not consumed: {lost:?}");
    assert_eq!(duplicates, 0, "duplicates from an idempotent producer");
    assert_eq!(
        acked.len() as u32,
        RECORDS,
        "every record acknowledged: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_one_killed_the_other_carries_on() {
    produce_through_a_kill(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_one_killed_the_others_carry_on() {
    produce_through_a_kill(3).await;
}
