//! Topic administration of the cloud engine: topics and partitions are rows in PostgreSQL,
//! mirrored in memory for the synchronous lookups of the contract.
//!
//! Invariants: the in-memory table changes only after the PostgreSQL change committed; admin
//! changes are serialised by `CloudLog::admin`; deleting a topic waits for the flush in
//! progress and refuses the topic's buffered batches, so no batch of a deleted topic is
//! acknowledged; partition caps are checked before anything is written.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tributary_api::{
    Durability, EffectiveSettings, EngineError, EngineResult, TopicAdmin, TopicDescription,
    TopicPartition, TopicSettings,
};

use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use super::pool::PgPool;
use super::state::PartitionState;
use super::wake;
use crate::broker::metadata::TopicRecord;
use crate::broker::topics::{
    check_partitions, effective, new_topic_record, validate_settings, within_limits,
};

const TOPIC_COLUMNS: &str = "name, id, partitions, retention_ms, retention_bytes, segment_bytes, \
     segment_ms, max_message_bytes, durability, internal, created_ms, fixed_by";

fn topic_from_row(row: &Row) -> CloudResult<TopicRecord> {
    let name: String = row.get(0);
    let id_bytes: Vec<u8> = row.get(1);
    let id: [u8; 16] = id_bytes
        .as_slice()
        .try_into()
        .map_err(|_| CloudError::Inconsistent {
            partition: name.clone(),
            detail: format!("topic id has {} bytes, expected 16", id_bytes.len()),
        })?;
    let durability: Option<String> = row.get(8);
    let durability = durability
        .map(|text| text.parse::<Durability>())
        .transpose()
        .map_err(|error| CloudError::Inconsistent {
            partition: name.clone(),
            detail: error.to_string(),
        })?;
    Ok(TopicRecord {
        id,
        partitions: row.get::<_, i32>(2) as u32,
        settings: TopicSettings {
            retention_ms: row.get(3),
            retention_bytes: row.get(4),
            segment_bytes: row.get::<_, Option<i64>>(5).map(|v| v as u64),
            segment_ms: row.get::<_, Option<i64>>(6).map(|v| v as u64),
            max_message_bytes: row.get::<_, Option<i64>>(7).map(|v| v as u32),
            durability,
            ..TopicSettings::default()
        },
        internal: row.get(9),
        created_ms: row.get(10),
        fixed_by: row.get(11),
        name,
    })
}

/// Every topic and partition state stored, for start-up.
pub(super) async fn load(
    pool: &PgPool,
) -> CloudResult<(
    HashMap<String, TopicRecord>,
    HashMap<TopicPartition, Arc<PartitionState>>,
)> {
    let client = pool.get().await?;
    let mut topics = HashMap::new();
    for row in client
        .query(&format!("SELECT {TOPIC_COLUMNS} FROM topics"), &[])
        .await
        .map_err(CloudError::pg("loading topics"))?
    {
        let record = topic_from_row(&row)?;
        topics.insert(record.name.clone(), record);
    }
    let mut partitions = HashMap::new();
    for row in client
        .query(
            "SELECT topic, partition, log_start, high_watermark FROM partitions",
            &[],
        )
        .await
        .map_err(CloudError::pg("loading partitions"))?
    {
        let tp = TopicPartition::new(row.get::<_, String>(0), row.get::<_, i32>(1) as u32);
        let state = PartitionState::new(row.get(2), row.get(3));
        partitions.insert(tp, Arc::new(state));
    }
    Ok((topics, partitions))
}

