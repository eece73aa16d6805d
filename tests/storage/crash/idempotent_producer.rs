//! An idempotent Kafka producer (librdkafka, `enable.idempotence=true`, acks=all, five requests
//! in flight, no linger) against the real broker, SIGKILLed twenty times while it produces and
//! restarted on the same data directory and port; the producer retries what was in flight.
//! Afterwards the whole topic is read: every payload carries a unique id, none may appear twice
//! (a retried batch stored again) and every acknowledged id must be there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Semaphore;

use super::Random;
use crate::broker::TestBroker;

const TOPIC: &str = "idempotent-crash";
const PARTITIONS: i32 = 2;
const KILL_ROUNDS: u32 = 20;
/// Deliveries the producer may have outstanding (keeps the test's volume bounded).
const OUTSTANDING: usize = 400;
/// Acknowledgements each round waits for after a restart before it kills again, so every kill
/// lands while the producer is producing.
const ACKS_PER_ROUND: usize = 100;
const WAIT: Duration = Duration::from_secs(90);

/// Outcomes of the deliveries, by payload id.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<u64>,
    failed: Vec<(u64, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

fn payload(id: u64) -> String {
    format!("id-{id:010}")
}

async fn create_topic(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    let created = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topic");
    assert_eq!(created, vec![Ok(TOPIC.to_owned())]);
}

fn idempotent_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "0")
        .set("batch.num.messages", "20")
        // Long enough that nothing times out while the broker restarts.
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .set("retry.backoff.ms", "10")
        .set("retry.backoff.max.ms", "100")
        .create()
        .expect("idempotent producer")
}

/// Sends ids 0.. until `running` is cleared, at most [`OUTSTANDING`] at a time, recording each
/// delivery's outcome. Returns the number of ids sent, and the producer: dropping it would
/// purge what is still in flight.
async fn produce(
    producer: FutureProducer,
    running: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    outstanding: Arc<Semaphore>,
    outcomes: Arc<Mutex<Outcomes>>,
) -> (u64, FutureProducer) {
    let mut id = 0;
    while running.load(Ordering::Acquire) {
        let permit = Arc::clone(&outstanding)
            .acquire_owned()
            .await
            .expect("semaphore");
        let value = payload(id);
        let key = id.to_string();
        let record = FutureRecord::to(TOPIC)
            .partition((id % PARTITIONS as u64) as i32)
            .key(&key)
            .payload(&value);
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((err, _)) => panic!("enqueue {id}: {err}"),
        };
        let outcomes = Arc::clone(&outcomes);
        tokio::spawn(async move {
            let outcome = delivery.await;
            let mut outcomes = outcomes.lock().expect("outcomes");
            match outcome {
                Ok(Ok(_)) => outcomes.acknowledged.push(id),
                Ok(Err((err, _))) => outcomes.failed.push((id, err.to_string())),
                Err(_) => outcomes.failed.push((id, "delivery cancelled".to_owned())),
            }
            drop(permit);
        });
        id += 1;
        next_id.store(id, Ordering::Release);
    }
    (id, producer)
}

/// Every payload of the topic, read from the beginning up to each partition's high watermark.
fn read_topic(bootstrap: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "idempotent-crash-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(TOPIC, partition, Duration::from_secs(10))
            .expect("watermarks");
        remaining += high - low;
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut values = Vec::new();
    while remaining > 0 {
        assert!(
            Instant::now() < deadline,
            "read {} records, {remaining} missing",
            values.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let value = message.payload().expect("payload");
            values.push(String::from_utf8(value.to_vec()).expect("utf-8"));
            remaining -= 1;
        }
    }
    values
}

fn acknowledged_count(outcomes: &Mutex<Outcomes>) -> usize {
    outcomes.lock().expect("outcomes").acknowledged.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_through_sigkill_rounds_stores_each_record_once() {
    let started = Instant::now();
    let port = free_port().to_string();
    let mut broker = TestBroker::start_with(&["--kafka-port", &port]);
    let bootstrap = broker.addr("kafka").to_string();
    create_topic(&bootstrap).await;

    let running = Arc::new(AtomicBool::new(true));
    let outstanding = Arc::new(Semaphore::new(OUTSTANDING));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let next_id = Arc::new(AtomicU64::new(0));
    let sender = tokio::spawn(produce(
        idempotent_producer(&bootstrap),
        Arc::clone(&running),
        Arc::clone(&next_id),
        Arc::clone(&outstanding),
        Arc::clone(&outcomes),
    ));
    let mut random = Random::new();
    // The next id to be sent at each kill: a duplicate is blamed on the kill that follows it.
    let mut kills_at = Vec::new();
    for round in 0..KILL_ROUNDS {
        let floor = acknowledged_count(&outcomes) + ACKS_PER_ROUND;
        let deadline = Instant::now() + WAIT;
        while acknowledged_count(&outcomes) < floor {
            assert!(
                Instant::now() < deadline,
                "round {round}: the producer made no progress after the restart"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(random.below(100))).await;
        kills_at.push(next_id.load(Ordering::Acquire));
        broker.kill_and_restart();
        assert_eq!(broker.addr("kafka").port().to_string(), port);
    }
    running.store(false, Ordering::Release);
    let (sent, _producer) = sender.await.expect("sender");
    let all = u32::try_from(OUTSTANDING).expect("permits");
    let drained = tokio::time::timeout(WAIT, outstanding.acquire_many(all)).await;
    let _every_delivery_resolved = drained.expect("deliveries resolve").expect("semaphore");

    // Every restart after the first found a snapshot written by the one before, and the log
    // still held the batch it ends with.
    broker.wait_for_line(
        &["producer state rebuilt", "from_snapshot=true"],
        Duration::from_secs(10),
    );

    let values = read_topic(&bootstrap);
    let outcomes = outcomes.lock().expect("outcomes");
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for value in &values {
        *copies.entry(value.as_str()).or_default() += 1;
    }
    let duplicated: Vec<(&str, usize)> = copies
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(value, count)| (*value, *count))
        .collect();
    let duplicates: usize = duplicated.iter().map(|(_, count)| count - 1).sum();
    let mut rounds_with_duplicates: Vec<usize> = duplicated
        .iter()
        .filter_map(|(value, _)| value.strip_prefix("id-")?.parse::<u64>().ok())
        .map(|id| kills_at.partition_point(|at| *at <= id))
        .collect();
    rounds_with_duplicates.sort_unstable();
    rounds_with_duplicates.dedup();
    let lost: Vec<u64> = outcomes
        .acknowledged
        .iter()
        .copied()
        .filter(|id| !copies.contains_key(payload(*id).as_str()))
        .collect();
    eprintln!(
        "{KILL_ROUNDS} SIGKILL rounds in {:?}: {sent} sent, {} acknowledged, {} failed, \
         {} stored, {duplicates} duplicate records ({} ids) in {} rounds {rounds_with_duplicates:?}, \
         {} acknowledged lost; failures: {:?}",
        started.elapsed(),
        outcomes.acknowledged.len(),
        outcomes.failed.len(),
        values.len(),
        duplicated.len(),
        rounds_with_duplicates.len(),
        lost.len(),
        &outcomes.failed[..outcomes.failed.len().min(5)]
    );
    assert_eq!(duplicates, 0, "records stored twice: {duplicated:?}");
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(
        outcomes.failed.is_empty(),
        "deliveries failed: {:?}",
        &outcomes.failed[..outcomes.failed.len().min(10)]
    );
}
