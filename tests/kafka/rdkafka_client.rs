//! The Kafka frontend end to end: the real `tributary` binary driven by librdkafka (the `rdkafka`
//! crate, vendored build).

use crate::broker;
use crate::lapin_support;

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

/// A broker whose auto-created topics get `partitions` partitions (via a config file, which
/// must outlive the broker).
fn broker_with_partitions(partitions: u32) -> (TestBroker, tempfile::NamedTempFile) {
    let mut config = tempfile::NamedTempFile::new().expect("config file");
    std::io::Write::write_all(
        &mut config,
        format!("[kafka]\ndefault_partitions = {partitions}\n").as_bytes(),
    )
    .expect("write config");
    let path = config.path().to_str().expect("utf-8 path").to_owned();
    (TestBroker::start_with(&["--config", &path]), config)
}

async fn produce_numbered(producer: &FutureProducer, topic: &str, numbers: std::ops::Range<u32>) {
    for i in numbers {
        let value = format!("record-{i}");
        let key = format!("k{i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&value), WAIT)
            .await
            .unwrap_or_else(|(err, _)| panic!("delivery {i} failed: {err}"));
    }
}

fn group_consumer(
    bootstrap: &str,
    group: &str,
    topic: &str,
    instance: Option<&str>,
) -> BaseConsumer {
    let mut config = ClientConfig::new();
    if let Some(instance) = instance {
        config.set("group.instance.id", instance);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "100")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "200")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("group consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// One group member polling on its own thread until told to stop (then it closes, leaving
/// the group). Records every (partition, offset, value) it sees and its assignment size.
struct Member {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    assigned: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, String)>>>;

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str, log: &Log) -> Self {
        Self::start_static(bootstrap, group, topic, log, None)
    }

    /// A member with `group.instance.id` = `instance` (KIP-345) when given.
    fn start_static(
        bootstrap: &str,
        group: &str,
        topic: &str,
        log: &Log,
        instance: Option<&str>,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let assigned = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let consumer = group_consumer(bootstrap, group, topic, instance);
        let (thread_stop, thread_assigned, log) = (stop.clone(), assigned.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            while !thread_stop.load(Ordering::SeqCst) {
                if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                    let message = message.expect("consume error");
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    log.lock()
                        .unwrap()
                        .push((message.partition(), message.offset(), value.into()));
                }
                let count = consumer.assignment().map(|list| list.count()).unwrap_or(0);
                thread_assigned.store(count, Ordering::SeqCst);
            }
            consumer
                .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
                .ok();
            drop(consumer);
        });
        Self {
            stop,
            assigned,
            thread: Some(thread),
        }
    }

    fn assigned(&self) -> usize {
        self.assigned.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn leave(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("member thread");
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts the log holds exactly `expected` distinct values, each once.
fn assert_exactly_once(log: &Log, expected: u32) {
    let seen = log.lock().unwrap();
    let mut values: Vec<&str> = seen.iter().map(|(_, _, value)| value.as_str()).collect();
    values.sort_unstable();
    let total = values.len();
    values.dedup();
    assert_eq!(values.len(), expected as usize, "distinct records");
    assert_eq!(total, expected as usize, "duplicates delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_shares_six_partitions_without_loss_or_duplicates() {
    let (mut broker, _config) = broker_with_partitions(6);
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "grouped";
    let producer = producer(&bootstrap, &[]);
    produce_numbered(&producer, topic, 0..300).await;

    let log: Log = Default::default();
    let first = Member::start(&bootstrap, "three", topic, &log);
    wait_until("the first member to own all 6 partitions", || {
        first.assigned() == 6
    });
    let second = Member::start(&bootstrap, "three", topic, &log);
    let third = Member::start(&bootstrap, "three", topic, &log);
    wait_until("2 partitions per member", || {
        [&first, &second, &third]
            .iter()
            .all(|member| member.assigned() == 2)
    });
    produce_numbered(&producer, topic, 300..600).await;
    wait_until("600 records", || log.lock().unwrap().len() >= 600);

    // One member leaves: the other two take over its partitions.
    second.leave();
    wait_until("3 partitions per remaining member", || {
        first.assigned() == 3 && third.assigned() == 3
    });
    produce_numbered(&producer, topic, 600..900).await;
    wait_until("900 records", || log.lock().unwrap().len() >= 900);
    std::thread::sleep(Duration::from_millis(500));
    first.leave();
    third.leave();
    assert_exactly_once(&log, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_resume_after_a_broker_kill_and_restart() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "resumed";
    produce_numbered(&producer(&bootstrap, &[]), topic, 0..50).await;
    let log: Log = Default::default();
    let member = Member::start(&bootstrap, "resume", topic, &log);
    wait_until("50 records", || log.lock().unwrap().len() >= 50);
    member.leave();
    assert_exactly_once(&log, 50);

    // The scrape shows the Kafka request metrics, bytes per topic and the group's lag (0: all
    // committed).
    let http = broker.http_addr();
    let exposition = scrape(http);
    for needle in [
        "tributary_kafka_requests_total{api=\"produce\"}",
        "tributary_kafka_request_duration_seconds_bucket{api=\"fetch\"",
        "tributary_kafka_bytes_in_total{topic=\"resumed\"}",
        "tributary_kafka_records_out_total{topic=\"resumed\"}",
    ] {
        assert!(exposition.contains(needle), "no {needle} in:\n{exposition}");
    }
    // kafka_exporter's family and label names, computed at scrape time.
    let lags: Vec<f64> = exposition
        .lines()
        .filter(|line| {
            line.starts_with("kafka_consumergroup_lag{consumergroup=\"resume\",topic=\"resumed\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    assert!(
        !lags.is_empty(),
        "no lag gauge of group resume in:\n{exposition}"
    );
    assert_eq!(lags.iter().sum::<f64>(), 0.0);

    broker.kill_and_restart();
    let bootstrap = broker.addr("kafka").to_string();
    produce_numbered(&producer(&bootstrap, &[]), topic, 50..80).await;
    let after: Log = Default::default();
    let member = Member::start(&bootstrap, "resume", topic, &after);
    wait_until("30 new records", || after.lock().unwrap().len() >= 30);
    std::thread::sleep(Duration::from_millis(500));
    member.leave();
    let after = after.lock().unwrap();
    assert_eq!(after.len(), 30, "only records after the committed offsets");
    assert!(after.iter().all(|(_, _, value)| {
        value
            .strip_prefix("record-")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 50)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_describes_alters_grows_and_deletes_topics() {
    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
        TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;

    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let topic_of = |name: &str| {
        admin
            .inner()
            .fetch_metadata(Some(name), WAIT)
            .expect("metadata")
            .topics()
            .iter()
            .find(|topic| topic.name() == name)
            .map(|topic| (topic.partitions().len(), topic.error()))
    };

    // validate-only creates nothing.
    let dry = NewTopic::new("admin-dry", 3, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[dry], &AdminOptions::new().validate_only(true))
        .await
        .expect("validate-only create");
    assert_eq!(results, vec![Ok("admin-dry".to_owned())]);
    let listed = admin.inner().fetch_metadata(None, WAIT).expect("metadata");
    assert!(
        listed
            .topics()
            .iter()
            .all(|topic| topic.name() != "admin-dry")
    );

    let created = NewTopic::new("admin-topic", 3, TopicReplication::Fixed(1))
        .set("retention.ms", "60000")
        .set("tributary.durability", "always");
    let results = admin
        .create_topics(&[created], &options)
        .await
        .expect("create");
    assert_eq!(results, vec![Ok("admin-topic".to_owned())]);
    assert_eq!(topic_of("admin-topic"), Some((3, None)));
    let again = NewTopic::new("admin-topic", 3, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[again], &options)
        .await
        .expect("create again");
    assert_eq!(
        results,
        vec![Err((
            "admin-topic".to_owned(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
    let bad = NewTopic::new("admin-bad", 1, TopicReplication::Fixed(3));
    let results = admin
        .create_topics(&[bad], &options)
        .await
        .expect("create bad");
    assert_eq!(
        results,
        vec![Err((
            "admin-bad".to_owned(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))]
    );

    let configs = topic_configs(&admin, "admin-topic").await;
    assert_eq!(configs["retention.ms"], (Some("60000".to_owned()), false));
    assert_eq!(
        configs["tributary.durability"],
        (Some("always".to_owned()), false)
    );
    // Settings not given explicitly are reported with the broker default as their source.
    assert!(configs["segment.bytes"].1, "segment.bytes is a default");
    assert!(configs.contains_key("max.message.bytes"));
    assert!(configs.contains_key("retention.bytes"));

    // AlterConfigs replaces the explicit settings: retention.ms is set, durability reverts.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("admin-topic"))
        .set("retention.ms", "120000")
        .set("max.message.bytes", "2048");
    let results = admin
        .alter_configs(&[alter], &options)
        .await
        .expect("alter");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let configs = topic_configs(&admin, "admin-topic").await;
    assert_eq!(configs["retention.ms"], (Some("120000".to_owned()), false));
    assert_eq!(
        configs["max.message.bytes"],
        (Some("2048".to_owned()), false)
    );
    assert!(
        configs["tributary.durability"].1,
        "durability back to the default"
    );
    let unknown = AlterConfig::new(ResourceSpecifier::Topic("admin-topic")).set("no.such", "1");
    // The rdkafka crate drops per-resource AlterConfigs errors, so check the effect: a refused
    // replace leaves every explicit setting as it was.
    admin
        .alter_configs(&[unknown], &options)
        .await
        .expect("alter");
    let configs = topic_configs(&admin, "admin-topic").await;
    assert_eq!(configs["retention.ms"], (Some("120000".to_owned()), false));
    assert!(!configs.contains_key("no.such"));

    let grown = admin
        .create_partitions(&[NewPartitions::new("admin-topic", 5)], &options)
        .await
        .expect("create partitions");
    assert_eq!(grown, vec![Ok("admin-topic".to_owned())]);
    assert_eq!(topic_of("admin-topic"), Some((5, None)));
    let shrink = admin
        .create_partitions(&[NewPartitions::new("admin-topic", 2)], &options)
        .await
        .expect("create partitions");
    assert_eq!(
        shrink,
        vec![Err((
            "admin-topic".to_owned(),
            RDKafkaErrorCode::InvalidPartitions
        ))]
    );

    let deleted = admin
        .delete_topics(&["admin-topic"], &options)
        .await
        .expect("delete");
    assert_eq!(deleted, vec![Ok("admin-topic".to_owned())]);
    let listed = admin.inner().fetch_metadata(None, WAIT).expect("metadata");
    assert!(
        listed
            .topics()
            .iter()
            .all(|topic| topic.name() != "admin-topic")
    );
    let missing = admin
        .delete_topics(&["admin-topic"], &options)
        .await
        .expect("delete");
    assert_eq!(
        missing,
        vec![Err((
            "admin-topic".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
}

/// name -> (value, is_default) of a topic's configs, via DescribeConfigs.
async fn topic_configs(
    admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &str,
) -> BTreeMap<String, (Option<String>, bool)> {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .expect("describe");
    let resource = results
        .into_iter()
        .next()
        .expect("one resource")
        .expect("described");
    resource
        .entries
        .into_iter()
        .map(|entry| (entry.name, (entry.value, entry.is_default)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_with_each_codec_delivers_exactly_once_in_order() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let producer = producer(
            &bootstrap,
            &[("enable.idempotence", "true"), ("compression.type", codec)],
        );
        let sends: Vec<_> = (0..200u32)
            .map(|i| {
                let value = format!("{codec}-{i:05}-{}", "x".repeat(100));
                let partition = (i % 4) as i32;
                let record = FutureRecord::to(&topic)
                    .partition(partition)
                    .key("k")
                    .payload(&value);
                producer.send_result(record).expect("enqueue")
            })
            .collect();
        for delivery in sends {
            delivery
                .await
                .expect("delivery future")
                .unwrap_or_else(|(err, _)| panic!("{codec} delivery failed: {err}"));
        }
        let consumer = assigned_consumer(&bootstrap, &topic, 4);
        let got = consume(&consumer, 200);
        let mut per_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for ((partition, _, value, _), _) in got {
            let value = String::from_utf8(value.expect("value")).expect("utf-8");
            per_partition.entry(partition).or_default().push(value);
        }
        for (partition, values) in per_partition {
            let expected: Vec<String> = (0..200u32)
                .filter(|i| (i % 4) as i32 == partition)
                .map(|i| format!("{codec}-{i:05}-{}", "x".repeat(100)))
                .collect();
            assert_eq!(values, expected, "{codec} partition {partition}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_described_and_deleted_and_records_deleted() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;

    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "group-admin";
    produce_numbered(&producer(&bootstrap, &[]), topic, 0..40).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(WAIT));

    let log: Log = Default::default();
    let member = Member::start(&bootstrap, "listed", topic, &log);
    wait_until("40 records", || log.lock().unwrap().len() >= 40);
    let groups = admin
        .inner()
        .fetch_group_list(Some("listed"), WAIT)
        .expect("groups");
    let group = groups
        .groups()
        .iter()
        .find(|g| g.name() == "listed")
        .expect("listed");
    assert_eq!(
        (group.state(), group.protocol_type()),
        ("Stable", "consumer")
    );
    assert_eq!(group.members().len(), 1);
    let busy = admin
        .delete_groups(&["listed"], &options)
        .await
        .expect("delete");
    assert_eq!(
        busy,
        vec![Err(("listed".to_owned(), RDKafkaErrorCode::NonEmptyGroup))]
    );
    member.leave();

    let groups = admin
        .inner()
        .fetch_group_list(Some("listed"), WAIT)
        .expect("groups");
    let group = groups
        .groups()
        .iter()
        .find(|g| g.name() == "listed")
        .expect("listed");
    assert_eq!(group.state(), "Empty");
    let deleted = admin
        .delete_groups(&["listed"], &options)
        .await
        .expect("delete");
    assert_eq!(deleted, vec![Ok("listed".to_owned())]);
    let gone = admin
        .delete_groups(&["listed"], &options)
        .await
        .expect("delete");
    assert_eq!(
        gone,
        vec![Err((
            "listed".to_owned(),
            RDKafkaErrorCode::GroupIdNotFound
        ))]
    );

    // DeleteRecords moves the log start: a reader from the beginning of partition 0 starts there.
    let mut before = TopicPartitionList::new();
    before
        .add_partition_offset(topic, 0, Offset::Offset(4))
        .expect("offset");
    let result = admin
        .delete_records(&before, &options)
        .await
        .expect("delete records");
    let element = result.find_partition(topic, 0).expect("partition 0");
    assert_eq!(element.offset(), Offset::Offset(4));
    let consumer = assigned_consumer(&bootstrap, topic, 1);
    let (_, first_offset) = consume(&consumer, 1).remove(0);
    assert_eq!(first_offset, 4);
}

/// GET /metrics from the broker's HTTP endpoint.
fn scrape(http: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).expect("connect http");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tributary\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_takes_over_its_old_place() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "static";
    let producer = producer(&bootstrap, &[]);
    produce_numbered(&producer, topic, 0..100).await;
    let log: Log = Default::default();
    let a = Member::start_static(&bootstrap, "statics", topic, &log, Some("a"));
    let b = Member::start_static(&bootstrap, "statics", topic, &log, Some("b"));
    wait_until("2 partitions each", || {
        a.assigned() == 2 && b.assigned() == 2
    });
    wait_until("100 records", || log.lock().unwrap().len() >= 100);

    // "b" goes away without leaving (static members do not send LeaveGroup) and a new process
    // with the same instance id replaces it at once, well inside the 6 s session timeout.
    b.leave();
    let b_again = Member::start_static(&bootstrap, "statics", topic, &log, Some("b"));
    wait_until("the replacement's partitions", || b_again.assigned() == 2);
    let members = || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("client");
        let groups = client
            .fetch_group_list(Some("statics"), WAIT)
            .expect("groups");
        let group = groups
            .groups()
            .iter()
            .find(|g| g.name() == "statics")
            .expect("group");
        (group.state().to_owned(), group.members().len())
    };
    assert_eq!(
        members(),
        ("Stable".to_owned(), 2),
        "the old member id was replaced"
    );
    produce_numbered(&producer, topic, 100..200).await;
    wait_until("200 records", || log.lock().unwrap().len() >= 200);
    std::thread::sleep(Duration::from_millis(500));
    a.leave();
    b_again.leave();
    assert_exactly_once(&log, 200);
}

/// docs/interop.md "Topics seen from AMQP": a topic AMQP reads as the single stream `T` cannot
/// grow (AMQP would read one partition of several); the mark survives a restart, goes with the
/// stream, and other topics grow as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_is_refused_on_a_topic_declared_as_an_amqp_stream() {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;

    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let admin = |bootstrap: &str| -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client")
    };
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let partitions_of = |admin: &AdminClient<DefaultClientContext>, name: &str| {
        admin
            .inner()
            .fetch_metadata(Some(name), WAIT)
            .expect("metadata")
            .topics()
            .iter()
            .find(|topic| topic.name() == name && topic.error().is_none())
            .map(|topic| topic.partitions().len())
    };
    async fn grow(
        admin: &AdminClient<DefaultClientContext>,
        name: &str,
        total: usize,
    ) -> rdkafka::admin::TopicResult {
        let options = AdminOptions::new().operation_timeout(Some(WAIT));
        let results = admin
            .create_partitions(&[NewPartitions::new(name, total)], &options)
            .await
            .expect("create partitions");
        results.into_iter().next().expect("one result")
    }
    let refused = |name: &str| Err((name.to_owned(), RDKafkaErrorCode::PolicyViolation));

    let connection = lapin_support::connect(&mut broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // A stream AMQP created, and a one-partition topic Kafka created that AMQP adopted.
    channel
        .queue_declare("solo".into(), durable, lapin_support::stream_args())
        .await
        .expect("declare stream solo");
    let kafka_admin = admin(&bootstrap);
    let adopted = NewTopic::new("adopted", 1, TopicReplication::Fixed(1));
    let plain = NewTopic::new("plain", 1, TopicReplication::Fixed(1));
    let created = kafka_admin
        .create_topics(&[adopted, plain], &options)
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    channel
        .queue_declare("adopted".into(), durable, lapin_support::stream_args())
        .await
        .expect("declare stream adopted");

    for name in ["solo", "adopted"] {
        let results = kafka_admin
            .create_partitions(&[NewPartitions::new(name, 4)], &options)
            .await
            .expect("create partitions");
        assert_eq!(results, vec![refused(name)]);
        // validate_only gets the same answer.
        let results = kafka_admin
            .create_partitions(
                &[NewPartitions::new(name, 4)],
                &AdminOptions::new().validate_only(true),
            )
            .await
            .expect("validate-only create partitions");
        assert_eq!(results, vec![refused(name)]);
        assert_eq!(partitions_of(&kafka_admin, name), Some(1), "{name}");
    }
    // A topic no stream reads grows as before.
    assert_eq!(grow(&kafka_admin, "plain", 3).await, Ok("plain".to_owned()));
    assert_eq!(partitions_of(&kafka_admin, "plain"), Some(3));
    drop(channel);
    drop(connection);

    // The mark is durable: after a SIGKILL, before any AMQP client connects, growth is refused.
    broker.kill_and_restart();
    let bootstrap = broker.addr("kafka").to_string();
    let kafka_admin = admin(&bootstrap);
    assert_eq!(grow(&kafka_admin, "solo", 2).await, refused("solo"));
    assert_eq!(partitions_of(&kafka_admin, "solo"), Some(1));

    // Deleting the stream deletes the topic with its mark: a new topic of that name grows.
    let connection = lapin_support::connect(&mut broker).await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_delete("solo".into(), QueueDeleteOptions::default())
        .await
        .expect("delete stream solo");
    // (A metadata request naming a missing topic would auto-create it: list them all instead.)
    let listed = kafka_admin
        .inner()
        .fetch_metadata(None, WAIT)
        .expect("metadata");
    assert!(listed.topics().iter().all(|topic| topic.name() != "solo"));
    let again = NewTopic::new("solo", 1, TopicReplication::Fixed(1));
    let created = kafka_admin
        .create_topics(&[again], &options)
        .await
        .expect("create solo again");
    assert_eq!(created, vec![Ok("solo".to_owned())]);
    assert_eq!(grow(&kafka_admin, "solo", 2).await, Ok("solo".to_owned()));
    assert_eq!(partitions_of(&kafka_admin, "solo"), Some(2));
}
