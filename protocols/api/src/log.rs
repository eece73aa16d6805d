//! The partitioned log and its administration, as frontends see them.
//!
//! Invariants: an append either returns offsets that a later `read` returns byte-identical (after
//! the durability the topic promises) or fails and leaves nothing readable; offsets handed out are
//! dense and increasing per partition; `read` returns whole batches only.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::batch::VerifiedBatch;
use crate::error::EngineResult;
use crate::types::{
    AppendOutcome, EffectiveSettings, OffsetQuery, PartitionOffsets, ReadBatches, TimestampOffset,
    TopicDescription, TopicPartition, TopicSettings,
};

/// The second step of [`LogService::append_pipelined`]: resolves once the written batch is as
/// durable as the topic's policy asks. It owns what it needs and may be awaited later, after
/// further appends.
pub type PendingDurability = Pin<Box<dyn Future<Output = EngineResult<()>> + Send + 'static>>;

/// Appends to and reads from partitions.
#[async_trait]
pub trait LogService: Send + Sync + std::fmt::Debug {
    /// Appends one RecordBatch v2 (any base offset; the log assigns it). The CRC is verified and
    /// the call returns once the batch is as durable as the topic's policy asks.
    async fn append(&self, partition: &TopicPartition, batch: Bytes)
    -> EngineResult<AppendOutcome>;

    /// [`LogService::append`] in two steps: this call returns once the batch is verified,
    /// numbered and written (appends of a partition are numbered in call order), the returned
    /// future once it is durable. A caller may append the next batch before awaiting it, so one
    /// fsync covers several batches; it must not acknowledge a batch before its future resolved
    /// `Ok`. The default is `append` with nothing left to wait for.
    async fn append_pipelined(
        &self,
        partition: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        let outcome = self.append(partition, batch).await?;
        Ok((outcome, Box::pin(std::future::ready(Ok(())))))
    }

    /// [`LogService::append_pipelined`] for a batch the caller has verified already, so the log
    /// may skip its own CRC pass. The default verifies again.
    async fn append_verified(
        &self,
        partition: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        self.append_pipelined(partition, batch.into_parts().0).await
    }

    /// Reads whole batches starting with the one that contains `offset`, up to about `max_bytes`
    /// (at least one batch is returned if any is there, as Kafka's KIP-74 requires).
    /// An offset equal to the high watermark returns no data; outside the log it is an error.
    async fn read(
        &self,
        partition: &TopicPartition,
        offset: i64,
        max_bytes: usize,
    ) -> EngineResult<ReadBatches>;

    /// Waits until the partition's high watermark passes `offset` or `timeout` elapses, without
    /// polling. Returns whether data is there. Dropping the future cancels the wait.
    async fn wait_for(
        &self,
        partition: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> EngineResult<bool>;

    /// Log start offset and high watermark.
    fn offsets(&self, partition: &TopicPartition) -> EngineResult<PartitionOffsets>;

    /// Earliest, latest, max-timestamp or first-at-or-after-timestamp lookup. `None` when no
    /// record matches (a timestamp after every record).
    async fn find_offset(
        &self,
        partition: &TopicPartition,
        query: OffsetQuery,
    ) -> EngineResult<Option<TimestampOffset>>;

    /// Moves the log start offset forward to `before` (Kafka DeleteRecords); whole segments below
    /// it are removed. Returns the new log start offset.
    async fn delete_records(&self, partition: &TopicPartition, before: i64) -> EngineResult<i64>;

    /// The idempotent-producer state this log records itself, committed with the batches it
    /// describes (the cloud engine does): the last [`PRODUCER_BATCHES_KEPT`] idempotent batches
    /// of each producer of `partition`, in offset order. `None` (the default): the caller
    /// derives the state from the log's batch headers.
    async fn producer_batches(
        &self,
        _partition: &TopicPartition,
    ) -> EngineResult<Option<Vec<ProducerBatch>>> {
        Ok(None)
    }

    /// A producer id from an allocator this log shares with every broker writing it; `None`
    /// (the default): the caller allocates ids itself.
    async fn allocate_producer_id(&self) -> EngineResult<Option<i64>> {
        Ok(None)
    }

    /// Changes whenever this broker (re)gains the right to write `partition` (leadership moved
    /// to it), so state cached about the partition's tail must be read again. Constant (the
    /// default) for a log only this broker writes.
    fn partition_generation(&self, _partition: &TopicPartition) -> u64 {
        0
    }

    /// Counts the transaction markers log compaction removed from `partition` (since the
    /// process started; it only grows), so a transaction index replayed from the log before
    /// a removal is replayed again: an aborted transaction whose marker is gone must not be
    /// listed to a `read_committed` fetch any more. Constant (the default) for a log that
    /// never removes markers.
    fn markers_removed(&self, _partition: &TopicPartition) -> u64 {
        0
    }
}

/// Batches remembered per (producer, partition) for duplicate detection: Kafka's five batches
/// in flight.
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// One idempotent batch as producer state remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

/// Creates, changes and describes topics.
#[async_trait]
pub trait TopicAdmin: Send + Sync + std::fmt::Debug {
    /// Creates a topic; fails with `TopicExists` if it is there.
    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: TopicSettings,
    ) -> EngineResult<TopicDescription>;

    /// Deletes a topic with its data and committed offsets.
    async fn delete_topic(&self, name: &str) -> EngineResult<()>;

    /// Grows a topic to `total` partitions (never shrinks). Fails with `PartitionCountFixed`
    /// when the count is fixed ([`TopicAdmin::fix_partition_count`]), whoever asks.
    async fn create_partitions(&self, name: &str, total: u32) -> EngineResult<TopicDescription>;

    /// Whether `topic` may have `total` partitions (a new topic or a grown one) under the
    /// broker's partition caps, without creating anything: `PartitionLimit` if not. Create and
    /// grow check it themselves; this is for requests that only validate (Kafka `validate_only`).
    fn check_partition_limits(&self, topic: &str, total: u32) -> EngineResult<()> {
        let _ = (topic, total);
        Ok(())
    }

    /// Fixes the topic at `partitions` partitions on behalf of `holder` (a reader that depends
    /// on the count, named for error texts, e.g. `the AMQP stream 's' in vhost '/'`): growing it
    /// is refused from then on. Fails with `InvalidPartitions` when the topic has another count.
    /// The mark is durable and is deleted with the topic; fixing again replaces the holder.
    async fn fix_partition_count(
        &self,
        name: &str,
        partitions: u32,
        holder: &str,
    ) -> EngineResult<TopicDescription>;

    /// Replaces the topic's explicit settings; `None` fields fall back to the broker default.
    async fn alter_settings(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> EngineResult<TopicDescription>;

    fn describe_topic(&self, name: &str) -> EngineResult<TopicDescription>;

    /// Every topic, internal ones included (callers filter).
    fn list_topics(&self) -> Vec<TopicDescription>;

    /// The broker defaults a topic without overrides gets.
    fn defaults(&self) -> EffectiveSettings;
}
