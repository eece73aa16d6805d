//! The clients of [`super`]'s run: a Kafka group member that records its rebalances, and the
//! Kafka, AMQP and RocketMQ producers, each counting what it was told was stored and what it
//! had to send again.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rocketmq_client_rust::{
    ClientConfig as RocketConfig, ClientResult, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message as RocketMessage;

use super::{KAFKA_TOPIC, ROCKET_TOPIC};
use crate::cluster::{Counting, record_id};
use crate::queues::{channel, declare};
use crate::rocketmq_support::Client;

/// AMQP messages published and not yet confirmed, at most.
const AMQP_WINDOW: usize = 10;
/// RocketMQ sends at once (each waits for its result).
const ROCKET_SENDERS: u32 = 4;

/// A Kafka group member's view of its assignments: (when, partitions) per rebalance.
#[derive(Default)]
pub(super) struct Assignments(pub(super) Mutex<Vec<(Instant, Vec<i32>)>>);

/// The context that records a member's rebalances in its [`Assignments`].
struct Tracking(Arc<Assignments>);

impl ClientContext for Tracking {}

impl ConsumerContext for Tracking {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = match rebalance {
            Rebalance::Assign(list) => list.elements().iter().map(|e| e.partition()).collect(),
            _ => Vec::new(),
        };
        self.0.0.lock().push((Instant::now(), partitions));
    }
}

/// What a Kafka group member read: (partition, offset, record id).
type Read = Arc<Mutex<Vec<(i32, i64, u32)>>>;

pub(super) struct Member {
    pub(super) assignments: Arc<Assignments>,
    pub(super) read: Read,
    pub(super) thread: JoinHandle<()>,
}

/// A member of `group` bootstrapped from `bootstrap`, committing automatically every 200 ms
/// (and on revocation), until `stop`.
pub(super) fn member(bootstrap: &str, group: &str, stop: Arc<AtomicBool>) -> Member {
    let assignments = Arc::new(Assignments::default());
    let read: Read = Arc::default();
    let consumer: BaseConsumer<Tracking> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create_with_context(Tracking(assignments.clone()))
        .expect("group member");
    consumer.subscribe(&[KAFKA_TOPIC]).expect("subscribe");
    let sink = read.clone();
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            // Errors (a coordinator or leader gone) are the client's to retry; it does.
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let id = record_id(&message);
                sink.lock()
                    .push((message.partition(), message.offset(), id));
            }
        }
        let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    });
    Member {
        assignments,
        read,
        thread,
    }
}

pub(super) fn current(assignments: &Assignments) -> Vec<i32> {
    assignments
        .0
        .lock()
        .last()
        .map(|(_, p)| p.clone())
        .unwrap_or_default()
}

/// The Kafka producer: one record every 4 ms until `stop`, then a flush.
pub(super) fn kafka_producer(
    producer: Arc<ThreadedProducer<Counting>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<HashMap<u32, Instant>> {
    std::thread::spawn(move || {
        let mut sent = HashMap::new();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let mut payload = n.to_be_bytes().to_vec();
            payload.extend_from_slice(&[0x4b; 40]);
            let key = format!("k{n}");
            // A full local queue is back-pressure, not a failure: wait and send again.
            while let Err((_, _)) =
                producer.send(BaseRecord::to(KAFKA_TOPIC).key(&key).payload(&payload))
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            sent.insert(n, Instant::now());
            n += 1;
            std::thread::sleep(Duration::from_millis(4));
        }
        producer
            .flush(Duration::from_secs(90))
            .expect("every record delivered or failed");
        sent
    })
}

