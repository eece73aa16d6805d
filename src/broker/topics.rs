//! Topics: the `LogService` and `TopicAdmin` implementations over storage and the metadata store.
//!
//! Invariants:
//! - The metadata store is the source of truth for which topics exist. Creation writes storage
//!   first and the metadata row second; deletion removes the row first and the files second. A
//!   crash between the two leaves a directory with no row, which is garbage by construction and
//!   is removed at start-up ([`Topics::open`]).
//! - Topic admin changes are serialised by one async mutex; reads of the topic table go through an
//!   in-memory copy that is replaced only after the metadata write committed.
//! - Storage calls block (file I/O, fsync), so they run on tokio's blocking pool.
//! - The partition caps ([`PartitionLimits`]) are checked here, under the admin mutex and before
//!   any file or row is written, on every path that creates or grows a topic: a refused request
//!   creates nothing, whichever protocol sent it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use tributary_api::batch::VerifiedBatch;
use tributary_api::{
    AppendOutcome, CleanupPolicy, CompressionType, EffectiveSettings, EngineError, EngineResult,
    LogService, OffsetQuery, PartitionOffsets, PendingDurability, Ratio, ReadBatches,
    TimestampOffset, TimestampType, TopicAdmin, TopicDescription, TopicPartition, TopicSettings,
};

use super::metadata::{MetaStore, TopicRecord, random_id};
use super::queues::QUEUE_LOG_PREFIX;
use super::settings::{LogDefaults, PartitionLimits};
use crate::storage::{AppendInfo, Durable, LogConfig, Partition, Storage, StorageError};

/// The topic table and the data path of partitioned logs.
#[derive(Debug)]
pub struct Topics {
    storage: Arc<Storage>,
    meta: Arc<MetaStore>,
    defaults: LogDefaults,
    limits: PartitionLimits,
    table: RwLock<HashMap<String, TopicRecord>>,
    admin: tokio::sync::Mutex<()>,
}

impl Topics {
    /// Recovers every topic the metadata store lists and removes directories it does not list
    /// (leftovers of an interrupted create or delete). Queue logs belong to the queue service,
    /// which sweeps its own.
    pub fn open(
        storage: Arc<Storage>,
        meta: Arc<MetaStore>,
        defaults: LogDefaults,
        limits: PartitionLimits,
    ) -> EngineResult<Self> {
        let mut table = HashMap::new();
        for record in meta.topics()? {
            let config = log_config(&defaults, &record.settings);
            let report = storage.open_topic(&record.name, record.partitions, config)?;
            tracing::info!(
                topic = %record.name,
                partitions = record.partitions,
                truncated_bytes = report.truncated_bytes,
                rebuilt_indexes = report.rebuilt_indexes,
                elapsed_ms = report.duration.as_millis() as u64,
                "topic recovered"
            );
            table.insert(record.name.clone(), record);
        }
        for name in storage.topics_on_disk()? {
            if !table.contains_key(&name) && !name.starts_with(QUEUE_LOG_PREFIX) {
                tracing::warn!(topic = %name, "removing log directory with no metadata (interrupted create or delete)");
                storage.delete_topic(&name)?;
            }
        }
        Ok(Self {
            storage,
            meta,
            defaults,
            limits,
            table: RwLock::new(table),
            admin: tokio::sync::Mutex::new(()),
        })
    }

