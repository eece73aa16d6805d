//! Names, offsets and per-topic settings shared by every frontend and the engine.
//!
//! Offsets are dense per partition, start at 0 and never reveal a file position. A topic name is
//! 1..=249 bytes of `[A-Za-z0-9._-]` when it comes from Kafka; AMQP queues and RocketMQ topics allow
//! more, so the engine accepts any non-empty UTF-8 name up to [`MAX_NAME_LEN`] bytes without `/` or
//! NUL and maps it to a directory name itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Longest topic or queue name the engine accepts, in bytes (AMQP's short-string limit).
pub const MAX_NAME_LEN: usize = 255;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// When an append is made durable before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before the acknowledgement; concurrent appends share one fsync (group commit).
    Always,
    /// fsync in the background at most this long after the write; acknowledged once written.
    Interval(Duration),
    /// Page cache only; the operating system decides when data reaches the disk.
    Never,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Interval(every) => write!(f, "interval:{}", every.as_millis()),
            Self::Never => f.write_str("never"),
        }
    }
}

/// A durability policy string that is not `always`, `never` or `interval:<ms>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("durability must be `always`, `never` or `interval:<ms>` with ms > 0, got `{0}`")]
pub struct BadDurability(pub String);

impl FromStr for Durability {
    type Err = BadDurability;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => other
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| Self::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| BadDurability(text.to_owned())),
        }
    }
}

/// Per-topic settings. `None` means "use the broker default" and is what a topic stores unless
/// the setting was given explicitly, so a changed broker default reaches existing topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub max_message_bytes: Option<u32>,
    pub durability: Option<Durability>,
    /// Kafka's `cleanup.policy`.
    pub cleanup_policy: Option<CleanupPolicy>,
    /// Kafka's `delete.retention.ms`: how long a tombstone outlives the cleaner pass that first
    /// cleaned it.
    pub delete_retention_ms: Option<i64>,
    /// Kafka's `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: Option<Ratio>,
    /// Kafka's `min.compaction.lag.ms`: records younger than this are never cleaned.
    pub min_compaction_lag_ms: Option<i64>,
    /// Kafka's `message.timestamp.type`.
    pub timestamp_type: Option<TimestampType>,
    /// Kafka's `min.insync.replicas`; one broker holds one replica, so only 1 is valid.
    pub min_insync_replicas: Option<u32>,
    /// Kafka's `compression.type`: the codec batches are stored with.
    pub compression_type: Option<CompressionType>,
}

/// Kafka's `compression.type`: keep the producer's codec, or store every batch with this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// The codec to store batches with; `None` keeps the producer's.
    pub fn target(self) -> Option<crate::batch::Compression> {
        use crate::batch::Compression;
        match self {
            Self::Producer => None,
            Self::Uncompressed => Some(Compression::None),
            Self::Gzip => Some(Compression::Gzip),
            Self::Snappy => Some(Compression::Snappy),
            Self::Lz4 => Some(Compression::Lz4),
            Self::Zstd => Some(Compression::Zstd),
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Producer => "producer",
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        })
    }
}

impl FromStr for CompressionType {
    type Err = ();

    /// Kafka's names; `none` is taken for `uncompressed` (the producer-side name).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "producer" => Ok(Self::Producer),
            "uncompressed" | "none" => Ok(Self::Uncompressed),
            "gzip" => Ok(Self::Gzip),
            "snappy" => Ok(Self::Snappy),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            _ => Err(()),
        }
    }
}

/// Kafka's `cleanup.policy`: a list of `delete` and `compact` (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Segments are deleted by `retention.ms` / `retention.bytes`.
    pub delete: bool,
    /// The cleaner keeps only the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: Self = Self {
        delete: true,
        compact: false,
    };
    pub const COMPACT: Self = Self {
        delete: false,
        compact: true,
    };
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            _ => f.write_str("delete"),
        }
    }
}

/// A `cleanup.policy` that is not a non-empty list of `delete` and `compact`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cleanup.policy must be a non-empty list of `delete` and `compact`, got `{0}`")]
pub struct BadCleanupPolicy(pub String);

impl FromStr for CleanupPolicy {
    type Err = BadCleanupPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut policy = Self {
            delete: false,
            compact: false,
        };
        for item in text.split(',').map(str::trim) {
            match item {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return Err(BadCleanupPolicy(text.to_owned())),
            }
        }
        if policy.delete || policy.compact {
            Ok(policy)
        } else {
            Err(BadCleanupPolicy(text.to_owned()))
        }
    }
}

/// A ratio in `[0, 1]`, kept in millionths so settings compare exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ratio(u32);

impl Ratio {
    pub const MILLIONTHS: u32 = 1_000_000;

    /// `None` outside `[0, 1]` (Kafka's range for `min.cleanable.dirty.ratio`).
    pub const fn from_millionths(millionths: u32) -> Option<Self> {
        if millionths <= Self::MILLIONTHS {
            Some(Self(millionths))
        } else {
            None
        }
    }

