//! AMQP queues across brokers on the cloud engine, through the real binary and lapin: a queue
//! is run by one broker (the leader of its log partition) and used through any other (calls
//! forwarded over the internal RPC); the owner's SIGKILL moves the queue to a survivor within
//! the lease, and no confirmed message is lost. Also: an AMQP publish to a Kafka topic's
//! exchange through a broker that does not lead the partition lands (forwarded append).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;

use crate::broker::TestBroker;
use crate::cluster::start_broker;
use crate::services::{bucket, fresh_database, unique};

/// The broker (of `ids`) that owns `key` as the brokers compute it (rendezvous over the live
/// brokers): `p<topic><partition>` for a partition's leader, `g<group>` for a coordinator.
pub(crate) fn owner_of(key: &[u8], ids: &[u32]) -> u32 {
    *ids.iter()
        .max_by_key(|id| tributary::cloud::members::rendezvous(key, **id))
        .expect("a broker")
}

/// The broker (of `ids`) that runs queue `name`: the leader of `queue:<name>`/0.
fn owner(name: &str, ids: &[u32]) -> u32 {
    let mut key = b"pqueue:".to_vec();
    key.extend_from_slice(name.as_bytes());
    key.extend_from_slice(&0u32.to_be_bytes());
    owner_of(&key, ids)
}

/// A queue name (`prefix-n`) that broker `wanted` of `ids` runs.
pub(crate) fn queue_owned_by(prefix: &str, wanted: u32, ids: &[u32]) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|name| owner(name, ids) == wanted)
        .expect("some name")
}

pub(crate) struct Cluster {
    pub(crate) brokers: Vec<TestBroker>,
    database: String,
    objects: String,
    path: String,
    _config: tempfile::NamedTempFile,
}

impl Cluster {
    /// Starts one more broker, `id`, over the same database and bucket.
    pub(crate) fn add(&mut self, id: u32) {
        let broker = start_broker(id, &self.database, &self.objects, &self.path);
        self.brokers.push(broker);
    }
}

pub(crate) async fn cluster(count: u32, extra: &str) -> Cluster {
    let database = fresh_database("queues").await;
    let objects = format!("s3://{}/{}", bucket(), unique("queues"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!("{extra}\n[cluster]\nflush_interval_ms = 20\n"),
    )
    .expect("write config");
    let path = config.path().to_str().expect("utf-8").to_owned();
    let brokers = (1..=count)
        .map(|id| start_broker(id, &database, &objects, &path))
        .collect();
    Cluster {
        brokers,
        database,
        objects,
        path,
        _config: config,
    }
}

pub(crate) async fn connect(broker: &mut TestBroker) -> lapin::Result<Connection> {
    let uri = format!("amqp://guest:guest@{}/%2f", broker.addr("amqp"));
    Connection::connect(&uri, ConnectionProperties::default()).await
}

pub(crate) async fn channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

pub(crate) async fn declare(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok(declared.message_count())
}

async fn publish(channel: &Channel, queue: &str, body: &[u8]) -> lapin::Result<Confirmation> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await
}

