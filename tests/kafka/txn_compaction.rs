//! Log compaction of a topic written by transactions (issue 18: "transaction markers and
//! aborted records are handled as Kafka does"): committed and aborted transactions of librdkafka
//! over shared keys, plus records outside transactions, on a compacted topic the broker's cleaner
//! passes over (a short interval, `delete.retention.ms=0` so markers left without records go
//! on the next pass). A `read_committed` consumer from offset 0 and an AMQP stream consumer must
//! see the latest committed value of each key and nothing aborted: at every read while the
//! cleaner works, exactly that once it is done (a `read_uncommitted` consumer then sees it too:
//! the aborted records are gone), and again after a SIGKILL and restart. The first
//! `read_committed` read comes before the markers go, so the broker's transaction index has to
//! notice their removal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::BasicAckOptions;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::TestBroker;
use crate::kafka_txn::{WAIT, transactional_producer};
use crate::lapin_support::{connect_to, consume_stream, stream_args, text};

const TOPIC: &str = "txn-compacted";
const KEYS: usize = 20;
/// Two passes (records, then the markers left without records) after a segment roll.
const CLEANED_WITHIN: Duration = Duration::from_secs(90);

/// One written record: (key, value).
type Written = (String, String);

fn keyed(range: std::ops::Range<usize>, tag: &str) -> Vec<Written> {
    range
        .map(|key| (format!("k{key}"), format!("{tag}-{key}")))
        .collect()
}

fn send_keyed(producer: &BaseProducer, records: &[Written]) {
    for (key, value) in records {
        producer
            .send(BaseRecord::to(TOPIC).partition(0).key(key).payload(value))
            .unwrap_or_else(|(err, _)| panic!("send {key}: {err}"));
    }
    producer.flush(WAIT).expect("flush");
}

/// Every record a consumer with `isolation` reads from offset 0 until nothing more comes for
/// a moment: (offset, key, value).
fn read_from_start(bootstrap: &str, isolation: &str, expected: usize) -> Vec<(i64, Written)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{TOPIC}-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut quiet_since = Instant::now();
    while got.len() < expected || quiet_since.elapsed() < Duration::from_millis(1_500) {
        assert!(
            Instant::now() < deadline,
            "{isolation}: only {} records: {got:?}",
            got.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume error");
            let text = |bytes: Option<&[u8]>| {
                String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
            };
            got.push((
                message.offset(),
                (text(message.key()), text(message.payload())),
            ));
            quiet_since = Instant::now();
        }
    }
    got
}

