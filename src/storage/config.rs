//! Per-partition log settings.

use tributary_api::{CleanupPolicy, CompressionType, Durability};

/// Settings of one topic's partitions. Defaults follow Kafka's broker defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment when appending would make it larger than this.
    pub segment_bytes: u64,
    /// Roll the active segment (if non-empty) once it is this old.
    pub segment_ms: u64,
    /// -1 = forever; otherwise delete sealed segments whose max timestamp is older.
    pub retention_ms: i64,
    /// -1 = unlimited; otherwise delete the oldest sealed segments while the log stays at least
    /// this large without them.
    pub retention_bytes: i64,
    /// `append` refuses batches larger than this.
    pub max_batch_bytes: u32,
    pub durability: Durability,
    /// Sparse offset index: one entry per this many log bytes.
    pub index_interval_bytes: u32,
    /// `delete` applies `retention_ms`/`retention_bytes`; `compact` lets the cleaner run.
    pub cleanup: CleanupPolicy,
    /// A tombstone is kept this long after the cleaner pass that first cleaned it.
    pub delete_retention_ms: i64,
    /// The cleaner takes a partition once dirty bytes / cleanable bytes reach this.
    pub min_cleanable_dirty_ratio: f64,
    /// Segments whose newest record is younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// Stamp every appended batch with the append time (Kafka's `LogAppendTime`).
    pub log_append_time: bool,
    /// Store every batch with this codec (`Producer`: as sent).
    pub compression: CompressionType,
}

impl Default for LogConfig {
    fn default() -> Self {
        const WEEK_MS: u64 = 7 * 24 * 60 * 60 * 1000;
        Self {
            segment_bytes: 1 << 30,
            segment_ms: WEEK_MS,
            retention_ms: WEEK_MS as i64,
            retention_bytes: -1,
            max_batch_bytes: 1_048_588,
            durability: Durability::Always,
            index_interval_bytes: 4096,
            cleanup: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            log_append_time: false,
            compression: CompressionType::Producer,
        }
    }
}
