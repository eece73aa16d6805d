//! Stream queues (`x-queue-type: stream`) are log topics (ARCHITECTURE §5, docs/interop.md
//! "Topics seen from AMQP"): a stream `s` of vhost `/` is the one-partition topic `s`, so Kafka
//! clients read what AMQP publishes and the other way round; a topic `T` of N >= 2 partitions is
//! a RabbitMQ super stream whose partition p is the stream `T-p`. In another vhost the same rules
//! apply to the topics named as that vhost's engine queues are
//! ([`crate::vhost::engine_queue_name`]), so vhosts never share a stream.
//!
//! Invariants:
//! - A stream's partition is resolved once, when the stream is declared (or its definition is
//!   loaded), and kept until it is deleted ([`Topology::stream_partition`] is the only lookup):
//!   a topic created later cannot redirect a stream while it is read.
//! - Resolution of the name `s`, first match wins: the topic named `s` exists: with one partition
//!   it is the stream, with several the declaration is refused (406) naming the partition streams;
//!   `s` is `T-p` (p in canonical decimal) and topic `T` has N >= 2 partitions: partition p of `T`
//!   (p >= N is refused); otherwise a one-partition topic `s` is created (`x-max-age` and
//!   `x-max-length-bytes` as its retention, `max.message.bytes` taking a message of
//!   `amqp.max_message_bytes`, as a classic queue does). Declaring a partition or adopting an existing topic
//!   creates nothing and leaves the topic's settings as they are (retention arguments are
//!   accepted and not applied).
//! - A topic that is a single stream has its partition count fixed in the engine
//!   ([`tributary_api::TopicAdmin::fix_partition_count`]), so no protocol can grow it and leave
//!   AMQP reading one partition of several; the mark goes with the topic.
//! - A stream whose topic is gone (deleted, maybe created again under its name) reads and
//!   writes nothing (`UnknownQueue`: consumers are cancelled, publishes refused) until it is
//!   declared again, which resolves it anew; deleting it then deletes no topic.
//! - Deleting a single stream deletes its topic. A partition stream is never deleted while its
//!   topic has that partition (406: it would delete one partition of a topic other protocols use);
//!   once the topic is gone, deleting it removes only the AMQP definition.

use tributary_api::{EngineError, EngineResult, TopicDescription, TopicPartition, TopicSettings};

use super::Topology;
use crate::error::{AmqpError, PRECONDITION_FAILED};
use crate::policy::QueuePolicy;
use crate::vhost::engine_queue_name;

/// Where a declared stream's messages are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamSource {
    pub partition: TopicPartition,
    /// Partition `p` of a super stream (a topic of several partitions), not a topic of its own.
    pub super_stream: bool,
    /// The id of the topic resolved: a topic deleted and created again under the same name
    /// (through Kafka, say, with another partition count) is not this stream's.
    pub topic_id: [u8; 16],
}

impl StreamSource {
    fn of(topic: &TopicDescription, partition: u32, super_stream: bool) -> Self {
        Self {
            partition: TopicPartition::new(topic.name.clone(), partition),
            super_stream,
            topic_id: topic.id,
        }
    }
}

/// `T-p` as `T` and p, when p is written in canonical decimal (`T-01` is not partition 1).
pub(super) fn split_partition_name(name: &str) -> Option<(&str, u32)> {
    let (base, index) = name.rsplit_once('-')?;
    let canonical = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    if base.is_empty() || !canonical {
        return None;
    }
    Some((base, index.parse().ok()?))
}

impl Topology {
    /// The topic of this vhost's stream `name` when it is a topic of its own.
    pub fn stream_topic(&self, name: &str) -> String {
        engine_queue_name(&self.vhost, name)
    }

    /// The partition holding the messages of this vhost's declared stream `name`;
    /// `UnknownQueue` when no such stream is declared, its topic could not be restored, or the
    /// topic it was resolved to is gone (even if one of that name exists again).
    pub fn stream_partition(&self, name: &str) -> EngineResult<TopicPartition> {
        self.live_source(name)
            .map(|source| source.partition)
            .ok_or_else(|| EngineError::UnknownQueue(name.to_owned()))
    }

    /// The stream's source while its topic (the same one, by id) still has the partition.
    fn live_source(&self, name: &str) -> Option<StreamSource> {
        let source = self.state.lock().streams.get(name).cloned()?;
        let topic = self
            .engine
            .topics
            .describe_topic(&source.partition.topic)
            .ok()?;
        (topic.id == source.topic_id && topic.partitions > source.partition.partition)
            .then_some(source)
    }

    /// Resolves a declared stream again when its topic went away, so that declaring it once
    /// more reads the topic that now has its name (or refuses as a new declaration would).
    pub(super) async fn refresh_stream(&self, name: &str) -> Result<(), AmqpError> {
        let policy = {
            let state = self.state.lock();
            match state.queues.get(name) {
                Some(info) if info.is_stream() => info.policy.clone(),
                _ => return Ok(()),
            }
        };
        if self.live_source(name).is_none() {
            self.ensure_stream_topic(name, &policy).await?;
        }
        Ok(())
    }

    /// How AMQP names the holder of a single stream's topic in engine refusals.
    fn stream_holder(&self, name: &str) -> String {
        format!("the AMQP stream '{name}' in vhost '{}'", self.vhost)
    }

    /// Resolves (and if needed creates) the topic partition of stream `name` and records it.
    pub(super) async fn ensure_stream_topic(
        &self,
        name: &str,
        policy: &QueuePolicy,
    ) -> Result<(), AmqpError> {
        let source = self.resolve_stream(name, policy).await?;
        self.state.lock().streams.insert(name.to_owned(), source);
        Ok(())
    }

