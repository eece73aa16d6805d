//! Engine settings the shell's configuration maps onto.

use std::path::PathBuf;
use std::time::Duration;

use tributary_api::Durability;

/// Broker-wide defaults for every topic and queue log; a topic's explicit settings win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDefaults {
    /// Roll the active segment when it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment when it is this old (ms).
    pub segment_ms: u64,
    /// Delete segments whose newest record is older than this (ms); -1 keeps forever.
    pub retention_ms: i64,
    /// Delete the oldest segments while the partition is larger than this; -1 is unlimited.
    pub retention_bytes: i64,
    /// Largest batch accepted on append.
    pub max_message_bytes: u32,
    /// Largest batch a queue's log accepts (an AMQP message and its properties; see
    /// `Config::queue_max_message_bytes`).
    pub queue_max_message_bytes: u32,
    pub durability: Durability,
    /// Bytes of log between two sparse offset-index entries.
    pub index_interval_bytes: u32,
}

impl Default for LogDefaults {
    /// Kafka's defaults, with `always` durability: an acknowledged message is on disk.
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            // AMQP's default `amqp.max_message_bytes` (16 MiB) with a frame of properties.
            queue_max_message_bytes: 16 * 1024 * 1024 + 128 * 1024 + 1024,
            durability: Durability::Always,
            index_interval_bytes: 4096,
        }
    }
}

/// Caps on partitions, enforced by the engine on every create and grow path, so no frontend
/// can bypass them. Each partition costs a directory, open files and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLimits {
    /// Most partitions one topic may have (`limits.max_partitions_per_topic`).
    pub per_topic: u32,
    /// Most partitions of all topics together (`limits.max_partitions`); AMQP queue logs are
    /// not topics and do not count.
    pub per_broker: u32,
}

impl Default for PartitionLimits {
    fn default() -> Self {
        Self {
            per_topic: 1_000,
            per_broker: 20_000,
        }
    }
}

/// What `Broker::open` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// Holds `logs/` (segments) and `metadata.redb`.
    pub data_dir: PathBuf,
    pub log_defaults: LogDefaults,
    pub partition_limits: PartitionLimits,
    /// How often retention and segment-age rolling are checked.
    pub retention_check_interval: Duration,
    /// How often the log cleaner looks for compacted partitions to clean.
    pub cleaner_interval: Duration,
    /// The cleaner's read + write rate cap; 0 = unthrottled.
    pub cleaner_bytes_per_second: u64,
    /// Segment log files kept open at once; 0 = half the soft RLIMIT_NOFILE (at least 64).
    pub max_open_files: usize,
}

impl BrokerSettings {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            log_defaults: LogDefaults::default(),
            partition_limits: PartitionLimits::default(),
            retention_check_interval: Duration::from_secs(30),
            cleaner_interval: Duration::from_secs(15),
            cleaner_bytes_per_second: 64 << 20,
            max_open_files: 0,
        }
    }
}
