//! [`CloudLog`]: the `LogService` of the cloud engine (the `TopicAdmin` half is in
//! [`super::admin`], the write path in [`super::flush`], the read path in [`super::read`]).
//!
//! Invariants: appends are accepted only for partitions this broker leads and has taken over
//! ([`super::leadership`]; the flush's conditional update fences a stale writer); an append is
//! numbered at once, in call order per partition, and its durability future resolves only after the
//! object holding it was PUT and the PostgreSQL transaction recording it committed; readers see
//! committed batches only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tributary_api::batch::VerifiedBatch;
use tributary_api::{
    AppendOutcome, EngineError, EngineResult, LogService, OffsetQuery, PartitionOffsets,
    PendingDurability, ProducerBatch, ReadBatches, TimestampOffset, TopicPartition,
};

use super::error::CloudError;
use super::flush::Pending;
use super::members::Membership;
use super::objects::Objects;
use super::pool::PgPool;
use super::producers;
use super::state::PartitionState;
use super::stats::Stats;
use crate::broker::metadata::TopicRecord;
use crate::broker::{LogDefaults, PartitionLimits};

/// What the log needs from the configuration.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub broker_id: u32,
    /// How long an unreferenced object is kept; a flush gives up committing an object named
    /// more than half of it ago (see `maintenance`).
    pub object_gc_grace: Duration,
    pub flush_interval: Duration,
    pub flush_bytes: usize,
    /// Objects smaller than this are merged ([`super::merge`]); 0 turns merging off.
    pub merge_object_bytes: u64,
    /// Only objects older than this are merged.
    pub merge_min_age: Duration,
    pub defaults: LogDefaults,
    pub limits: PartitionLimits,
}

/// The partitioned log over PostgreSQL and object storage.
#[derive(Debug)]
pub struct CloudLog {
    pub(super) pool: PgPool,
    pub(super) objects: Objects,
    pub(super) settings: LogSettings,
    pub(super) stats: Arc<Stats>,
    /// Topics as PostgreSQL has them, replaced only after a committed change.
    pub(super) table: RwLock<HashMap<String, TopicRecord>>,
    pub(super) partitions: RwLock<HashMap<TopicPartition, Arc<PartitionState>>>,
    /// Accepted batches not yet flushed.
    pub(super) pending: Mutex<Pending>,
    /// Held for a whole flush, and by admin changes that must not interleave with one.
    pub(super) flushing: tokio::sync::Mutex<()>,
    /// Serialises topic admin changes.
    pub(super) admin: tokio::sync::Mutex<()>,
    /// Wakes the flusher: first batch of a flush, or `flush_bytes` reached.
    pub(super) wake: Notify,
    /// Who leads which partition.
    pub(super) members: Arc<Membership>,
    /// Change counters of the shared metadata records, moved by the LISTEN connection.
    pub(super) metadata_generations: Arc<super::records::Generations>,
    /// Per log directory, the last object name the uncommitted-object sweep checked.
    pub(super) swept: Mutex<HashMap<String, String>>,
    /// Wakes the scheduler loop over [`super::schedule::CloudSchedule`]: an entry scheduled
    /// through another broker, a partition taken over, the membership changed.
    pub(super) schedule_wake: Arc<Notify>,
    /// RocketMQ consumer-group members; the LISTEN connection passes their changes on.
    pub(super) roster: Arc<super::roster::CloudRoster>,
}

impl CloudLog {
    pub(super) fn state(&self, tp: &TopicPartition) -> EngineResult<Arc<PartitionState>> {
        if let Some(found) = self.partitions.read().get(tp) {
            return Ok(Arc::clone(found));
        }
        match self.table.read().get(&tp.topic) {
            None => Err(EngineError::UnknownTopic(tp.topic.clone())),
            Some(_) => Err(EngineError::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
            }),
        }
    }

    /// The object store this log writes to.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The counters of this engine.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn max_batch_bytes(&self, topic: &str) -> usize {
        let table = self.table.read();
        let Some(record) = table.get(topic) else {
            return self.settings.defaults.max_message_bytes as usize;
        };
        let defaults = &self.settings.defaults;
        // Internal topics are queue logs: they take whole AMQP messages.
        let default = match record.internal {
            true => defaults
                .queue_max_message_bytes
                .max(defaults.max_message_bytes),
            false => defaults.max_message_bytes,
        };
        record.settings.max_message_bytes.unwrap_or(default) as usize
    }
}

#[async_trait]
impl LogService for CloudLog {
    async fn append(&self, tp: &TopicPartition, batch: Bytes) -> EngineResult<AppendOutcome> {
        let (outcome, durable) = self.append_pipelined(tp, batch).await?;
        durable.await?;
        Ok(outcome)
    }

    async fn append_pipelined(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        let verified = VerifiedBatch::verify(batch)?;
        self.append_verified(tp, verified).await
    }

    async fn append_verified(
        &self,
        tp: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        let limit = self.max_batch_bytes(&tp.topic);
        if batch.bytes().len() > limit {
            return Err(EngineError::BatchTooLarge {
                size: batch.bytes().len(),
                limit,
            });
        }
        let state = self.state(tp)?;
        if !state.led.load(Ordering::Acquire) {
            return Err(CloudError::NotLeader(tp.to_string()).into());
        }
        self.accept(tp, state, batch)
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
    ) -> EngineResult<ReadBatches> {
        let state = self.state(tp)?;
        Ok(self.read_batches(tp, &state, offset, max_bytes).await?)
    }

    async fn wait_for(
        &self,
        tp: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> EngineResult<bool> {
        let state = self.state(tp)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Listen before checking so a commit between the check and the await still wakes us.
            let listener = state.appended.listen();
            if state.public_offsets().high_watermark > offset {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                return Ok(state.public_offsets().high_watermark > offset);
            }
        }
    }

    fn offsets(&self, tp: &TopicPartition) -> EngineResult<PartitionOffsets> {
        Ok(self.state(tp)?.public_offsets())
    }

    async fn find_offset(
        &self,
        tp: &TopicPartition,
        query: OffsetQuery,
    ) -> EngineResult<Option<TimestampOffset>> {
        let state = self.state(tp)?;
        let offsets = state.public_offsets();
        let found = match query {
            OffsetQuery::Earliest => Some((offsets.log_start, -1)),
            OffsetQuery::Latest => Some((offsets.high_watermark, -1)),
            OffsetQuery::MaxTimestamp => self.max_timestamp(tp, &state).await?,
            OffsetQuery::AtOrAfter(wanted) => self.offset_for_time(tp, &state, wanted).await?,
        };
        Ok(found.map(|(offset, timestamp)| TimestampOffset { offset, timestamp }))
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> EngineResult<i64> {
        let state = self.state(tp)?;
        Ok(self.move_log_start(tp, &state, before).await?)
    }

    async fn producer_batches(
        &self,
        tp: &TopicPartition,
    ) -> EngineResult<Option<Vec<ProducerBatch>>> {
        self.state(tp)?;
        Ok(Some(producers::load(&self.pool, tp).await?))
    }

    async fn allocate_producer_id(&self) -> EngineResult<Option<i64>> {
        Ok(Some(producers::allocate_id(&self.pool).await?))
    }

    fn partition_generation(&self, tp: &TopicPartition) -> u64 {
        self.partitions
            .read()
            .get(tp)
            .map_or(0, |state| state.generation.load(Ordering::Acquire))
    }
}