    async fn resolve_stream(
        &self,
        name: &str,
        policy: &QueuePolicy,
    ) -> Result<StreamSource, AmqpError> {
        let topics = &self.engine.topics;
        let topic = self.stream_topic(name);
        match topics.describe_topic(&topic) {
            Ok(existing) => return self.adopt_topic(name, &existing).await,
            Err(EngineError::UnknownTopic(_)) => {}
            Err(error) => return Err(error.into()),
        }
        if let Some(source) = self.super_stream_partition(name)? {
            return Ok(source);
        }
        let settings = TopicSettings {
            retention_ms: policy.max_age_ms.and_then(|ms| i64::try_from(ms).ok()),
            retention_bytes: policy
                .max_length_bytes
                .and_then(|bytes| i64::try_from(bytes).ok()),
            max_message_bytes: Some(self.stream_max_message_bytes),
            ..TopicSettings::default()
        };
        let created = match topics.create_topic(&topic, 1, settings).await {
            Ok(created) => created,
            Err(EngineError::TopicExists(_)) => topics.describe_topic(&topic)?,
            Err(error) => return Err(error.into()),
        };
        self.adopt_topic(name, &created).await
    }

    /// The existing topic named as stream `name`: the stream when it has one partition (whose
    /// count is then fixed), else a refusal naming the super stream's partition streams.
    async fn adopt_topic(
        &self,
        name: &str,
        topic: &TopicDescription,
    ) -> Result<StreamSource, AmqpError> {
        if topic.internal {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "cannot declare stream '{name}' in vhost '{}': '{}' is the log of a queue",
                    self.vhost, topic.name
                ),
            ));
        }
        if topic.partitions != 1 {
            return Err(self.super_stream_refusal(name, topic.partitions));
        }
        let holder = self.stream_holder(name);
        match self
            .engine
            .topics
            .fix_partition_count(&topic.name, 1, &holder)
            .await
        {
            Ok(_) => Ok(StreamSource::of(topic, 0, false)),
            // Grown by another protocol since it was described.
            Err(EngineError::InvalidPartitions { current, .. }) => {
                Err(self.super_stream_refusal(name, current))
            }
            Err(error) => Err(error.into()),
        }
    }

    fn super_stream_refusal(&self, name: &str, partitions: u32) -> AmqpError {
        AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!(
                "cannot declare stream '{name}' in vhost '{}': its topic has {partitions} partitions, a super stream; declare the streams '{name}-0'..'{name}-{}'",
                self.vhost,
                partitions.saturating_sub(1)
            ),
        )
    }

    /// Stream `name` as partition p of the super stream `T` when it is `T-p` and topic `T` has
    /// several partitions; a refusal when `T` has no partition p.
    fn super_stream_partition(&self, name: &str) -> Result<Option<StreamSource>, AmqpError> {
        let Some((base, index)) = split_partition_name(name) else {
            return Ok(None);
        };
        let topic = match self.engine.topics.describe_topic(&self.stream_topic(base)) {
            Ok(topic) if !topic.internal && topic.partitions >= 2 => topic,
            Ok(_) | Err(EngineError::UnknownTopic(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if index >= topic.partitions {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "cannot declare stream '{name}' in vhost '{}': super stream '{base}' has {} partitions, '{base}-0'..'{base}-{}'",
                    self.vhost,
                    topic.partitions,
                    topic.partitions - 1
                ),
            ));
        }
        Ok(Some(StreamSource::of(&topic, index, true)))
    }

    /// Whether `name` is not declared yet but names a partition of an existing super stream,
    /// which a passive declare finds as RabbitMQ finds a super stream's partition queues.
    pub(super) fn implied_partition(&self, name: &str) -> bool {
        !self.state.lock().queues.contains_key(name)
            && matches!(self.super_stream_partition(name), Ok(Some(_)))
    }

    /// Refuses to delete a partition stream while its topic has the partition: that would
    /// delete one partition of a topic that other protocols use.
    pub fn check_stream_deletable(&self, name: &str) -> Result<(), AmqpError> {
        let Some(source) = self.live_source(name) else {
            return Ok(());
        };
        let TopicPartition { topic, partition } = &source.partition;
        if source.super_stream {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "cannot delete queue '{name}' in vhost '{}': it is partition {partition} of super stream '{}', which goes only with its topic",
                    self.vhost,
                    crate::vhost::split_engine_queue_name(topic).1
                ),
            ));
        }
        Ok(())
    }

    /// Forgets a stream and deletes its topic when it is its own (and still the one it was
    /// resolved to); returns how many messages the topic held.
    pub(super) async fn delete_stream_topic(&self, name: &str) -> Result<u64, AmqpError> {
        let live = self.live_source(name);
        self.state.lock().streams.remove(name);
        let Some(source) = live.filter(|source| !source.super_stream) else {
            return Ok(0);
        };
        let held = self
            .engine
            .log
            .offsets(&source.partition)
            .map(|o| u64::try_from(o.high_watermark - o.log_start).unwrap_or(0))
            .unwrap_or(0);
        match self
            .engine
            .topics
            .delete_topic(&source.partition.topic)
            .await
        {
            Ok(()) | Err(EngineError::UnknownTopic(_)) => Ok(held),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_partition_name;

    #[test]
    fn only_canonical_decimal_suffixes_name_partitions() {
        assert_eq!(split_partition_name("orders-0"), Some(("orders", 0)));
        assert_eq!(split_partition_name("a-b-12"), Some(("a-b", 12)));
        for not_a_partition in ["orders", "orders-", "-1", "orders-01", "orders-x", "o-+1"] {
            assert_eq!(
                split_partition_name(not_a_partition),
                None,
                "{not_a_partition}"
            );
        }
        assert_eq!(split_partition_name("o-99999999999"), None);
    }
}
