//! Stream queues (`x-queue-type: stream`) are log topics (ARCHITECTURE §5): a stream `s` of
//! vhost `/` is the one-partition topic `s`, so Kafka clients read what AMQP publishes and the
//! other way round. A stream of another vhost is the topic named as that vhost's engine queues
//! are ([`crate::vhost::engine_queue_name`]), so vhosts never share a stream.
//!
//! Invariants: declaring a stream creates its topic when missing (with `x-max-age` and
//! `x-max-length-bytes` as its time and size retention) and adopts an existing one-partition
//! topic as it is; a topic with several partitions cannot be a stream (offsets would not be
//! one sequence). Deleting the stream deletes the topic.

use tributary_api::{EngineError, TopicPartition, TopicSettings};

use super::Topology;
use crate::error::{AmqpError, PRECONDITION_FAILED};
use crate::policy::QueuePolicy;
use crate::vhost::engine_queue_name;

impl Topology {
    /// The topic of this vhost's stream `name`.
    pub fn stream_topic(&self, name: &str) -> String {
        engine_queue_name(&self.vhost, name)
    }

    /// The partition holding the messages of this vhost's stream `name`.
    pub fn stream_partition(&self, name: &str) -> TopicPartition {
        TopicPartition::new(self.stream_topic(name), 0)
    }

    pub(super) async fn ensure_stream_topic(
        &self,
        name: &str,
        policy: &QueuePolicy,
    ) -> Result<(), AmqpError> {
        let topics = &self.engine.topics;
        let topic = self.stream_topic(name);
        let existing = match topics.describe_topic(&topic) {
            Ok(topic) => topic,
            Err(EngineError::UnknownTopic(_)) => {
                let settings = TopicSettings {
                    retention_ms: policy.max_age_ms.and_then(|ms| i64::try_from(ms).ok()),
                    retention_bytes: policy
                        .max_length_bytes
                        .and_then(|bytes| i64::try_from(bytes).ok()),
                    ..TopicSettings::default()
                };
                match topics.create_topic(&topic, 1, settings).await {
                    Ok(_) => return Ok(()),
                    Err(EngineError::TopicExists(_)) => topics.describe_topic(&topic)?,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        if existing.internal || existing.partitions != 1 {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "cannot declare stream '{name}' in vhost '{}': topic '{topic}' has {} partitions, a stream has one",
                    self.vhost, existing.partitions
                ),
            ));
        }
        Ok(())
    }

    /// Deletes a stream's topic; returns how many messages it held.
    pub(super) async fn delete_stream_topic(&self, name: &str) -> Result<u64, AmqpError> {
        let held = self
            .engine
            .log
            .offsets(&self.stream_partition(name))
            .map(|o| u64::try_from(o.high_watermark - o.log_start).unwrap_or(0))
            .unwrap_or(0);
        match self
            .engine
            .topics
            .delete_topic(&self.stream_topic(name))
            .await
        {
            Ok(()) | Err(EngineError::UnknownTopic(_)) => Ok(held),
            Err(error) => Err(error.into()),
        }
    }
}
