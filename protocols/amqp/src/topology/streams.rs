//! Stream queues (`x-queue-type: stream`) are log topics (ARCHITECTURE §5): a stream `s` is the
//! one-partition topic `s`, so Kafka clients read what AMQP publishes and the other way round.
//!
//! Invariants: declaring a stream creates its topic when missing (with `x-max-age` and
//! `x-max-length-bytes` as its time and size retention) and adopts an existing one-partition
//! topic as it is; a topic with several partitions cannot be a stream (offsets would not be
//! one sequence). Deleting the stream deletes the topic.

use tributary_api::{EngineError, TopicPartition, TopicSettings};

use super::Topology;
use crate::error::{AmqpError, PRECONDITION_FAILED};
use crate::policy::QueuePolicy;

/// The partition holding a stream's messages.
pub fn stream_partition(name: &str) -> TopicPartition {
    TopicPartition::new(name, 0)
}

impl Topology {
    pub(super) async fn ensure_stream_topic(
        &self,
        name: &str,
        policy: &QueuePolicy,
    ) -> Result<(), AmqpError> {
        let topics = &self.engine.topics;
        let existing = match topics.describe_topic(name) {
            Ok(topic) => topic,
            Err(EngineError::UnknownTopic(_)) => {
                let settings = TopicSettings {
                    retention_ms: policy.max_age_ms.and_then(|ms| i64::try_from(ms).ok()),
                    retention_bytes: policy
                        .max_length_bytes
                        .and_then(|bytes| i64::try_from(bytes).ok()),
                    ..TopicSettings::default()
                };
                match topics.create_topic(name, 1, settings).await {
                    Ok(_) => return Ok(()),
                    Err(EngineError::TopicExists(_)) => topics.describe_topic(name)?,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        if existing.internal || existing.partitions != 1 {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "cannot declare stream '{name}' in vhost '/': topic '{name}' has {} partitions, a stream has one",
                    existing.partitions
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
            .offsets(&stream_partition(name))
            .map(|o| u64::try_from(o.high_watermark - o.log_start).unwrap_or(0))
            .unwrap_or(0);
        match self.engine.topics.delete_topic(name).await {
            Ok(()) | Err(EngineError::UnknownTopic(_)) => Ok(held),
            Err(error) => Err(error.into()),
        }
    }
}
