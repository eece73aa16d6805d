//! Topics as AMQP exchanges (docs/interop.md, "Topics seen from AMQP") against the real binary:
//! classic and quorum queues bound to a 4-partition topic's exchange are fed what rdkafka and
//! rocketmq-client-rust write (exact counts, lapin with manual acks), a pattern binding gets only
//! matching keys, a SIGKILL while feeding and consuming loses nothing (duplicates within the
//! re-fed count), and keyed AMQP publishes land in the partition librdkafka's murmur2
//! partitioner picks for the key.

use crate::broker;
use crate::lapin_support;
use crate::rocketmq;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker::TestBroker;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use lapin_support::{args, connect_to, scrape, text};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

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

/// Produces `values` (with their keys) and returns the partition each went to.
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[(Option<String>, String)],
) -> Vec<i32> {
    // Enqueued all at once (librdkafka batches them), then awaited in order.
    let mut pending = Vec::with_capacity(records.len());
    for (key, value) in records {
        let mut record = FutureRecord::to(topic).payload(value.as_bytes());
        if let Some(key) = key {
            record = record.key(key.as_bytes());
        }
        let enqueued = producer.send_result(record);
        pending.push(enqueued.map_err(|(error, _)| error).expect("enqueue"));
    }
    let mut partitions = Vec::with_capacity(pending.len());
    for delivery in pending {
        let delivered = delivery.await.expect("not cancelled").expect("delivered");
        partitions.push(delivered.partition);
    }
    partitions
}

async fn declare_queue(channel: &Channel, name: &str, quorum: bool) {
    let arguments = match quorum {
        true => args(&[("x-queue-type", text("quorum"))]),
        false => FieldTable::default(),
    };
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .expect("queue.declare");
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, pattern: &str) {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind to a topic's exchange");
}

/// What a consumer got: body -> (deliveries, deliveries not flagged redelivered).
type Got = BTreeMap<Vec<u8>, (u32, u32)>;

/// Consumes `queue` with manual acks until `expected` distinct bodies arrived, then for
/// `linger` more to catch extra deliveries; acks everything.
async fn consume_all(
    connection: &Connection,
    queue: &str,
    expected: usize,
    linger: Duration,
) -> Got {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(50, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut got = Got::new();
    let deadline = Instant::now() + WAIT;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = match quiet_until {
            Some(until) if now >= until => break,
            Some(until) => until,
            None => deadline,
        };
        assert!(
            now < deadline,
            "{queue}: only {} of {expected} bodies",
            got.len()
        );
        let Ok(next) = tokio::time::timeout(until - now, consumer.next()).await else {
            continue;
        };
        let delivery = next.expect("consumer open").expect("delivery");
        let entry = got.entry(delivery.data.clone()).or_default();
        entry.0 += 1;
        if !delivery.redelivered {
            entry.1 += 1;
        }
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        if got.len() >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + linger);
        }
    }
    channel.close(200, "done".into()).await.expect("close");
    got
}

fn bodies(got: &Got) -> BTreeSet<Vec<u8>> {
    got.keys().cloned().collect()
}

fn exactly_once(got: &Got) -> bool {
    got.values().all(|(count, _)| *count == 1)
}

fn kafka_records(count: usize, from: usize) -> Vec<(Option<String>, String)> {
    (from..from + count)
        .map(|i| {
            let key = match i % 10 {
                9 => None,
                n if n % 2 == 0 => Some(format!("orders.{i}")),
                _ => Some(format!("payments.{i}")),
            };
            (key, format!("kafka-{i}"))
        })
        .collect()
}

async fn send_rocketmq(namesrv: &str, topic: &str, count: usize) -> BTreeSet<Vec<u8>> {
    let client = rocketmq::Client::new("feed").expect("client");
    let mut producer = rocketmq::producer(&client, namesrv, "PID-feed").await;
    let mut sent = BTreeSet::new();
    for n in 0..count {
        let body = rocketmq::body("rmq", n);
        producer
            .send(rocketmq::message(topic, "TagA", body.clone(), "rmq"))
            .await
            .expect("rocketmq send")
            .expect("a send result");
        sent.insert(body);
    }
    producer.shutdown().await;
    client.shutdown().await;
    sent
}

fn metric(broker: &mut TestBroker, name: &str) -> f64 {
    let exposition = scrape(broker.http_addr());
    lapin_support::sample(&exposition, name).unwrap_or(0.0)
}

