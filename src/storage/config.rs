//! Per-partition log settings.

use tributary_api::Durability;

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
        }
    }
}
