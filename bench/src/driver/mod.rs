//! One trait over the three protocols' client libraries. A driver creates topics and
//! subscriptions, producers whose `send` resolves when the broker acknowledged the message
//! (so its duration is the publish latency), and consumers that hand every delivered body to
//! a callback (the runner reads the send time from its first bytes).
//!
//! Mappings of OMB's model (topics x partitions, subscriptions x consumers):
//! - Kafka ([`kafka`]): a topic with `partitionsPerTopic` partitions; a subscription is a
//!   consumer group (its name), its consumers are the group's members; keys go in the record
//!   key, so the client's partitioner places them.
//! - AMQP 0-9-1 ([`amqp`]): a topic is a direct exchange; a partition `n` is routing key `n`;
//!   each subscription has one durable queue per partition, `<topic>.<subscription>.<n>`,
//!   bound with key `n` (so every subscription gets every message, as in Kafka). Consumer `i`
//!   of a subscription consumes the queues `n` with `n % consumers == i` (with more consumers
//!   than partitions, several compete on one queue). A producer picks the partition from the
//!   key's hash, or round robin without a key. Publisher confirms give the publish latency;
//!   messages are persistent (delivery mode 2) and acknowledged one by one.
//! - RocketMQ ([`rocketmq`]): a topic with `partitionsPerTopic` queues (created by the first
//!   send with the producer's `defaultTopicQueueNums`); a subscription is a consumer group
//!   (clustering mode) reading from the first offset; keys are message keys (the client's own
//!   queue selection places every message, keyed or not).

pub mod amqp;
pub mod kafka;
pub mod rocketmq;

use std::sync::Arc;

use async_trait::async_trait;

use crate::Error;

/// Called with the body of every delivered message, from the consumer's task.
pub type OnMessage = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The protocols a driver exists for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Kafka,
    Amqp,
    RocketMq,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Kafka => "kafka",
            Protocol::Amqp => "amqp",
            Protocol::RocketMq => "rocketmq",
        }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.trim().to_ascii_lowercase().as_str() {
            "kafka" => Ok(Protocol::Kafka),
            "amqp" => Ok(Protocol::Amqp),
            "rocketmq" => Ok(Protocol::RocketMq),
            other => Err(Error::Usage(format!(
                "unknown protocol {other:?}; expected kafka, amqp or rocketmq"
            ))),
        }
    }

    /// A driver connected to `address` (a bootstrap `HOST:PORT`, an `amqp://` URI, or a
    /// name server `HOST:PORT`).
    pub async fn connect(self, address: &str) -> Result<Box<dyn Driver>, Error> {
        Ok(match self {
            Protocol::Kafka => Box::new(kafka::KafkaDriver::new(address)?),
            Protocol::Amqp => Box::new(amqp::AmqpDriver::connect(address).await?),
            Protocol::RocketMq => Box::new(rocketmq::RocketMqDriver::new(address)?),
        })
    }
}

#[async_trait]
pub trait Driver: Send + Sync {
    fn protocol(&self) -> Protocol;

    /// Creates `topic` with `partitions` partitions (an existing one is reused).
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), Error>;

    /// Makes `subscription` of `topic` exist before anything is published, so it receives
    /// every message even if its consumers start later (the backlog phase).
    async fn create_subscription(
        &self,
        topic: &str,
        partitions: u32,
        subscription: &str,
    ) -> Result<(), Error>;

    async fn producer(&self, topic: &str, partitions: u32) -> Result<Arc<dyn Producer>, Error>;

    /// Consumer `index` of `consumers` of `subscription`.
    async fn consumer(
        &self,
        topic: &str,
        partitions: u32,
        subscription: &str,
        index: u32,
        consumers: u32,
        on_message: OnMessage,
    ) -> Result<Box<dyn Consumer>, Error>;

    async fn close(&self);
}

#[async_trait]
pub trait Producer: Send + Sync {
    /// Sends one message and returns once the broker acknowledged it.
    async fn send(&self, key: Option<String>, body: Vec<u8>) -> Result<(), Error>;

    async fn close(&self) {}
}

#[async_trait]
pub trait Consumer: Send {
    async fn close(self: Box<Self>);
}

/// The partition a key maps to (FNV-1a, stable across runs), for drivers that pick it.
pub(crate) fn partition_of(key: &str, partitions: u32) -> u32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % u64::from(partitions.max(1))) as u32
}