#[test]
fn classic_and_quorum_queues_are_fed_what_kafka_and_rocketmq_write() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let amqp = broker.addr("amqp");
    let topic = "feed-orders";
    let orders = rocketmq::runtime().block_on(async {
        create_topic(&bootstrap, topic, 4).await;
        let connection = connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        // The topic is an exchange of type topic: declaring it so is idempotent, passively too;
        // another type is RabbitMQ's 406.
        for passive in [false, true] {
            let options = ExchangeDeclareOptions {
                passive,
                durable: true,
                ..Default::default()
            };
            channel
                .exchange_declare(topic.into(), ExchangeKind::Topic, options, FieldTable::default())
                .await
                .expect("declare the topic's exchange");
        }
        let refused = channel
            .exchange_declare(
                topic.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect_err("another type is refused")
            .to_string();
        assert!(
            refused.contains(
                "inequivalent arg 'type' for exchange 'feed-orders' in vhost '/': received 'direct' but current is 'topic'"
            ),
            "{refused}"
        );
        let channel = connection.create_channel().await.expect("channel");
        declare_queue(&channel, "fed-classic", false).await;
        declare_queue(&channel, "fed-quorum", true).await;
        declare_queue(&channel, "fed-orders-only", false).await;

        let kafka = producer(&bootstrap, &[]);
        // Written before the binds: no queue gets these.
        produce(&kafka, topic, &kafka_records(20, 10_000)).await;
        bind(&channel, "fed-classic", topic, "#").await;
        bind(&channel, "fed-quorum", topic, "#").await;
        bind(&channel, "fed-orders-only", topic, "orders.*").await;

        let written = kafka_records(500, 0);
        let partitions = produce(&kafka, topic, &written).await;
        assert_eq!(
            partitions.iter().collect::<BTreeSet<_>>().len(),
            4,
            "keyed records spread over the 4 partitions"
        );
        let mut expected: BTreeSet<Vec<u8>> =
            written.iter().map(|(_, v)| v.clone().into_bytes()).collect();
        expected.extend(send_rocketmq(&namesrv, topic, 500).await);
        assert_eq!(expected.len(), 1000);
        let orders: BTreeSet<Vec<u8>> = written
            .iter()
            .filter(|(key, _)| key.as_deref().is_some_and(|k| k.starts_with("orders.")))
            .map(|(_, v)| v.clone().into_bytes())
            .collect();

        let linger = Duration::from_secs(2);
        for queue in ["fed-classic", "fed-quorum"] {
            let got = consume_all(&connection, queue, expected.len(), linger).await;
            assert_eq!(bodies(&got), expected, "{queue} got every record");
            assert!(exactly_once(&got), "{queue}: a record arrived twice");
        }
        let got = consume_all(&connection, "fed-orders-only", orders.len(), linger).await;
        assert_eq!(bodies(&got), orders, "the pattern binding gets only orders.*");
        assert!(exactly_once(&got));
        connection.close(200, "bye".into()).await.expect("close");
        orders.len()
    });
    assert_eq!(
        metric(&mut broker, "tributary_amqp_topic_feed_records_total"),
        (2000 + orders) as f64
    );
    broker.terminate();
}

#[test]
fn a_sigkill_while_feeding_and_consuming_loses_nothing() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    let topic = "feed-crash";
    let written = kafka_records(1000, 0);
    // Written after the restart: the restored feed goes on from its cursor.
    let written_later = kafka_records(200, 1000);
    let expected: BTreeSet<Vec<u8>> = written
        .iter()
        .chain(&written_later)
        .map(|(_, v)| v.clone().into_bytes())
        .collect();
    let queues = ["crash-classic", "crash-quorum"];
    let mut before: Vec<Got> = Vec::new();
    rocketmq::runtime().block_on(async {
        create_topic(&bootstrap, topic, 4).await;
        let connection = connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        declare_queue(&channel, queues[0], false).await;
        declare_queue(&channel, queues[1], true).await;
        for queue in queues {
            bind(&channel, queue, topic, "#").await;
        }
        let kafka = producer(&bootstrap, &[]);
        produce(&kafka, topic, &written[..500]).await;
        // Consume (and ack) part of what was fed while the rest is being written and fed.
        for queue in queues {
            before.push(consume_all(&connection, queue, 300, Duration::ZERO).await);
        }
        produce(&kafka, topic, &written[500..]).await;
    });
    // SIGKILL, and while the broker is down, make every partition's cursor look as if the
    // broker had died after enqueueing its last chunk of `REWIND` records but before moving the
    // cursor: those records must be fed again, and counted.
    let mut rewound = 0;
    broker.kill_prepare_restart(|root| rewound = rewind_cursors(root, topic));
    assert!(rewound > 0, "no cursor was stored");
    let amqp = broker.addr("amqp");
    let bootstrap = broker.addr("kafka").to_string();
    let after: Vec<Got> = rocketmq::runtime().block_on(async {
        produce(&producer(&bootstrap, &[]), topic, &written_later).await;
        let connection = connect_to(amqp).await;
        let mut after = Vec::new();
        for (queue, earlier) in queues.iter().zip(&before) {
            let missing = expected.len() - earlier.len();
            after.push(consume_all(&connection, queue, missing, Duration::from_secs(3)).await);
        }
        after
    });
    let refed = metric(&mut broker, "tributary_amqp_topic_feed_refed_total");
    let mut fed_twice = 0;
    for ((queue, earlier), later) in queues.iter().zip(&before).zip(&after) {
        let mut all = earlier.clone();
        for (body, (count, fresh)) in later {
            let entry = all.entry(body.clone()).or_default();
            entry.0 += count;
            entry.1 += fresh;
        }
        assert_eq!(bodies(&all), expected, "{queue}: every record arrived");
        // A record delivered twice without the redelivered flag was fed twice.
        let refed_duplicates: u32 = all.values().map(|(_, fresh)| fresh.saturating_sub(1)).sum();
        let duplicates: u32 = all.values().map(|(count, _)| count - 1).sum();
        eprintln!(
            "{queue}: {duplicates} duplicates, {refed_duplicates} fed twice, refed metric {refed}"
        );
        assert!(
            refed_duplicates >= rewound,
            "{queue}: the {rewound} rewound records were not fed again ({refed_duplicates})"
        );
        fed_twice += refed_duplicates;
    }
    // Both queues take every record: each re-fed record is counted once per queue.
    assert!(
        f64::from(fed_twice) <= refed && refed >= f64::from(2 * rewound),
        "{fed_twice} records fed twice, {rewound} rewound per queue, re-fed count {refed}"
    );
    broker.terminate();
}