    fn partition(&self, tp: &TopicPartition) -> EngineResult<Arc<Partition>> {
        let known = self.table.read().get(&tp.topic).map(|t| t.partitions);
        match known {
            None => Err(EngineError::UnknownTopic(tp.topic.clone())),
            Some(count) if tp.partition >= count => Err(EngineError::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
            }),
            Some(_) => Ok(self.storage.partition(&tp.topic, tp.partition)?),
        }
    }

    /// Runs `write` (an unsynced append) on the blocking pool and starts the wait for its
    /// durability, returned as the future to await before acknowledging.
    async fn append_staged<W>(
        &self,
        tp: &TopicPartition,
        write: W,
    ) -> EngineResult<(AppendOutcome, PendingDurability)>
    where
        W: FnOnce(&Partition, i64) -> Result<(AppendInfo, Durable), StorageError> + Send + 'static,
    {
        let partition = self.partition(tp)?;
        let writer = Arc::clone(&partition);
        let (outcome, durable) = blocking(move || {
            let now = now_ms();
            let (info, durable) = write(&writer, now)?;
            let outcome = AppendOutcome {
                base_offset: info.base_offset,
                last_offset: info.last_offset,
                log_append_time: now,
                log_start: writer.log_start_offset(),
            };
            Ok((outcome, durable))
        })
        .await?;
        if !durable.is_pending() {
            return Ok((outcome, Box::pin(std::future::ready(Ok(())))));
        }
        // Started now, not when first awaited, so the fsyncs of several partitions overlap.
        let waiting = tokio::task::spawn_blocking(move || partition.wait_durable(durable));
        let pending: PendingDurability = Box::pin(async move {
            match waiting.await {
                Ok(result) => Ok(result?),
                Err(_) => Err(EngineError::ShuttingDown),
            }
        });
        Ok((outcome, pending))
    }

    fn record(&self, name: &str) -> EngineResult<TopicRecord> {
        self.table
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopic(name.to_owned()))
    }

    /// Refuses `topic` having `total` partitions (it has `current` now, 0 when new) if that
    /// passes a cap; logs one WARN line per refusal. Call under the admin mutex so two
    /// concurrent creates cannot both fit under the broker cap.
    fn within_limits(&self, topic: &str, total: u32, current: u32) -> EngineResult<()> {
        let existing: u64 = self
            .table
            .read()
            .values()
            .map(|record| u64::from(record.partitions))
            .sum();
        within_limits(&self.limits, existing, topic, total, current)
    }

    fn describe(&self, record: &TopicRecord) -> TopicDescription {
        TopicDescription {
            name: record.name.clone(),
            id: record.id,
            partitions: record.partitions,
            settings: effective(&self.defaults, &record.settings),
            internal: record.internal,
            fixed_by: record.fixed_by.clone(),
        }
    }
}

#[async_trait]
impl LogService for Topics {
    async fn append(&self, tp: &TopicPartition, batch: Bytes) -> EngineResult<AppendOutcome> {
        let partition = self.partition(tp)?;
        blocking(move || {
            let now = now_ms();
            let info = partition.append(&batch, now)?;
            Ok(AppendOutcome {
                base_offset: info.base_offset,
                last_offset: info.last_offset,
                log_append_time: now,
                log_start: partition.log_start_offset(),
            })
        })
        .await
    }

    async fn append_pipelined(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        self.append_staged(tp, move |partition, now| {
            partition.append_unsynced(&batch, now)
        })
        .await
    }

    async fn append_verified(
        &self,
        tp: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        self.append_staged(tp, move |partition, now| {
            partition.append_verified(&batch, now)
        })
        .await
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
    ) -> EngineResult<ReadBatches> {
        let partition = self.partition(tp)?;
        blocking(move || {
            let result = partition.read(offset, max_bytes)?;
            Ok(ReadBatches {
                data: result.to_bytes()?,
                offsets: PartitionOffsets {
                    log_start: result.log_start,
                    high_watermark: result.high_watermark,
                },
            })
        })
        .await
    }

    async fn wait_for(
        &self,
        tp: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> EngineResult<bool> {
        let partition = self.partition(tp)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Listen before checking so an append between the check and the await still wakes us.
            let listener = partition.listen();
            if partition.high_watermark() > offset {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                return Ok(partition.high_watermark() > offset);
            }
        }
    }

    fn offsets(&self, tp: &TopicPartition) -> EngineResult<PartitionOffsets> {
        let partition = self.partition(tp)?;
        Ok(PartitionOffsets {
            log_start: partition.log_start_offset(),
            high_watermark: partition.high_watermark(),
        })
    }

