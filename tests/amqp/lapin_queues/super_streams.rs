//! docs/interop.md "Topics seen from AMQP": a topic of N >= 2 partitions is a RabbitMQ super
//! stream whose partition p is the stream queue `T-p`, read with lapin against what librdkafka
//! wrote and reported (partitions and offsets), and written through AMQP into one partition.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::AMQPValue;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::broker::TestBroker;
use crate::lapin_support::{
    confirm_channel, connect_to, consume_stream, next, publish, stream_args, text,
};

const WAIT: Duration = Duration::from_secs(20);

/// Per partition, in offset order: (offset, key, value) as librdkafka reported the writes.
type Placed = BTreeMap<i32, Vec<(i64, String, String)>>;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let results = admin(bootstrap)
        .create_topics(&new, &options)
        .await
        .expect("create topics");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Writes `records` keyed records (librdkafka's partitioner spreads them) and returns where
/// each landed.
async fn produce_keyed(bootstrap: &str, topic: &str, records: usize) -> Placed {
    let producer = producer(bootstrap);
    let written: Vec<(String, String)> = (0..records)
        .map(|i| (format!("key-{}", i % 97), format!("value-{i}")))
        .collect();
    let mut pending = Vec::new();
    for (key, value) in &written {
        let record = FutureRecord::to(topic).key(key).payload(value);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    let mut placed = Placed::new();
    for ((key, value), delivery) in written.into_iter().zip(pending) {
        let delivery = delivery.await.expect("delivery report").expect("produced");
        placed
            .entry(delivery.partition)
            .or_default()
            .push((delivery.offset, key, value));
    }
    for records in placed.values_mut() {
        records.sort();
    }
    placed
}

fn stream_offset(delivery: &lapin::message::Delivery) -> i64 {
    let headers = delivery.properties.headers().as_ref().expect("headers");
    match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(offset)) => *offset,
        other => panic!("x-stream-offset is {other:?}"),
    }
}

/// Reads stream `queue` from its first offset: exactly `count` deliveries as (offset,
/// routing key, body), then checks that nothing more arrives.
async fn read_all(
    connection: &lapin::Connection,
    queue: &str,
    count: usize,
) -> Vec<(i64, String, String)> {
    let (channel, mut consumer) = consume_stream(connection, queue, text("first")).await;
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        let delivery = next(&mut consumer).await;
        got.push((
            stream_offset(&delivery),
            delivery.routing_key.to_string(),
            String::from_utf8(delivery.data.clone()).expect("UTF-8 body"),
        ));
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let more = tokio::time::timeout(Duration::from_millis(500), next(&mut consumer)).await;
    assert!(more.is_err(), "{queue}: more than {count} deliveries");
    channel.close(200, "done".into()).await.expect("close");
    got
}