    pub fn millionths(self) -> u32 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / f64::from(Self::MILLIONTHS)
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kafka prints doubles: 0.5, 1.0.
        let whole = self.0 / Self::MILLIONTHS;
        let fraction = format!("{:06}", self.0 % Self::MILLIONTHS);
        let fraction = fraction.trim_end_matches('0');
        write!(
            f,
            "{whole}.{}",
            if fraction.is_empty() { "0" } else { fraction }
        )
    }
}

impl FromStr for Ratio {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let value: f64 = text.trim().parse().map_err(|_| ())?;
        if !(0.0..=1.0).contains(&value) {
            return Err(());
        }
        Self::from_millionths((value * f64::from(Self::MILLIONTHS)).round() as u32).ok_or(())
    }
}

/// Kafka's `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Records keep the producer's timestamps.
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        })
    }
}

impl FromStr for TimestampType {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "CreateTime" => Ok(Self::CreateTime),
            "LogAppendTime" => Ok(Self::LogAppendTime),
            _ => Err(()),
        }
    }
}

/// The settings of a topic as they apply, each with where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSettings {
    /// `-1` means unlimited, as in Kafka.
    pub retention_ms: i64,
    /// `-1` means unlimited, as in Kafka.
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub max_message_bytes: u32,
    pub durability: Durability,
    pub cleanup_policy: CleanupPolicy,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: Ratio,
    pub min_compaction_lag_ms: i64,
    pub timestamp_type: TimestampType,
    pub min_insync_replicas: u32,
    pub compression_type: CompressionType,
    /// Settings given explicitly on the topic rather than taken from the broker default.
    pub overridden: TopicSettings,
}

/// A topic as the metadata store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    /// Stable for the topic's life; Kafka Fetch v13+ addresses topics by it.
    pub id: [u8; 16],
    pub partitions: u32,
    pub settings: EffectiveSettings,
    /// Set for the one-partition logs behind AMQP classic queues, which Kafka listings hide.
    pub internal: bool,
    /// Who needs the partition count to stay as it is (see `TopicAdmin::fix_partition_count`),
    /// e.g. `the AMQP stream 's' in vhost '/'`; growing the topic is then refused.
    pub fixed_by: Option<String>,
}

impl TopicDescription {
    /// The refusal to grow this topic, when its partition count is fixed.
    pub fn growth_refusal(&self) -> Option<crate::EngineError> {
        self.fixed_by
            .as_ref()
            .map(|holder| crate::EngineError::PartitionCountFixed {
                topic: self.name.clone(),
                partitions: self.partitions,
                holder: holder.clone(),
            })
    }
}

/// Bounds of a partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// First offset still stored.
    pub log_start: i64,
    /// Offset the next appended record will get (Kafka's high watermark on one replica).
    pub high_watermark: i64,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Broker time of the append (ms), for Kafka's LogAppendTime reply.
    pub log_append_time: i64,
    pub log_start: i64,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatches {
    /// Zero or more complete RecordBatch v2 byte ranges, back to back, starting with the batch
    /// that contains the requested offset.
    pub data: bytes::Bytes,
    pub offsets: PartitionOffsets,
}

/// What `offset_for_time` finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// The timestamp a ListOffsets-style lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    /// The record with the largest timestamp.
    MaxTimestamp,
    /// The first record whose timestamp is at or after this one (ms).
    AtOrAfter(i64),
}

/// A committed consumer position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub metadata: String,
    /// Broker time of the commit (ms).
    pub commit_time: i64,
}

/// Checks a topic or queue name against the engine's rules.
pub fn validate_name(name: &str) -> Result<(), crate::EngineError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(crate::EngineError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_prints() {
        assert_eq!("always".parse::<Durability>(), Ok(Durability::Always));
        assert_eq!("never".parse::<Durability>(), Ok(Durability::Never));
        let every = "interval:250".parse::<Durability>().unwrap();
        assert_eq!(every, Durability::Interval(Duration::from_millis(250)));
        assert_eq!(every.to_string(), "interval:250");
        assert!("interval:0".parse::<Durability>().is_err());
        assert!("sometimes".parse::<Durability>().is_err());
    }

    #[test]
    fn cleanup_policies_and_ratios_parse() {
        assert_eq!("compact".parse(), Ok(CleanupPolicy::COMPACT));
        let both: CleanupPolicy = "delete, compact".parse().unwrap();
        assert_eq!(both.to_string(), "compact,delete");
        assert!("".parse::<CleanupPolicy>().is_err());
        assert!("compact,forever".parse::<CleanupPolicy>().is_err());
        let half: Ratio = "0.5".parse().unwrap();
        assert_eq!(half.to_string(), "0.5");
        assert_eq!("1".parse::<Ratio>().unwrap().to_string(), "1.0");
        assert!("1.5".parse::<Ratio>().is_err());
        assert_eq!("LogAppendTime".parse(), Ok(TimestampType::LogAppendTime));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("orders.v1").is_ok());
        assert!(validate_name("amq.gen-Jz%x y").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(256)).is_err());
    }
}