    fn markers_removed(&self, tp: &TopicPartition) -> u64 {
        self.partition(tp)
            .map_or(0, |partition| partition.markers_removed())
    }

    async fn find_offset(
        &self,
        tp: &TopicPartition,
        query: OffsetQuery,
    ) -> EngineResult<Option<TimestampOffset>> {
        let partition = self.partition(tp)?;
        blocking(move || {
            let found = match query {
                OffsetQuery::Earliest => Some((partition.log_start_offset(), -1)),
                OffsetQuery::Latest => Some((partition.high_watermark(), -1)),
                OffsetQuery::MaxTimestamp => partition.max_timestamp()?,
                OffsetQuery::AtOrAfter(ts) => partition.offset_for_timestamp(ts)?,
            };
            Ok(found.map(|(offset, timestamp)| TimestampOffset { offset, timestamp }))
        })
        .await
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> EngineResult<i64> {
        let partition = self.partition(tp)?;
        blocking(move || Ok(partition.delete_before(before)?)).await
    }
}

#[async_trait]
impl TopicAdmin for Topics {
    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: TopicSettings,
    ) -> EngineResult<TopicDescription> {
        let record = new_topic_record(name, partitions, settings)?;
        let _admin = self.admin.lock().await;
        if self.table.read().contains_key(name) {
            return Err(EngineError::TopicExists(name.to_owned()));
        }
        self.within_limits(name, partitions, 0)?;
        let (storage, meta, stored) = (self.storage.clone(), self.meta.clone(), record.clone());
        let config = log_config(&self.defaults, &record.settings);
        blocking(move || {
            storage.open_topic(&stored.name, stored.partitions, config)?;
            meta.put_topic(&stored)
        })
        .await?;
        let description = self.describe(&record);
        self.table.write().insert(record.name.clone(), record);
        Ok(description)
    }

    async fn delete_topic(&self, name: &str) -> EngineResult<()> {
        let _admin = self.admin.lock().await;
        self.record(name)?;
        let (storage, meta, owned) = (self.storage.clone(), self.meta.clone(), name.to_owned());
        // Hidden from readers first so no new append starts on files about to go.
        let removed = self.table.write().remove(name);
        let outcome = blocking(move || {
            meta.delete_topic(&owned)?;
            storage.delete_topic(&owned)?;
            Ok(())
        })
        .await;
        if let (Err(_), Some(record)) = (&outcome, removed) {
            self.table.write().insert(record.name.clone(), record);
        }
        outcome
    }

    async fn create_partitions(&self, name: &str, total: u32) -> EngineResult<TopicDescription> {
        let _admin = self.admin.lock().await;
        let mut record = self.record(name)?;
        if let Some(refusal) = self.describe(&record).growth_refusal() {
            return Err(refusal);
        }
        check_partitions(total, record.partitions)?;
        self.within_limits(name, total, record.partitions)?;
        record.partitions = total;
        let (storage, meta, stored) = (self.storage.clone(), self.meta.clone(), record.clone());
        blocking(move || {
            meta.put_topic(&stored)?;
            storage.add_partitions(&stored.name, stored.partitions)?;
            Ok(())
        })
        .await?;
        let description = self.describe(&record);
        self.table.write().insert(record.name.clone(), record);
        Ok(description)
    }

    async fn fix_partition_count(
        &self,
        name: &str,
        partitions: u32,
        holder: &str,
    ) -> EngineResult<TopicDescription> {
        let _admin = self.admin.lock().await;
        let mut record = self.record(name)?;
        if record.partitions != partitions {
            return Err(EngineError::InvalidPartitions {
                requested: partitions,
                current: record.partitions,
            });
        }
        if record.fixed_by.as_deref() != Some(holder) {
            record.fixed_by = Some(holder.to_owned());
            let (meta, stored) = (self.meta.clone(), record.clone());
            blocking(move || meta.put_topic(&stored)).await?;
            self.table
                .write()
                .insert(record.name.clone(), record.clone());
        }
        Ok(self.describe(&record))
    }