/// Records per partition [`rewind_cursors`] makes the feed enqueue again.
const REWIND: i64 = 50;

/// Moves each stored feed cursor of `topic` back by [`REWIND`] (a pending marker where it
/// was), as a crash between enqueueing a chunk and storing the cursor leaves it; returns how
/// many records that covers. The broker must be down.
fn rewind_cursors(root: &std::path::Path, topic: &str) -> u32 {
    use tributary_amqp::codec::table::FieldValue;
    use tributary_amqp::feed::cursor::CURSOR_NAMESPACE;

    let path = broker::data_dir_in(root).join("metadata.redb");
    let meta = tributary::broker::metadata::MetaStore::open(&path).expect("open metadata");
    let prefix = format!("{topic}\u{1f}");
    let mut rewound = 0;
    for (key, value) in meta.scan_records(CURSOR_NAMESPACE, &prefix).expect("scan") {
        let mut table = tributary_amqp::definitions::decode(&value).expect("cursor record");
        let at = |name: &str| table.get(name).and_then(FieldValue::as_i64).expect(name);
        let (cursor, pending) = (at("cursor"), at("pending"));
        let back = cursor.min(REWIND);
        table
            .0
            .retain(|(name, _)| name != "cursor" && name != "pending");
        table.insert("cursor", FieldValue::I64(cursor - back));
        table.insert("pending", FieldValue::I64(pending.max(cursor)));
        let encoded = tributary_amqp::definitions::encode(&table);
        meta.put_record(CURSOR_NAMESPACE, &key, &encoded)
            .expect("store");
        rewound += u32::try_from(back).expect("small");
    }
    rewound
}

#[test]
fn keyed_publishes_to_a_topic_exchange_land_where_librdkafka_murmur2_puts_them() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    let topic = "feed-keys";
    let keys: Vec<String> = (0..40).map(|n| format!("customer-{n}")).collect();
    rocketmq::runtime().block_on(async {
        create_topic(&bootstrap, topic, 4).await;
        let connection = connect_to(amqp).await;
        let channel = lapin_support::confirm_channel(&connection).await;
        declare_queue(&channel, "keys-all", false).await;
        bind(&channel, "keys-all", topic, "#").await;
        for key in &keys {
            let confirm = channel
                .basic_publish(
                    topic.into(),
                    key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    format!("amqp-{key}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(confirm.is_ack(), "{confirm:?}");
            assert!(
                confirm.take_message().is_none(),
                "a publish to a topic is never returned unroutable"
            );
        }
        // Unkeyed publishes spread round-robin.
        for n in 0..8 {
            let body = format!("amqp-unkeyed-{n}");
            let confirm =
                lapin_support::publish(&channel, topic, "", body.as_bytes(), BasicProperties::default()).await;
            assert!(confirm.is_ack());
        }
        let records: Vec<(Option<String>, String)> = keys
            .iter()
            .map(|key| (Some(key.clone()), format!("rdkafka-{key}")))
            .collect();
        let kafka = producer(&bootstrap, &[("partitioner", "murmur2_random")]);
        let librdkafka_partitions = produce(&kafka, topic, &records).await;

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "feed-keys-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..4 {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assign");
        }
        consumer.assign(&assignment).expect("assign");
        let mut found: BTreeMap<String, i32> = BTreeMap::new();
        let deadline = Instant::now() + WAIT;
        let total = keys.len() * 2 + 8;
        while found.len() < total {
            assert!(Instant::now() < deadline, "only {} records", found.len());
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("consume");
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                found.insert(value, message.partition());
            }
        }
        let unkeyed: BTreeSet<i32> = (0..8)
            .map(|n| found[&format!("amqp-unkeyed-{n}")])
            .collect();
        assert_eq!(unkeyed.len(), 4, "unkeyed publishes spread over the partitions");
        let mut used = BTreeSet::new();
        for (key, librdkafka) in keys.iter().zip(&librdkafka_partitions) {
            assert_eq!(found[&format!("rdkafka-{key}")], *librdkafka);
            assert_eq!(
                found[&format!("amqp-{key}")],
                *librdkafka,
                "key {key}: AMQP publish in partition {} but librdkafka's murmur2 picks {librdkafka}",
                found[&format!("amqp-{key}")]
            );
            used.insert(*librdkafka);
        }
        assert_eq!(used.len(), 4, "the keys cover every partition");

        // The bound queue gets each record once: publishes reach it only through the topic.
        let got = consume_all(&connection, "keys-all", total, Duration::from_secs(2)).await;
        assert_eq!(got.len(), total);
        assert!(exactly_once(&got));
        connection.close(200, "bye".into()).await.expect("close");
    });
    broker.terminate();
}