/// The AMQP publisher: up to `AMQP_WINDOW` messages awaiting their confirm, through the first
/// broker of `addrs` that answers (the next after a failure). A nack, a broken connection or a
/// confirm that does not come publishes every unconfirmed message again (a message stored but
/// not confirmed may then be there twice). Returns the confirmed numbers with when, and how
/// many publishes were tries again.
pub(super) async fn amqp_publisher(
    addrs: Vec<SocketAddr>,
    queue: String,
    stop: Arc<AtomicBool>,
) -> (Vec<(u32, Instant)>, u64) {
    let mut confirmed = Vec::new();
    let mut retries = 0u64;
    let mut session: Option<(Connection, Channel)> = None;
    let mut pending: VecDeque<(u32, PublisherConfirm)> = VecDeque::new();
    let mut again: VecDeque<u32> = VecDeque::new();
    let (mut next_addr, mut next_number) = (0usize, 0u32);
    let started = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && pending.is_empty() && again.is_empty() {
            return (confirmed, retries);
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "AMQP publishing stalled at {next_number}"
        );
        let Some((_, channel)) = &session else {
            let uri = format!("amqp://guest:guest@{}/%2f", addrs[next_addr % addrs.len()]);
            next_addr += 1;
            if let Ok(connection) = Connection::connect(&uri, ConnectionProperties::default()).await
                && let Ok(channel) = channel(&connection).await
                && declare(&channel, &queue).await.is_ok()
            {
                session = Some((connection, channel));
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let mut failed = false;
        while pending.len() < AMQP_WINDOW {
            let number = match again.pop_front() {
                Some(number) => {
                    retries += 1;
                    number
                }
                None if !stopping => {
                    next_number += 1;
                    next_number - 1
                }
                None => break,
            };
            let mut body = number.to_be_bytes().to_vec();
            body.extend_from_slice(&[0x41; 32]);
            let published = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match published {
                Ok(confirm) => pending.push_back((number, confirm)),
                Err(_) => {
                    again.push_front(number);
                    failed = true;
                    break;
                }
            }
        }
        if !failed && let Some((number, confirm)) = pending.pop_front() {
            match tokio::time::timeout(Duration::from_secs(10), confirm).await {
                Ok(Ok(Confirmation::Ack(_))) => {
                    confirmed.push((number, Instant::now()));
                    continue;
                }
                _ => {
                    again.push_front(number);
                    failed = true;
                }
            }
        }
        if failed {
            // Start again on a fresh session with everything unconfirmed, oldest first.
            again.extend(pending.drain(..).map(|(number, _)| number));
            again.make_contiguous().sort_unstable();
            session = None;
        }
    }
}

/// The RocketMQ producer over every name server: `ROCKET_SENDERS` tasks sharing it, each
/// sending one message at a time until sent OK (the client itself first retries another
/// broker; a send it gave up on is sent again, counted).
pub(super) async fn rocket_producer(
    namesrvs: String,
    stop: Arc<AtomicBool>,
) -> (Vec<(u32, Instant)>, u64) {
    let client = Client::new("kill-all-producer").expect("client");
    let mut producer = DefaultMQProducer::builder(client.runtime.clone())
        .producer_group("PID-kill-all".to_string())
        .client_config(rocket_config(&namesrvs))
        .send_msg_timeout(3_000)
        .build();
    producer.start().await.expect("producer start");
    let producer = Arc::new(producer);
    let senders: Vec<_> = (0..ROCKET_SENDERS)
        .map(|first| {
            let (producer, stop) = (producer.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut retries = 0u64;
                let started = Instant::now();
                let mut number = first;
                while !stop.load(Ordering::Relaxed) {
                    loop {
                        assert!(
                            started.elapsed() < Duration::from_secs(90),
                            "RocketMQ sends stalled at {number}"
                        );
                        let message = RocketMessage::builder()
                            .topic(ROCKET_TOPIC)
                            .tags("K")
                            .body(number.to_be_bytes().to_vec())
                            .build()
                            .expect("message");
                        if let Ok(Some(_)) = producer.send(message).await {
                            break;
                        }
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    sent.push((number, Instant::now()));
                    number += ROCKET_SENDERS;
                }
                (sent, retries)
            })
        })
        .collect();
    let (mut sent, mut retries) = (Vec::new(), 0);
    for sender in senders {
        let (some, again) = sender.await.expect("sender");
        sent.extend(some);
        retries += again;
    }
    if let Ok(mut producer) = Arc::try_unwrap(producer) {
        producer.shutdown().await;
    }
    client.shutdown().await;
    (sent, retries)
}

/// RocketMQ client settings: every name server, routes refreshed and offsets persisted as often
/// as the client allows, so a consumer finds the new reader soon after the old one died.
pub(super) fn rocket_config(namesrvs: &str) -> RocketConfig {
    RocketConfig {
        namesrv_addr: Some(namesrvs.into()),
        poll_name_server_interval: 10_000,
        heartbeat_broker_interval: 10_000,
        persist_consumer_offset_interval: 1_000,
        ..RocketConfig::default()
    }
}

/// What a RocketMQ member consumed: (queue id, queue offset, message number).
pub(super) type Consumed = Arc<Mutex<Vec<(i32, i64, u32, Instant)>>>;

/// A listener that records where each message came from.
pub(super) struct Recording(pub(super) Consumed);

impl MessageListenerConcurrently for Recording {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut consumed = self.0.lock();
        for msg in msgs {
            let body = msg.body().unwrap_or_default();
            let number = body.get(..4).map_or(u32::MAX, |b| {
                u32::from_be_bytes(b.try_into().expect("4 bytes"))
            });
            consumed.push((msg.queue_id(), msg.queue_offset(), number, Instant::now()));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

pub(super) fn rocket_ids(sink: &Mutex<Vec<(i32, i64, u32, Instant)>>) -> Vec<u32> {
    sink.lock().iter().map(|c| c.2).collect()
}
