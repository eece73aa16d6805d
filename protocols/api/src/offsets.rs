//! Consumer positions shared by all protocols: `(group, topic, partition) -> (offset, metadata)`.
//! A Kafka group and a RocketMQ consumer group with the same name see the same positions, so a
//! group keeps its place when it moves between the two protocols. AMQP 0-9-1 stream consumers keep
//! no offsets here: their clients track positions themselves (`x-stream-offset`), as with
//! RabbitMQ over 0-9-1; the topic feeds of AMQP queues keep their cursors in the metadata store.
//! A commit returns only after it is durable.

use async_trait::async_trait;

use crate::error::EngineResult;
use crate::types::{CommittedOffset, TopicPartition};

#[async_trait]
pub trait OffsetStore: Send + Sync + std::fmt::Debug {
    /// Commits several positions of one group atomically.
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> EngineResult<()>;

    async fn fetch(
        &self,
        group: &str,
        partition: &TopicPartition,
    ) -> EngineResult<Option<CommittedOffset>>;

    /// Every position the group has committed.
    async fn fetch_group(
        &self,
        group: &str,
    ) -> EngineResult<Vec<(TopicPartition, CommittedOffset)>>;

    /// Groups that have at least one committed position.
    async fn groups(&self) -> EngineResult<Vec<String>>;

    /// Removes all of a group's positions; returns how many there were.
    async fn delete_group(&self, group: &str) -> EngineResult<usize>;

    /// Removes one position; returns whether it existed.
    async fn delete_offset(&self, group: &str, partition: &TopicPartition) -> EngineResult<bool>;

    /// The last generation a consumer group's join rounds reached, where the store keeps it
    /// (the cloud engine, so the generation carries on when the group's coordinator moves to
    /// another broker); `None` when unknown or not kept.
    async fn group_generation(&self, _group: &str) -> EngineResult<Option<i32>> {
        Ok(None)
    }

    /// Records that `group` reached `generation`; a stored generation is never lowered.
    async fn record_group_generation(&self, _group: &str, _generation: i32) -> EngineResult<()> {
        Ok(())
    }
}