/// Writes every column of `record` (insert or update).
async fn put_topic(
    client: &impl tokio_postgres::GenericClient,
    record: &TopicRecord,
    insert: bool,
) -> CloudResult<u64> {
    let settings = &record.settings;
    let partitions = record.partitions as i32;
    let segment_bytes = settings.segment_bytes.map(|v| v as i64);
    let segment_ms = settings.segment_ms.map(|v| v as i64);
    let max_message_bytes = settings.max_message_bytes.map(i64::from);
    let durability = settings.durability.map(|d| d.to_string());
    let id = record.id.to_vec();
    let values: [&(dyn ToSql + Sync); 12] = [
        &record.name,
        &id,
        &partitions,
        &settings.retention_ms,
        &settings.retention_bytes,
        &segment_bytes,
        &segment_ms,
        &max_message_bytes,
        &durability,
        &record.internal,
        &record.created_ms,
        &record.fixed_by,
    ];
    let sql = if insert {
        format!(
            "INSERT INTO topics ({TOPIC_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
             ON CONFLICT (name) DO NOTHING"
        )
    } else {
        "UPDATE topics SET id=$2, partitions=$3, retention_ms=$4, retention_bytes=$5,
             segment_bytes=$6, segment_ms=$7, max_message_bytes=$8, durability=$9, internal=$10,
             created_ms=$11, fixed_by=$12 WHERE name=$1"
            .to_owned()
    };
    client
        .execute(sql.as_str(), &values)
        .await
        .map_err(CloudError::pg("writing a topic"))
}

/// Adds partition rows `from..to` of `topic`.
async fn add_partitions(
    client: &impl tokio_postgres::GenericClient,
    topic: &str,
    from: u32,
    to: u32,
) -> CloudResult<()> {
    client
        .execute(
            "INSERT INTO partitions (topic, partition)
             SELECT $1, generate_series($2::int, $3::int - 1)",
            &[&topic, &(from as i32), &(to as i32)],
        )
        .await
        .map_err(CloudError::pg("adding partitions"))?;
    Ok(())
}

impl CloudLog {
    /// Creates the one-partition log of queue `queue` (`queue:<name>`, a name user topics
    /// cannot take), internal and kept whole (no time or size retention; the queue moves its
    /// start to the ack floor). Creating one that exists is not an error.
    pub(super) async fn create_queue_log(&self, queue: &str) -> EngineResult<()> {
        let settings = TopicSettings {
            retention_ms: Some(-1),
            retention_bytes: Some(-1),
            ..TopicSettings::default()
        };
        // Validated under a stand-in name: the prefix is refused for user topics on purpose.
        let mut record = new_topic_record("queue-log", 1, settings)?;
        record.name = crate::broker::queues::queue_log_topic(queue);
        record.internal = true;
        let name = record.name.clone();
        let _admin = self.admin.lock().await;
        if self.table.read().contains_key(&name) {
            return Ok(());
        }
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a queue log creation"))?;
        if put_topic(&transaction, &record, true).await? == 0 {
            // Made by another broker meanwhile: learn it as any other topic.
            drop(transaction);
            drop(_admin);
            return Ok(self.learn_topics().await?);
        }
        add_partitions(&transaction, &name, 0, 1).await?;
        wake::notify_topics(&transaction).await?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a queue log creation"))?;
        self.publish(record, 0);
        Ok(())
    }

    fn record(&self, name: &str) -> EngineResult<TopicRecord> {
        self.table
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownTopic(name.to_owned()))
    }

    fn describe(&self, record: &TopicRecord) -> TopicDescription {
        TopicDescription {
            name: record.name.clone(),
            id: record.id,
            partitions: record.partitions,
            settings: effective(&self.settings.defaults, &record.settings),
            internal: record.internal,
            fixed_by: record.fixed_by.clone(),
        }
    }

    fn limits_allow(&self, topic: &str, total: u32, current: u32) -> EngineResult<()> {
        let existing: u64 = self
            .table
            .read()
            .values()
            .map(|record| u64::from(record.partitions))
            .sum();
        within_limits(&self.settings.limits, existing, topic, total, current)
    }

    /// Stores `record` and publishes it, with fresh partition states for `from..partitions`.
    fn publish(&self, record: TopicRecord, from: u32) -> TopicDescription {
        let description = self.describe(&record);
        {
            let mut partitions = self.partitions.write();
            for partition in from..record.partitions {
                let tp = TopicPartition::new(record.name.clone(), partition);
                let state = PartitionState::new(0, 0);
                // New and empty: nothing to take over, so a leader may write it at once.
                state.led.store(
                    self.members.leads(&tp),
                    std::sync::atomic::Ordering::Release,
                );
                partitions.insert(tp, Arc::new(state));
            }
        }
        self.table.write().insert(record.name.clone(), record);
        description
    }

    async fn update_topic(&self, record: TopicRecord) -> EngineResult<TopicDescription> {
        let client = self.pool.get().await?;
        put_topic(&*client, &record, false).await?;
        wake::notify_topics(&*client).await?;
        Ok(self.publish(record, u32::MAX))
    }
}

