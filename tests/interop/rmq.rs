//! rocketmq-client-rust on the RocketMQ side: a push consumer that keeps everything a message
//! carries (queue offset, body, properties, born/store time and host, flag, sysFlag), reading a
//! topic with exact counts, and a producer whose body compression is pinned to zlib over 4 KiB
//! (the client's defaults, stated so a changed default cannot quietly disable the check).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::compression::compression_type::CompressionType;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

use crate::rocketmq::Client;

/// Properties the consuming client adds on its own after a pull (not part of the message).
const CLIENT_ADDED: [&str; 3] = ["MIN_OFFSET", "MAX_OFFSET", "CONSUME_START_TIME"];

/// Everything a RocketMQ consumer got for one message.
#[derive(Clone, Debug)]
pub(crate) struct Pulled {
    pub(crate) queue_id: i32,
    pub(crate) queue_offset: i64,
    pub(crate) body: Vec<u8>,
    /// The message's properties without the ones the client itself adds.
    pub(crate) properties: HashMap<String, String>,
    pub(crate) born_timestamp: i64,
    pub(crate) store_timestamp: i64,
    pub(crate) born_host: SocketAddr,
    pub(crate) flag: i32,
    pub(crate) sys_flag: i32,
    pub(crate) reconsume_times: i32,
}

impl Pulled {
    /// A message the client sent back and got again from the group's retry topic (the client
    /// puts the original topic back, so the retry marks are what tell).
    fn is_redelivery(&self) -> bool {
        self.reconsume_times > 0 || self.properties.contains_key("RETRY_TOPIC")
    }
}

struct Keeper(Arc<Mutex<Vec<Pulled>>>);

impl MessageListenerConcurrently for Keeper {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut kept = self.0.lock();
        for msg in msgs {
            let properties = msg
                .properties()
                .iter()
                .filter(|(name, _)| !CLIENT_ADDED.contains(&name.as_str()))
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            kept.push(Pulled {
                queue_id: msg.queue_id(),
                queue_offset: msg.queue_offset(),
                body: msg.body().map(|b| b.to_vec()).unwrap_or_default(),
                properties,
                born_timestamp: msg.born_timestamp(),
                store_timestamp: msg.store_timestamp(),
                born_host: msg.born_host(),
                flag: msg.flag(),
                sys_flag: msg.sys_flag(),
                reconsume_times: msg.reconsume_times(),
            });
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// What a group read of a topic got.
#[derive(Debug)]
pub(crate) struct Read {
    /// Messages of the topic itself, sorted by (queue id, queue offset).
    pub(crate) messages: Vec<Pulled>,
    /// Deliveries from the group's retry topic: each one is a duplicate the application saw.
    pub(crate) redelivered: usize,
}

/// Subscribes group `group` to every tag of `topic`, waits for `count` first deliveries,
/// makes sure no further one comes within a moment, and returns what it got.
pub(crate) async fn read_exactly(namesrv: &str, group: &str, topic: &str, count: usize) -> Read {
    let client = Client::new(group).expect("RocketMQ client");
    let kept = Arc::new(Mutex::new(Vec::new()));
    // Few consume tasks with whole pulls each: the client runs listeners on a small blocking
    // lane (2 x cores, queue 8 x cores) and sends a message back to the retry topic, without
    // calling the listener, when that lane refuses it (its default 20 tasks overflow it).
    let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
        .consumer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .consume_thread_min(2)
        .consume_thread_max(2)
        .consume_message_batch_max_size(32)
        .build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(Keeper(Arc::clone(&kept)));
    consumer.start().await.expect("consumer start");
    let first_deliveries = |kept: &[Pulled]| kept.iter().filter(|p| !p.is_redelivery()).count();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = first_deliveries(&kept.lock());
        if got >= count {
            break;
        }
        if Instant::now() >= deadline {
            let offsets = describe_offsets(&kept.lock());
            panic!("RocketMQ read only {got} of {count} messages of {topic}; {offsets}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    consumer.shutdown().await;
    client.shutdown().await;
    let all = kept.lock().clone();
    let (retried, mut messages): (Vec<Pulled>, Vec<Pulled>) =
        all.into_iter().partition(Pulled::is_redelivery);
    messages.sort_by_key(|pulled| (pulled.queue_id, pulled.queue_offset));
    assert_eq!(
        messages.len(),
        count,
        "RocketMQ delivered more than {count} messages of {topic}"
    );
    Read {
        messages,
        redelivered: retried.len(),
    }
}

/// The queue offsets a read got per queue, as ranges, and how many were redeliveries.
fn describe_offsets(kept: &[Pulled]) -> String {
    let mut offsets: Vec<(i32, i64)> = kept
        .iter()
        .filter(|pulled| !pulled.is_redelivery())
        .map(|pulled| (pulled.queue_id, pulled.queue_offset))
        .collect();
    offsets.sort_unstable();
    let mut ranges: Vec<(i32, i64, i64)> = Vec::new();
    for (queue, offset) in offsets {
        match ranges.last_mut() {
            Some((q, _, end)) if *q == queue && *end + 1 >= offset => *end = offset,
            _ => ranges.push((queue, offset, offset)),
        }
    }
    let ranges: Vec<String> = ranges
        .iter()
        .map(|(queue, start, end)| format!("queue {queue}: {start}..={end}"))
        .collect();
    let redelivered = kept.iter().filter(|pulled| pulled.is_redelivery()).count();
    format!(
        "got offsets [{}], {redelivered} redeliveries",
        ranges.join(", ")
    )
}

/// A started producer that compresses bodies of 4 KiB and more with zlib (sysFlag bit 0).
pub(crate) async fn producer(client: &Client, namesrv: &str, group: &str) -> DefaultMQProducer {
    let mut producer = DefaultMQProducer::builder(client.runtime.clone())
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .compress_type(CompressionType::Zlib)
        .compress_msg_body_over_howmuch(4 * 1024)
        .build();
    producer.start().await.expect("producer start");
    producer
}

/// Where a sent message went, and the wall-clock window (ms) its born timestamp is in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SentAt {
    pub(crate) window: (i64, i64),
    pub(crate) queue_id: i32,
}

/// Sends `messages` one by one (so the log keeps their order).
pub(crate) async fn send_in_order(
    producer: &DefaultMQProducer,
    messages: Vec<Message>,
) -> Vec<SentAt> {
    let mut sent = Vec::with_capacity(messages.len());
    for (n, message) in messages.into_iter().enumerate() {
        let before = now_ms();
        let result = producer
            .send(message)
            .await
            .unwrap_or_else(|err| panic!("send {n}: {err}"))
            .unwrap_or_else(|| panic!("send {n}: no result"));
        sent.push(SentAt {
            window: (before, now_ms()),
            queue_id: result
                .message_queue
                .as_ref()
                .map_or_else(|| panic!("send {n}: no queue"), |queue| queue.queue_id()),
        });
    }
    sent
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}