/// Publishes `count` messages `tag-i` on `from` with confirms, consumes and acks them on
/// `to`, in order; then both brokers see the queue empty.
async fn across(from: &mut TestBroker, to: &mut TestBroker, queue: &str, tag: &str, count: usize) {
    let publisher = connect(from).await.expect("connect the publisher");
    let publishing = channel(&publisher).await.expect("channel");
    declare(&publishing, queue).await.expect("declare");
    for i in 0..count {
        let confirm = publish(&publishing, queue, format!("{tag}-{i}").as_bytes())
            .await
            .expect("publish");
        assert_eq!(confirm, Confirmation::Ack(None), "{tag}-{i} confirmed");
    }
    let consumer = connect(to).await.expect("connect the consumer");
    let consuming = channel(&consumer).await.expect("channel");
    assert_eq!(
        declare(&consuming, queue).await.expect("declare"),
        count as u32,
        "the other broker sees every message ready"
    );
    let mut deliveries = consuming
        .basic_consume(
            queue.into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..count {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("a delivery within 10 s")
            .expect("stream open")
            .expect("delivery");
        assert_eq!(delivery.data, format!("{tag}-{i}").as_bytes(), "FIFO");
        assert!(!delivery.redelivered);
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    consumer.close(200, "bye".into()).await.expect("close");
    // The acks committed before the connection closed (close waits for them to be applied).
    let count_on = |connection: Connection| async move {
        let channel = channel(&connection).await.expect("channel");
        let left = declare(&channel, queue).await.expect("declare");
        connection.close(200, "bye".into()).await.expect("close");
        left
    };
    assert_eq!(
        count_on(publisher).await,
        0,
        "acked on one broker, gone on the other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_fed_on_one_broker_and_worked_off_on_another_either_way() {
    let mut cluster = cluster(2, "").await;
    let ids = [1, 2];
    // One queue each broker runs, so every direction crosses an owner and a non-owner.
    for wanted in ids {
        let queue = queue_owned_by("across", wanted, &ids);
        let (a, b) = cluster.brokers.split_at_mut(1);
        across(&mut a[0], &mut b[0], &queue, "ab", 25).await;
        across(&mut b[0], &mut a[0], &queue, "ba", 25).await;
    }
}

/// What the consumer saw: (message number, redelivered) in delivery order.
pub(crate) type Seen = Arc<Mutex<Vec<(u32, bool)>>>;

/// Consumes `queue` on `broker` with manual acks until `stop`, reconnecting after errors.
pub(crate) async fn consume_forever(
    addr: std::net::SocketAddr,
    queue: String,
    seen: Seen,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        let session = async {
            let uri = format!("amqp://guest:guest@{addr}/%2f");
            let connection = Connection::connect(&uri, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel.basic_qos(20, BasicQosOptions::default()).await?;
            declare(&channel, &queue).await?;
            let mut deliveries = channel
                .basic_consume(
                    queue.as_str().into(),
                    "worker".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            while let Some(delivery) = deliveries.next().await {
                let delivery = delivery?;
                let number = u32::from_be_bytes(delivery.data[..4].try_into().expect("id"));
                seen.lock().push((number, delivery.redelivered));
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Ok::<(), lapin::Error>(())
        };
        tokio::select! {
            () = stop.notified() => return,
            outcome = session => {
                if let Err(error) = outcome {
                    eprintln!("consumer: {error}; reconnecting");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_under_load_loses_no_confirmed_message() {
    const MESSAGES: u32 = 600;
    let mut cluster = cluster(3, "").await;
    let ids = [1, 2, 3];
    let queue = queue_owned_by("survives", 3, &ids);
    let publisher_addr = cluster.brokers[0].addr("amqp");
    let consumer_addr = cluster.brokers[1].addr("amqp");

    let seen: Seen = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        // Declared before the consumer starts, so its first declare finds it.
        let connection = connect(&mut cluster.brokers[0]).await.expect("connect");
        declare(&channel(&connection).await.expect("channel"), &queue)
            .await
            .expect("declare");
    }
    let consumer = tokio::spawn(consume_forever(
        consumer_addr,
        queue.clone(),
        seen.clone(),
        stop.clone(),
    ));

    // One message at a time, each until confirmed: a nack or a broken connection during the
    // take-over is retried (a message stored but not confirmed may then be there twice).
    let mut confirmed = Vec::new();
    let mut published_twice = 0u32;
    let mut session: Option<(Connection, Channel)> = None;
    let started = Instant::now();
    let victim = cluster.brokers[2].pid();
    for number in 0..MESSAGES {
        if number == MESSAGES / 3 {
            cluster.brokers[2].signal("KILL");
            eprintln!("killed the owner (pid {victim}) after {number} messages");
        }
        let mut body = number.to_be_bytes().to_vec();
        body.extend_from_slice(&[0x51; 32]);
        let mut attempts = 0;
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "publishing stalled at {number}"
            );
            if session.is_none() {
                let uri = format!("amqp://guest:guest@{publisher_addr}/%2f");
                if let Ok(connection) =
                    Connection::connect(&uri, ConnectionProperties::default()).await
                    && let Ok(channel) = channel(&connection).await
                {
                    session = Some((connection, channel));
                }
            }
            if let Some((_, channel)) = &session {
                attempts += 1;
                match publish(channel, &queue, &body).await {
                    Ok(Confirmation::Ack(_)) => break,
                    Ok(_) => {}
                    Err(_) => session = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if attempts > 1 {
            published_twice += 1;
        }
        confirmed.push(number);
    }

    // Every confirmed message reaches the consumer on a survivor.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: std::collections::HashSet<u32> =
            seen.lock().iter().map(|(n, _)| *n).collect();
        if confirmed.iter().all(|n| delivered.contains(n)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.notify_one();
    let _ = consumer.await;
    let seen = seen.lock().clone();

    let mut counts: HashMap<u32, u32> = HashMap::new();
    for (number, _) in &seen {
        *counts.entry(*number).or_default() += 1;
    }
    let lost: Vec<u32> = confirmed
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(n))
        .collect();
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    let redelivered = seen.iter().filter(|(_, again)| *again).count();
    // First deliveries never flagged redelivered come in publish order.
    let mut first_seen = std::collections::HashSet::new();
    let fresh: Vec<u32> = seen
        .iter()
        .filter(|(n, again)| !again && first_seen.insert(*n))
        .map(|(n, _)| *n)
        .collect();
    let out_of_order = fresh.windows(2).filter(|w| w[0] > w[1]).count();
    eprintln!(
        "owner killed: {} confirmed, {} retried publishes, {} deliveries, {} lost, {duplicates} duplicates, {redelivered} flagged redelivered, {out_of_order} fresh deliveries out of order",
        confirmed.len(),
        published_twice,
        seen.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "confirmed but never delivered: {lost:?}");
    assert_eq!(
        out_of_order, 0,
        "never-delivered messages keep FIFO order: {fresh:?}"
    );
    // A duplicate is a redelivery of an unacked message (at most the prefetch window in
    // flight at the kill, twice for a consumer that reconnected) or a retried publish.
    assert!(
        duplicates <= 40 + published_twice,
        "{duplicates} duplicates for {published_twice} retried publishes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_publish_to_a_topic_another_broker_leads_is_forwarded_and_lands() {
    let mut cluster = cluster(2, "[kafka]\ndefault_partitions = 1\n").await;
    // A topic whose one partition broker 2 leads, published to through broker 1.
    let ids = [1, 2];
    let topic = (0..)
        .map(|n| format!("feed-{n}"))
        .find(|name| {
            let mut key = b"p".to_vec();
            key.extend_from_slice(name.as_bytes());
            key.extend_from_slice(&0u32.to_be_bytes());
            ids.iter()
                .max_by_key(|id| tributary::cloud::members::rendezvous(&key, **id))
                == Some(&2)
        })
        .expect("a name");
    let kafka_a = cluster.brokers[0].addr("kafka");
    let kafka_b = cluster.brokers[1].addr("kafka");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_b.to_string())
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    assert!(created[0].is_ok(), "{created:?}");
    // Broker 1 learns the topic (and so its exchange) at its next renewal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connection = connect(&mut cluster.brokers[0]).await.expect("connect");
    let channel = channel(&connection).await.expect("channel");
    for i in 0..5 {
        let confirm = channel
            .basic_publish(
                topic.as_str().into(),
                format!("key-{i}").as_str().into(),
                BasicPublishOptions::default(),
                format!("value-{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert_eq!(confirm, Confirmation::Ack(None), "message {i} confirmed");
    }
    let reader = crate::kafka::consumer(&kafka_a.to_string(), "feed-check", &topic, 1);
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < 5 && Instant::now() < deadline {
        if let Some(message) = reader.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(
        values,
        (0..5).map(|i| format!("value-{i}")).collect::<Vec<_>>(),
        "what AMQP published through the non-leader is in the topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_killed_brokers_consumer_go_to_a_consumer_elsewhere() {
    let mut cluster = cluster(3, "").await;
    let ids = [1, 2, 3];
    let queue = queue_owned_by("lent", 1, &ids);
    let publisher = connect(&mut cluster.brokers[0]).await.expect("connect");
    let publishing = channel(&publisher).await.expect("channel");
    declare(&publishing, &queue).await.expect("declare");
    for i in 0..20u32 {
        let confirm = publish(&publishing, &queue, &i.to_be_bytes())
            .await
            .expect("publish");
        assert_eq!(confirm, Confirmation::Ack(None));
    }
    // A consumer on broker 3 takes ten and acks none; then broker 3 dies.
    let doomed = connect(&mut cluster.brokers[2]).await.expect("connect");
    let doomed_channel = doomed.create_channel().await.expect("channel");
    doomed_channel
        .basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut doomed_deliveries = doomed_channel
        .basic_consume(
            queue.as_str().into(),
            "doomed".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(10), doomed_deliveries.next())
            .await
            .expect("a delivery")
            .expect("open")
            .expect("delivery");
    }
    cluster.brokers[2].signal("KILL");

    // Well before broker 3's lease runs out, a consumer on broker 2 gets all twenty: the
    // owner put back what it had lent to the dead broker.
    let started = Instant::now();
    let survivor = connect(&mut cluster.brokers[1]).await.expect("connect");
    let channel = survivor.create_channel().await.expect("channel");
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            "survivor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut got = Vec::new();
    while got.len() < 20 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("all twenty within 10 s")
            .expect("open")
            .expect("delivery");
        got.push((
            u32::from_be_bytes(delivery.data[..4].try_into().expect("id")),
            delivery.redelivered,
        ));
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let mut numbers: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>(), "each message once");
    let redelivered: Vec<u32> = got.iter().filter(|(_, r)| *r).map(|(n, _)| *n).collect();
    assert_eq!(
        redelivered,
        (0..10).collect::<Vec<_>>(),
        "the ten lent ones, flagged"
    );
    eprintln!("lent deliveries back after {:?}", started.elapsed());
}