/// Ready messages of `queue` (a passive declare's count).
async fn ready(channel: &Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .expect("passive declare")
        .message_count()
}

/// Waits up to 10 s for `queue` to hold `count` ready messages, then 1.5 s more to see that
/// no more come; returns what it holds.
async fn settle(channel: &Channel, queue: &str, count: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(channel, queue).await < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ready(channel, queue).await
}

#[test]
fn unbinding_or_deleting_the_topic_stops_the_feed_and_declared_exchanges_keep_their_names() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    let topic = "feed-life";
    rocketmq::runtime().block_on(async {
        create_topic(&bootstrap, topic, 2).await;
        let kafka = producer(&bootstrap, &[]);
        let connection = connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        declare_queue(&channel, "life", false).await;
        bind(&channel, "life", topic, "#").await;
        produce(&kafka, topic, &kafka_records(10, 0)).await;
        assert_eq!(settle(&channel, "life", 10).await, 10);

        // Unbound: nothing more arrives; bound again: only what is written after.
        channel
            .queue_unbind(
                "life".into(),
                topic.into(),
                "#".into(),
                FieldTable::default(),
            )
            .await
            .expect("unbind");
        produce(&kafka, topic, &kafka_records(10, 100)).await;
        assert_eq!(
            settle(&channel, "life", 10).await,
            10,
            "fed after the unbind"
        );
        bind(&channel, "life", topic, "#").await;
        produce(&kafka, topic, &kafka_records(5, 200)).await;
        assert_eq!(settle(&channel, "life", 15).await, 15);

        // A stream cannot be fed from a topic (it is a topic itself).
        let streams = connection.create_channel().await.expect("channel");
        streams
            .queue_declare(
                "life-stream".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                lapin_support::stream_args(),
            )
            .await
            .expect("declare a stream");
        let refused = streams
            .queue_bind(
                "life-stream".into(),
                topic.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect_err("a stream is not fed")
            .to_string();
        assert!(refused.contains("PRECONDITION_FAILED"), "{refused}");

        // Deleting the topic drops the binding: a topic created again under the name does
        // not feed the queue.
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("admin client");
        let deleted = admin
            .delete_topics(&[topic], &AdminOptions::new())
            .await
            .expect("delete topics");
        assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        create_topic(&bootstrap, topic, 2).await;
        produce(&kafka, topic, &kafka_records(5, 300)).await;
        assert_eq!(
            settle(&channel, "life", 15).await,
            15,
            "fed from a deleted topic"
        );

        // An exchange declared before a topic of its name keeps the name.
        let later = "declared-first";
        channel
            .exchange_declare(
                later.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare a direct exchange");
        create_topic(&bootstrap, later, 2).await;
        declare_queue(&channel, "direct-target", false).await;
        channel
            .queue_bind(
                "direct-target".into(),
                later.into(),
                "k".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("direct bind");
        let confirms = lapin_support::confirm_channel(&connection).await;
        let confirm =
            lapin_support::publish(&confirms, later, "k", b"direct", BasicProperties::default())
                .await;
        assert!(confirm.is_ack());
        assert_eq!(settle(&channel, "direct-target", 1).await, 1);
        let refused = channel
            .exchange_declare(
                later.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect_err("the declared exchange is direct")
            .to_string();
        assert!(refused.contains("current is 'direct'"), "{refused}");
    });
    broker.terminate();
}
