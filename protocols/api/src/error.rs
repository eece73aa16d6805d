//! The one error type the engine returns through the contract. Frontends map it to their
//! protocol's codes in one function each.

use crate::batch::BatchError;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("invalid topic or queue name `{0}`")]
    InvalidName(String),
    #[error("invalid partition count {requested} (current {current})")]
    InvalidPartitions { requested: u32, current: u32 },
    /// The topic's partition count is fixed because a reader depends on it, e.g. an AMQP
    /// stream reads exactly one partition and would never see records in new ones.
    #[error(
        "topic `{topic}` cannot grow past {partitions} partition(s): {holder} reads it as such and would miss records in new partitions"
    )]
    PartitionCountFixed {
        topic: String,
        partitions: u32,
        holder: String,
    },
    /// Creating or growing `topic` would pass a partition cap; nothing was created.
    #[error(
        "topic `{topic}`: {wanted} partitions would exceed the limit of {limit} {scope} (setting `{setting}`)"
    )]
    PartitionLimit {
        topic: String,
        /// The count the request would reach: the topic's for the per-topic cap, the broker's
        /// (all topics) for the broker cap.
        wanted: u64,
        limit: u64,
        /// `per topic` or `per broker (all topics)`.
        scope: &'static str,
        /// The configuration key that sets `limit`.
        setting: &'static str,
    },
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting { name: String, reason: String },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(#[from] BatchError),
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is outside the log ({log_start}..{high_watermark})")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    #[error("delivery {0} is not outstanding")]
    UnknownDelivery(u64),
    #[error("partition {0} is poisoned by an earlier write failure and refuses appends")]
    Poisoned(String),
    #[error("storage I/O failed during {context}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store failed during {context}: {message}")]
    Metadata {
        context: &'static str,
        message: String,
    },
    /// A failure inside the engine (storage corruption, a poisoned file) that no frontend can
    /// act on beyond reporting a server error; the message names the file and position.
    #[error("storage failure: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("invalid user: {0}")]
    InvalidUser(String),
}

/// Shorthand for engine results.
pub type EngineResult<T> = Result<T, EngineError>;