/// The declare error text of stream `name` (on a channel of its own).
async fn declare_refused(connection: &lapin::Connection, name: &str) -> String {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(name.into(), durable(), stream_args())
        .await
        .expect_err("declare is refused")
        .to_string()
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// The value at `offset` of `partition` of `topic`, read with librdkafka.
fn kafka_value_at(bootstrap: &str, topic: &str, partition: i32, offset: i64) -> String {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "super-stream-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(std::time::Instant::now() < deadline, "nothing at {offset}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("kafka consume");
            assert_eq!((message.partition(), message.offset()), (partition, offset));
            return String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_partition_topic_is_read_whole_through_its_partition_streams() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    create_topics(&bootstrap, &[("orders", 4)]).await;
    let placed = produce_keyed(&bootstrap, "orders", 400).await;
    assert_eq!(placed.len(), 4, "keys spread over every partition");

    let connection = connect_to(amqp).await;
    // The topic itself is no stream: the refusal names its partition streams.
    let refused = declare_refused(&connection, "orders").await;
    assert!(refused.contains("PRECONDITION_FAILED"), "{refused}");
    assert!(refused.contains("'orders-0'..'orders-3'"), "{refused}");
    // Partitions that do not exist are refused too.
    let refused = declare_refused(&connection, "orders-4").await;
    assert!(refused.contains("has 4 partitions"), "{refused}");

    let channel = connection.create_channel().await.expect("channel");
    for partition in 0..4 {
        let name = format!("orders-{partition}");
        for _ in 0..2 {
            let declared = channel
                .queue_declare(name.as_str().into(), durable(), stream_args())
                .await
                .expect("declare a partition stream");
            assert_eq!(declared.message_count(), 0);
        }
    }
    let mut total = 0;
    for (partition, written) in &placed {
        let got = read_all(&connection, &format!("orders-{partition}"), written.len()).await;
        assert_eq!(&got, written, "partition {partition}");
        total += got.len();
    }
    assert_eq!(total, 400);

    // Publishing to `orders-2` (default exchange, or any exchange bound to it) appends to
    // partition 2, where Kafka finds it at the next offsets.
    let publisher = confirm_channel(&connection).await;
    channel
        .exchange_declare(
            "to-orders".into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            Default::default(),
        )
        .await
        .expect("exchange");
    channel
        .queue_bind(
            "orders-2".into(),
            "to-orders".into(),
            "two".into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .expect("bind");
    let properties = BasicProperties::default;
    assert!(
        publish(&publisher, "", "orders-2", b"amqp-direct", properties())
            .await
            .is_ack()
    );
    assert!(
        publish(&publisher, "to-orders", "two", b"amqp-bound", properties())
            .await
            .is_ack()
    );
    let next_offset = placed[&2].len() as i64;
    let kafka = bootstrap.clone();
    let values = tokio::task::spawn_blocking(move || {
        [0, 1].map(|i| kafka_value_at(&kafka, "orders", 2, next_offset + i))
    })
    .await
    .expect("kafka reader");
    assert_eq!(values, ["amqp-direct", "amqp-bound"]);
    let got = read_all(&connection, "orders-2", placed[&2].len() + 2).await;
    assert_eq!(
        got[placed[&2].len()..],
        [
            (next_offset, "orders-2".to_owned(), "amqp-direct".to_owned()),
            (next_offset + 1, "two".to_owned(), "amqp-bound".to_owned()),
        ]
    );

    // A partition stream is not deleted on its own: the topic keeps its data and partitions.
    let deleter = connection.create_channel().await.expect("channel");
    let refused = deleter
        .queue_delete("orders-2".into(), QueueDeleteOptions::default())
        .await
        .expect_err("deleting a partition stream is refused")
        .to_string();
    assert!(
        refused.contains("partition 2 of super stream 'orders'"),
        "{refused}"
    );
    assert_eq!(
        read_all(&connection, "orders-2", placed[&2].len() + 2)
            .await
            .len(),
        placed[&2].len() + 2
    );

    // Partitions added later are declarable; a consumer's stream survives a restart.
    let grown = admin(&bootstrap)
        .create_partitions(
            &[NewPartitions::new("orders", 5)],
            &AdminOptions::new().operation_timeout(Some(WAIT)),
        )
        .await
        .expect("grow");
    assert_eq!(grown, vec![Ok("orders".to_owned())]);
    channel
        .queue_declare("orders-4".into(), durable(), stream_args())
        .await
        .expect("declare the new partition's stream");
    assert!(
        publish(&publisher, "", "orders-4", b"fifth", properties())
            .await
            .is_ack()
    );
    let kafka = bootstrap.clone();
    let fifth = tokio::task::spawn_blocking(move || kafka_value_at(&kafka, "orders", 4, 0))
        .await
        .expect("kafka reader");
    assert_eq!(fifth, "fifth");
    drop(connection);
    broker.kill_and_restart();
    let connection = connect_to(broker.addr("amqp")).await;
    let got = read_all(&connection, "orders-1", placed[&1].len()).await;
    assert_eq!(&got, &placed[&1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_topic_named_like_a_partition_wins_and_passive_declares_find_partitions() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    create_topics(&bootstrap, &[("logs", 2), ("logs-1", 1)]).await;
    let producer = producer(&bootstrap);
    for (topic, partition, value) in [("logs", 0, "p0"), ("logs", 1, "p1"), ("logs-1", 0, "own")] {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(value),
                WAIT,
            )
            .await
            .expect("produce");
    }
    let connection = connect_to(amqp).await;
    // A passive declare finds a partition stream nobody declared yet.
    let passive = connection.create_channel().await.expect("channel");
    let found = passive
        .queue_declare(
            "logs-0".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("passive declare of a partition stream");
    assert_eq!(found.message_count(), 0);
    let got = read_all(&connection, "logs-0", 1).await;
    assert_eq!(got, [(0, String::new(), "p0".to_owned())]);
    // `logs-1` is the topic of that name, not partition 1 of `logs`.
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare("logs-1".into(), durable(), stream_args())
        .await
        .expect("declare logs-1");
    let got = read_all(&connection, "logs-1", 1).await;
    assert_eq!(got, [(0, String::new(), "own".to_owned())]);
    // A passive declare of a name that is neither is still 404.
    let error = passive
        .queue_declare(
            "logs-7".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect_err("no such partition");
    assert!(error.to_string().contains("NOT_FOUND"), "{error}");

    // Kafka deletes `logs-1` and creates it again with two partitions: the stream does not read
    // partition 0 of the new topic, declaring it again is refused as for any new declaration,
    // and deleting it leaves the new topic alone.
    let kafka_admin = admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let deleted = kafka_admin
        .delete_topics(&["logs-1"], &options)
        .await
        .expect("delete");
    assert_eq!(deleted, vec![Ok("logs-1".to_owned())]);
    create_topics(&bootstrap, &[("logs-1", 2)]).await;
    let consumer = connection.create_channel().await.expect("channel");
    consumer
        .basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let error = consumer
        .basic_consume(
            "logs-1".into(),
            "".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .expect_err("the stream's topic is gone");
    assert!(error.to_string().contains("NOT_FOUND"), "{error}");
    let refused = declare_refused(&connection, "logs-1").await;
    assert!(refused.contains("'logs-1-0'..'logs-1-1'"), "{refused}");
    let deleter = connection.create_channel().await.expect("channel");
    deleter
        .queue_delete("logs-1".into(), QueueDeleteOptions::default())
        .await
        .expect("delete the stale stream");
    let metadata = kafka_admin
        .inner()
        .fetch_metadata(None, WAIT)
        .expect("metadata");
    let kept = metadata.topics().iter().find(|t| t.name() == "logs-1");
    assert_eq!(kept.map(|t| t.partitions().len()), Some(2));
}
