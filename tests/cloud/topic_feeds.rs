//! Topic feeds on a cluster (src: `tributary_amqp::feed`): a classic queue bound to the
//! exchange of a Kafka topic of six partitions, on two brokers, gets each record Kafka produced
//! exactly once (only the leader of a partition feeds it); a third broker joins, takes
//! partitions over and their feeds with them (resuming from the durable cursors), and the
//! records produced after that arrive exactly once too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::queues::{Seen, channel, cluster, connect, consume_forever, declare};

const TOPIC: &str = "fed-topic";
const QUEUE: &str = "fed-queue";
const PARTITIONS: i32 = 6;
const WAVE: u32 = 150;

/// Produces records `ids` (payload: the id, big-endian) and waits for every acknowledgement.
async fn produce(bootstrap: &str, ids: std::ops::Range<u32>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for id in ids {
        let key = format!("key-{id}");
        let payload = id.to_be_bytes();
        let record = FutureRecord::to(TOPIC).key(&key).payload(&payload[..]);
        deliveries.push(producer.send_result(record).expect("queued"));
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery report")
            .expect("acknowledged");
    }
}

/// How many times each id arrived.
fn counts(seen: &Seen) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for (id, _) in seen.lock().iter() {
        *counts.entry(*id).or_insert(0) += 1;
    }
    counts
}

/// Waits until ids `0..upto` all arrived (or 30 s), then a moment for late copies.
async fn settle(seen: &Seen, upto: u32) -> BTreeMap<u32, usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(seen).len() < upto as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    counts(seen)
}

fn assert_once(counts: &BTreeMap<u32, usize>, upto: u32, when: &str) {
    let missing: Vec<u32> = (0..upto).filter(|id| !counts.contains_key(id)).collect();
    let twice: Vec<(u32, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty() && counts.len() == upto as usize,
        "{when}: every record once in the bound queue; missing {missing:?}, more than once {} ({:?}...)",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_reaches_a_bound_queue_once_as_feeds_follow_partition_leadership() {
    let mut cluster = cluster(2, "").await;
    let bootstrap = format!(
        "{},{}",
        cluster.brokers[0].addr("kafka"),
        cluster.brokers[1].addr("kafka")
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    assert!(created[0].is_ok(), "{created:?}");
    // Broker 1 learns the topic (and its exchange) through the topics notification.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connection = connect(&mut cluster.brokers[0]).await.expect("connect");
    let binding = channel(&connection).await.expect("channel");
    declare(&binding, QUEUE).await.expect("declare");
    binding
        .queue_bind(
            QUEUE.into(),
            TOPIC.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the queue to the topic's exchange");
    // Every broker learns the binding and starts its feed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen: Seen = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let consumer = tokio::spawn(consume_forever(
        cluster.brokers[1].addr("amqp"),
        QUEUE.to_owned(),
        seen.clone(),
        stop.clone(),
    ));

    produce(&bootstrap, 0..WAVE).await;
    assert_once(&settle(&seen, WAVE).await, WAVE, "two brokers");

    // A third broker takes partitions (and their feeds) over; once it has, more records.
    cluster.add(3);
    tokio::time::sleep(Duration::from_secs(4)).await;
    produce(&bootstrap, WAVE..2 * WAVE).await;
    assert_once(
        &settle(&seen, 2 * WAVE).await,
        2 * WAVE,
        "after a third broker joined",
    );
    stop.notify_waiters();
    consumer.abort();
}
