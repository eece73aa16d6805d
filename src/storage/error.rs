//! The storage error type and its mapping onto the engine contract.

use std::path::PathBuf;

use tributary_api::EngineError;
use tributary_api::batch::BatchError;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log {} at byte position {position}{}: {reason}",
        file.display(), offset.map(|o| format!(" (offset {o})")).unwrap_or_default())]
    Corrupt {
        file: PathBuf,
        position: u64,
        /// The offset of the damaged batch when its header was still readable.
        offset: Option<i64>,
        reason: CorruptReason,
    },
    #[error(
        "partition {partition} of topic `{topic}` is poisoned by an earlier write or fsync failure"
    )]
    Poisoned { topic: String, partition: u32 },
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("offset {offset} is outside the log ({log_start}..{high_watermark})")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("topic `{topic}` has {current} partitions; cannot change to {requested}")]
    InvalidPartitionCount {
        topic: String,
        current: u32,
        requested: u32,
    },
    #[error("invalid topic name `{0}` (must be 1..=255 bytes without '/' or NUL)")]
    InvalidTopicName(String),
    #[error("data directory {} is in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("storage is closed")]
    Closed,
}

/// What exactly is wrong with a damaged log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptReason {
    #[error("invalid batch: {0}")]
    Batch(BatchError),
    #[error("batch runs past the end of the file")]
    PastEnd,
    #[error("expected base offset {expected}, found {found}")]
    OffsetGap { expected: i64, found: i64 },
    #[error("segment {0} is damaged and has no readable batches after the damage")]
    SealedTail(i64),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

impl From<StorageError> for EngineError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::UnknownTopic(topic) => EngineError::UnknownTopic(topic),
            StorageError::UnknownPartition { topic, partition } => {
                EngineError::UnknownPartition { topic, partition }
            }
            StorageError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            } => EngineError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            },
            StorageError::BatchTooLarge { size, limit } => {
                EngineError::BatchTooLarge { size, limit }
            }
            StorageError::InvalidBatch(batch) => EngineError::CorruptBatch(batch),
            StorageError::Poisoned { topic, partition } => {
                EngineError::Poisoned(format!("{topic}-{partition}"))
            }
            StorageError::InvalidPartitionCount {
                current, requested, ..
            } => EngineError::InvalidPartitions { requested, current },
            StorageError::InvalidTopicName(name) => EngineError::InvalidName(name),
            StorageError::Closed => EngineError::ShuttingDown,
            other @ (StorageError::Io { .. }
            | StorageError::Corrupt { .. }
            | StorageError::Locked { .. }) => EngineError::Storage(Box::new(other)),
        }
    }
}