    async fn alter_settings(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> EngineResult<TopicDescription> {
        validate_settings(&settings)?;
        let _admin = self.admin.lock().await;
        let mut record = self.record(name)?;
        record.settings = settings;
        let config = log_config(&self.defaults, &record.settings);
        let (storage, meta, stored) = (self.storage.clone(), self.meta.clone(), record.clone());
        blocking(move || {
            meta.put_topic(&stored)?;
            storage.set_config(&stored.name, config)?;
            Ok(())
        })
        .await?;
        let description = self.describe(&record);
        self.table.write().insert(record.name.clone(), record);
        Ok(description)
    }

    fn check_partition_limits(&self, topic: &str, total: u32) -> EngineResult<()> {
        let current = self
            .table
            .read()
            .get(topic)
            .map_or(0, |record| record.partitions);
        self.within_limits(topic, total, current)
    }

    fn describe_topic(&self, name: &str) -> EngineResult<TopicDescription> {
        self.record(name).map(|record| self.describe(&record))
    }

    fn list_topics(&self) -> Vec<TopicDescription> {
        let table = self.table.read();
        let mut topics: Vec<_> = table.values().map(|r| self.describe(r)).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    fn defaults(&self) -> EffectiveSettings {
        effective(&self.defaults, &TopicSettings::default())
    }
}

/// The storage settings of a log: the topic's explicit settings over the broker defaults.
pub fn log_config(defaults: &LogDefaults, settings: &TopicSettings) -> LogConfig {
    let applied = effective(defaults, settings);
    LogConfig {
        segment_bytes: applied.segment_bytes,
        segment_ms: applied.segment_ms,
        retention_ms: applied.retention_ms,
        retention_bytes: applied.retention_bytes,
        max_batch_bytes: applied.max_message_bytes,
        durability: applied.durability,
        index_interval_bytes: defaults.index_interval_bytes,
        cleanup: applied.cleanup_policy,
        delete_retention_ms: applied.delete_retention_ms,
        min_cleanable_dirty_ratio: applied.min_cleanable_dirty_ratio.as_f64(),
        min_compaction_lag_ms: applied.min_compaction_lag_ms,
        log_append_time: applied.timestamp_type == TimestampType::LogAppendTime,
        compression: applied.compression_type,
    }
}

pub(crate) fn effective(defaults: &LogDefaults, settings: &TopicSettings) -> EffectiveSettings {
    EffectiveSettings {
        retention_ms: settings.retention_ms.unwrap_or(defaults.retention_ms),
        retention_bytes: settings.retention_bytes.unwrap_or(defaults.retention_bytes),
        segment_bytes: settings.segment_bytes.unwrap_or(defaults.segment_bytes),
        segment_ms: settings.segment_ms.unwrap_or(defaults.segment_ms),
        max_message_bytes: settings
            .max_message_bytes
            .unwrap_or(defaults.max_message_bytes),
        durability: settings.durability.unwrap_or(defaults.durability),
        cleanup_policy: settings.cleanup_policy.unwrap_or(CleanupPolicy::DELETE),
        delete_retention_ms: settings
            .delete_retention_ms
            .unwrap_or(DEFAULT_DELETE_RETENTION_MS),
        min_cleanable_dirty_ratio: settings
            .min_cleanable_dirty_ratio
            .unwrap_or(DEFAULT_DIRTY_RATIO),
        min_compaction_lag_ms: settings.min_compaction_lag_ms.unwrap_or(0),
        timestamp_type: settings.timestamp_type.unwrap_or(TimestampType::CreateTime),
        min_insync_replicas: settings.min_insync_replicas.unwrap_or(1),
        compression_type: settings
            .compression_type
            .unwrap_or(CompressionType::Producer),
        overridden: settings.clone(),
    }
}

/// Refuses `topic` having `total` partitions (it has `current` now, 0 when new) if that passes
/// a cap, given `existing` partitions over all topics; logs one WARN line per refusal. Call
/// under the admin lock so two concurrent creates cannot both fit under the broker cap.
pub(crate) fn within_limits(
    limits: &PartitionLimits,
    existing: u64,
    topic: &str,
    total: u32,
    current: u32,
) -> EngineResult<()> {
    let refusal = if total > limits.per_topic {
        Some(EngineError::PartitionLimit {
            topic: topic.to_owned(),
            wanted: total.into(),
            limit: limits.per_topic.into(),
            scope: "per topic",
            setting: "limits.max_partitions_per_topic",
        })
    } else {
        let wanted = existing - u64::from(current).min(existing) + u64::from(total);
        (wanted > limits.per_broker.into()).then(|| EngineError::PartitionLimit {
            topic: topic.to_owned(),
            wanted,
            limit: limits.per_broker.into(),
            scope: "per broker (all topics)",
            setting: "limits.max_partitions",
        })
    };
    match refusal {
        Some(refusal) => {
            tracing::warn!(topic, requested = total, current, error = %refusal, "refusing to create partitions");
            Err(refusal)
        }
        None => Ok(()),
    }
}

/// Kafka's defaults for the compaction settings.
const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
const DEFAULT_DIRTY_RATIO: Ratio = match Ratio::from_millionths(Ratio::MILLIONTHS / 2) {
    Some(ratio) => ratio,
    None => unreachable!(),
};

/// Smallest segment size a topic may set: below it every batch would roll a segment.
const MIN_SEGMENT_BYTES: u64 = 1024;

pub(crate) fn validate_settings(settings: &TopicSettings) -> EngineResult<()> {
    let invalid = |name: &str, reason: &str| EngineError::InvalidSetting {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if settings.retention_ms.is_some_and(|v| v < -1) {
        return Err(invalid("retention.ms", "must be -1 or at least 0"));
    }
    if settings.retention_bytes.is_some_and(|v| v < -1) {
        return Err(invalid("retention.bytes", "must be -1 or at least 0"));
    }
    if settings
        .segment_bytes
        .is_some_and(|v| v < MIN_SEGMENT_BYTES)
    {
        return Err(invalid("segment.bytes", "must be at least 1024"));
    }
    if settings.segment_ms.is_some_and(|v| v == 0) {
        return Err(invalid("segment.ms", "must be at least 1"));
    }
    if settings.max_message_bytes.is_some_and(|v| v == 0) {
        return Err(invalid("max.message.bytes", "must be at least 1"));
    }
    if settings.delete_retention_ms.is_some_and(|v| v < 0) {
        return Err(invalid("delete.retention.ms", "must be at least 0"));
    }
    if settings.min_compaction_lag_ms.is_some_and(|v| v < 0) {
        return Err(invalid("min.compaction.lag.ms", "must be at least 0"));
    }
    if settings.min_insync_replicas.is_some_and(|v| v != 1) {
        return Err(invalid(
            "min.insync.replicas",
            "must be 1: this broker holds the only replica of every partition",
        ));
    }
    Ok(())
}

/// The checks every engine makes on a topic a client asks for (name, partition count,
/// settings) and the record it stores for it; the engine then checks existence and the
/// partition limits under its admin lock.
pub(crate) fn new_topic_record(
    name: &str,
    partitions: u32,
    settings: TopicSettings,
) -> EngineResult<TopicRecord> {
    tributary_api::validate_name(name)?;
    if name.starts_with(QUEUE_LOG_PREFIX) {
        return Err(EngineError::InvalidName(name.to_owned()));
    }
    check_partitions(partitions, 0)?;
    validate_settings(&settings)?;
    Ok(TopicRecord {
        name: name.to_owned(),
        id: random_id()?,
        partitions,
        settings,
        internal: false,
        created_ms: now_ms(),
        fixed_by: None,
    })
}

pub(crate) fn check_partitions(requested: u32, current: u32) -> EngineResult<()> {
    if requested == 0 || requested <= current {
        return Err(EngineError::InvalidPartitions { requested, current });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs blocking engine work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(work: F) -> EngineResult<T>
where
    F: FnOnce() -> EngineResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| EngineError::ShuttingDown)?
}