#[async_trait]
impl TopicAdmin for CloudLog {
    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: TopicSettings,
    ) -> EngineResult<TopicDescription> {
        let settings = cloud_settings(settings)?;
        let record = new_topic_record(name, partitions, settings)?;
        let _admin = self.admin.lock().await;
        if self.table.read().contains_key(name) {
            return Err(EngineError::TopicExists(name.to_owned()));
        }
        self.limits_allow(name, partitions, 0)?;
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a topic creation"))?;
        if put_topic(&transaction, &record, true).await? == 0 {
            return Err(EngineError::TopicExists(name.to_owned()));
        }
        add_partitions(&transaction, name, 0, partitions).await?;
        wake::notify_topics(&transaction).await?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a topic creation"))?;
        Ok(self.publish(record, 0))
    }

    async fn delete_topic(&self, name: &str) -> EngineResult<()> {
        let _admin = self.admin.lock().await;
        self.record(name)?;
        let _no_flush = self.flushing.lock().await;
        self.drop_pending_topic(name);
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a topic deletion"))?;
        transaction
            .execute("DELETE FROM topics WHERE name = $1", &[&name])
            .await
            .map_err(CloudError::pg("deleting a topic"))?;
        transaction
            .execute("DELETE FROM consumer_offsets WHERE topic = $1", &[&name])
            .await
            .map_err(CloudError::pg("deleting a topic's offsets"))?;
        wake::notify_topics(&transaction).await?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a topic deletion"))?;
        self.table.write().remove(name);
        self.partitions.write().retain(|tp, _| tp.topic != name);
        Ok(())
    }

    async fn create_partitions(&self, name: &str, total: u32) -> EngineResult<TopicDescription> {
        let _admin = self.admin.lock().await;
        let mut record = self.record(name)?;
        if let Some(refusal) = self.describe(&record).growth_refusal() {
            return Err(refusal);
        }
        check_partitions(total, record.partitions)?;
        self.limits_allow(name, total, record.partitions)?;
        let current = record.partitions;
        record.partitions = total;
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a partition increase"))?;
        put_topic(&transaction, &record, false).await?;
        add_partitions(&transaction, name, current, total).await?;
        wake::notify_topics(&transaction).await?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a partition increase"))?;
        Ok(self.publish(record, current))
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
        if record.fixed_by.as_deref() == Some(holder) {
            return Ok(self.describe(&record));
        }
        record.fixed_by = Some(holder.to_owned());
        self.update_topic(record).await
    }

    async fn alter_settings(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> EngineResult<TopicDescription> {
        validate_settings(&settings)?;
        let settings = cloud_settings(settings)?;
        let _admin = self.admin.lock().await;
        let mut record = self.record(name)?;
        record.settings = settings;
        self.update_topic(record).await
    }

    fn check_partition_limits(&self, topic: &str, total: u32) -> EngineResult<()> {
        let current = self
            .table
            .read()
            .get(topic)
            .map_or(0, |record| record.partitions);
        self.limits_allow(topic, total, current)
    }

    fn describe_topic(&self, name: &str) -> EngineResult<TopicDescription> {
        self.record(name).map(|record| self.describe(&record))
    }

    fn list_topics(&self) -> Vec<TopicDescription> {
        let table = self.table.read();
        // Queue logs are the engine's own, not topics clients see.
        let mut topics: Vec<_> = table
            .values()
            .filter(|r| !r.name.starts_with(crate::broker::queues::QUEUE_LOG_PREFIX))
            .map(|r| self.describe(r))
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    fn defaults(&self) -> EffectiveSettings {
        effective(&self.settings.defaults, &TopicSettings::default())
    }
}

/// The settings the cloud engine can honour: log compaction and broker-stamped timestamps run
/// only on the local engine, and the compaction settings are not stored in PostgreSQL, so they
/// are refused rather than accepted and ignored. Values equal to Kafka's defaults are taken
/// (and dropped: the default applies anyway).
fn cloud_settings(mut settings: TopicSettings) -> EngineResult<TopicSettings> {
    let refuse = |name: &str, reason: &str| {
        Err(EngineError::InvalidSetting {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    const LOCAL_ONLY: &str = "log compaction runs only on the local storage engine, not on the cloud engine (PostgreSQL + object storage)";
    if settings.cleanup_policy.is_some_and(|policy| policy.compact) {
        return refuse("cleanup.policy", LOCAL_ONLY);
    }
    if settings.delete_retention_ms.is_some() {
        return refuse("delete.retention.ms", LOCAL_ONLY);
    }
    if settings.min_cleanable_dirty_ratio.is_some() {
        return refuse("min.cleanable.dirty.ratio", LOCAL_ONLY);
    }
    if settings.min_compaction_lag_ms.is_some() {
        return refuse("min.compaction.lag.ms", LOCAL_ONLY);
    }
    if settings.timestamp_type == Some(tributary_api::TimestampType::LogAppendTime) {
        return refuse(
            "message.timestamp.type",
            "LogAppendTime is applied only by the local storage engine, not on the cloud engine",
        );
    }
    if settings
        .compression_type
        .is_some_and(|kind| kind != tributary_api::CompressionType::Producer)
    {
        return refuse(
            "compression.type",
            "recompression is done only by the local storage engine, not on the cloud engine (batches are stored as the producer sent them)",
        );
    }
    settings.cleanup_policy = None;
    settings.timestamp_type = None;
    settings.compression_type = None;
    settings.min_insync_replicas = None;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::{CleanupPolicy, CompressionType, TimestampType};

    #[test]
    fn compaction_and_broker_side_rewrites_are_refused_defaults_taken() {
        let compact = TopicSettings {
            cleanup_policy: Some(CleanupPolicy::COMPACT),
            ..TopicSettings::default()
        };
        assert!(matches!(
            cloud_settings(compact),
            Err(EngineError::InvalidSetting { name, .. }) if name == "cleanup.policy"
        ));
        let stamped = TopicSettings {
            timestamp_type: Some(TimestampType::LogAppendTime),
            ..TopicSettings::default()
        };
        assert!(cloud_settings(stamped).is_err());
        let zstd = TopicSettings {
            compression_type: Some(CompressionType::Zstd),
            ..TopicSettings::default()
        };
        assert!(cloud_settings(zstd).is_err());
        let defaults = TopicSettings {
            retention_ms: Some(5),
            cleanup_policy: Some(CleanupPolicy::DELETE),
            timestamp_type: Some(TimestampType::CreateTime),
            compression_type: Some(CompressionType::Producer),
            min_insync_replicas: Some(1),
            ..TopicSettings::default()
        };
        let kept = cloud_settings(defaults).expect("defaults are fine");
        assert_eq!(
            kept,
            TopicSettings {
                retention_ms: Some(5),
                ..TopicSettings::default()
            }
        );
    }
}