/// The values an AMQP stream consumer of the topic reads from its first offset.
async fn read_stream(amqp: std::net::SocketAddr, expected: usize) -> Vec<String> {
    let connection = connect_to(amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            TOPIC.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            stream_args(),
        )
        .await
        .expect("declare the topic's stream");
    let (_channel, mut consumer) = consume_stream(&connection, TOPIC, text("first")).await;
    let mut got = Vec::new();
    loop {
        let wait = if got.len() < expected {
            Duration::from_secs(15)
        } else {
            Duration::from_millis(1_500)
        };
        let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await else {
            break;
        };
        let delivery = delivery.expect("delivery");
        got.push(String::from_utf8_lossy(&delivery.data).into_owned());
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let _ = connection.close(200, "done".into()).await;
    got
}

/// A `read_committed` view is valid while the cleaner works: ascending offsets, only
/// committed records, and the latest committed value of each key.
fn assert_valid(seen: &[(i64, Written)], committed: &[Written], expected: &[Written]) {
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    let mut latest = BTreeMap::new();
    for (_, record) in seen {
        assert!(committed.contains(record), "not committed: {record:?}");
        latest.insert(record.0.clone(), record.clone());
    }
    let mut wanted: Vec<&Written> = expected.iter().collect();
    wanted.sort();
    assert_eq!(latest.values().collect::<Vec<_>>(), wanted);
}

#[test]
fn a_compacted_topic_keeps_the_latest_committed_value_of_each_key() {
    let mut broker = TestBroker::start_with_env(
        &[],
        &[
            ("TRIBUTARY_STORAGE_CLEANER_INTERVAL_MS", "300"),
            ("TRIBUTARY_STORAGE_RETENTION_CHECK_INTERVAL_MS", "300"),
        ],
    );
    let bootstrap = broker.addr("kafka").to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("admin client");
        let created = admin
            .create_topics(
                &[NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact")
                    .set("segment.bytes", "65536")
                    // The active segment is never cleaned: roll it soon after the last write.
                    .set("segment.ms", "1000")
                    .set("delete.retention.ms", "0")
                    .set("min.cleanable.dirty.ratio", "0.01")],
                &AdminOptions::new().operation_timeout(Some(WAIT)),
            )
            .await
            .expect("create topics");
        assert!(created[0].is_ok(), "{created:?}");
    });

    // Transactions of one producer over keys k0..k19, and records outside transactions.
    let producer = transactional_producer(&bootstrap, "txn-compacted-producer");
    let plain: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut committed: Vec<Written> = Vec::new();
    let transaction = |records: Vec<Written>, commit: bool, committed: &mut Vec<Written>| {
        producer.begin_transaction().expect("begin");
        send_keyed(&producer, &records);
        if commit {
            producer.commit_transaction(WAIT).expect("commit");
            committed.extend(records);
        } else {
            producer.abort_transaction(WAIT).expect("abort");
        }
    };
    transaction(keyed(0..KEYS, "t1"), true, &mut committed);
    transaction(keyed(0..KEYS, "t2-aborted"), false, &mut committed);
    transaction(keyed(0..10, "t3"), true, &mut committed);
    // Aborted values after committed ones: they must not replace them.
    transaction(keyed(10..KEYS, "t4-aborted"), false, &mut committed);
    // Every value of t1 is replaced by now.
    let outside = keyed(10..KEYS, "plain");
    send_keyed(&plain, &outside);
    committed.extend(outside);
    transaction(keyed(5..15, "t5"), true, &mut committed);
    // The latest values of k0..k4 are aborted: the committed ones of t3 must stay.
    transaction(keyed(0..5, "t6-aborted"), false, &mut committed);
    // The latest committed value per key, in the order they were written.
    let mut latest: BTreeMap<String, usize> = BTreeMap::new();
    for (at, (key, _)) in committed.iter().enumerate() {
        latest.insert(key.clone(), at);
    }
    let mut order: Vec<usize> = latest.into_values().collect();
    order.sort();
    let expected: Vec<Written> = order.iter().map(|at| committed[*at].clone()).collect();
    assert_eq!(expected.len(), KEYS);
    let values = |records: &[Written]| -> Vec<String> {
        records.iter().map(|(_, value)| value.clone()).collect()
    };

    // Before or while the cleaner works (this read also builds the broker's transaction index).
    let first = read_from_start(&bootstrap, "read_committed", KEYS);
    assert_valid(&first, &committed, &expected);

    // Cleaned: a read_uncommitted reader sees exactly the latest committed value per key (no
    // aborted record is left), and the markers left without records are gone.
    let metrics = broker.http_addr();
    let series = format!("tributary_storage_cleaner_removed_markers_total{{topic=\"{TOPIC}\"}}");
    let deadline = Instant::now() + CLEANED_WITHIN;
    loop {
        let raw = read_from_start(&bootstrap, "read_uncommitted", KEYS);
        let removed = crate::lapin_support::sample(&crate::lapin_support::scrape(metrics), &series);
        let records: Vec<Written> = raw.into_iter().map(|(_, record)| record).collect();
        // The abort markers of t2 and t4 and the commit of t1 have no record left (t6's abort
        // is its producer's last batch).
        if records == expected && removed == Some(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not cleaned within {CLEANED_WITHIN:?}: {removed:?} markers removed, {records:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let check = |broker: &mut TestBroker, when: &str| {
        let bootstrap = broker.addr("kafka").to_string();
        let seen = read_from_start(&bootstrap, "read_committed", KEYS);
        let records: Vec<Written> = seen.into_iter().map(|(_, record)| record).collect();
        assert_eq!(records, expected, "read_committed {when}");
        let amqp = broker.addr("amqp");
        let streamed = rt.block_on(read_stream(amqp, KEYS));
        assert_eq!(streamed, values(&expected), "AMQP stream {when}");
    };
    check(&mut broker, "after the cleaner");
    broker.kill_and_restart();
    check(&mut broker, "after a restart");
    drop(broker);
}
