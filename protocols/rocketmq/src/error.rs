//! The one error type of request handling, and the one place engine errors become RocketMQ
//! response codes ([`RequestError::response_code`]).

use tributary_api::EngineError;
use tributary_api::batch::BatchError;

use crate::codec::message::MessageError;
use crate::filter::FilterError;

/// `ResponseCode` values this frontend answers with.
pub mod code {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const FILTER_DATA_NOT_EXIST: i32 = 27;
    pub const INVALID_PARAMETER: i32 = 29;
}

/// Why a request failed; the connection stays open.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("missing header field `{0}`")]
    MissingField(&'static str),
    #[error("header field `{field}` has an invalid value `{value}`")]
    BadField { field: &'static str, value: String },
    #[error("malformed message body: {0}")]
    Message(#[from] MessageError),
    #[error("malformed JSON body: {0}")]
    BodyJson(#[from] serde_json::Error),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("{0}")]
    Illegal(String),
    #[error("look message by offset failed, {0}")]
    MessageNotFound(i64),
    /// Refused by the ACL (`rocketmq.acl_enabled`): the remark says what was missing.
    #[error("{0}")]
    NoPermission(String),
    #[error("topic `{0}` does not exist and auto-creation is off")]
    TopicNotExist(String),
    #[error("request type {0} not supported")]
    NotSupported(i32),
    /// A send to a broker that leads none of the topic's partitions now (a stale route, see
    /// [`crate::routes`]); the client retries elsewhere after refreshing its route.
    #[error("this broker leads no queue of topic `{0}` now; refresh the route")]
    NoLedQueue(String),
    #[error("parse the consumer's subscription failed: {0}")]
    SubscriptionParseFailed(#[from] FilterError),
    #[error("The broker's consumer filter data is not exist!Your expression may be wrong!")]
    FilterDataNotExist,
    #[error("The broker does not support consumer to filter message by {0}")]
    FilterDisabled(String),
    /// A stored message this frontend cannot deliver (docs/interop.md); the reader's position
    /// stays before it.
    #[error("{0}")]
    UndeliverableMessage(String),
    /// A stored batch this frontend cannot decode (corrupt, over the inflate limit, unknown
    /// codec): the reader's position stays before it (docs/interop.md).
    #[error("cannot deliver the batch at offset {offset} of {partition}: {source}")]
    Undeliverable {
        partition: String,
        offset: i64,
        source: BatchError,
    },
    /// A record of the broker's own durable state (metadata store) that does not decode; the
    /// operation that needs it is refused until the record is repaired, never run without it.
    #[error("unreadable broker state: record `{key}` of `{namespace}`: {reason}")]
    UnreadableState {
        namespace: &'static str,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl RequestError {
    /// The response code a client sees for this error.
    pub fn response_code(&self) -> i32 {
        match self {
            Self::MissingField(_)
            | Self::BadField { .. }
            | Self::BodyJson(_)
            | Self::InvalidBody(_) => code::INVALID_PARAMETER,
            Self::Message(_) | Self::Illegal(_) => code::MESSAGE_ILLEGAL,
            Self::TopicNotExist(_) => code::TOPIC_NOT_EXIST,
            Self::NoPermission(_) => code::NO_PERMISSION,
            Self::MessageNotFound(_)
            | Self::FilterDisabled(_)
            | Self::UndeliverableMessage(_)
            | Self::Undeliverable { .. }
            | Self::UnreadableState { .. } => code::SYSTEM_ERROR,
            Self::SubscriptionParseFailed(_) => code::SUBSCRIPTION_PARSE_FAILED,
            Self::FilterDataNotExist => code::FILTER_DATA_NOT_EXIST,
            Self::NotSupported(_) => code::REQUEST_CODE_NOT_SUPPORTED,
            Self::NoLedQueue(_) => code::SERVICE_NOT_AVAILABLE,
            Self::Engine(engine) => match engine {
                EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. } => {
                    code::TOPIC_NOT_EXIST
                }
                EngineError::InvalidName(_)
                | EngineError::InvalidPartitions { .. }
                | EngineError::InvalidSetting { .. } => code::INVALID_PARAMETER,
                EngineError::CorruptBatch(_) | EngineError::BatchTooLarge { .. } => {
                    code::MESSAGE_ILLEGAL
                }
                EngineError::OffsetOutOfRange { .. } => code::PULL_OFFSET_MOVED,
                EngineError::ShuttingDown => code::SERVICE_NOT_AVAILABLE,
                // RocketMQ has no policy code; the remark says why.
                EngineError::PartitionCountFixed { .. } | EngineError::PartitionLimit { .. } => {
                    code::SYSTEM_ERROR
                }
                EngineError::Poisoned(_) => code::SYSTEM_BUSY,
                _ => code::SYSTEM_ERROR,
            },
        }
    }

    /// The remark sent with the error response (Java's wording for unknown codes).
    pub fn remark(&self) -> String {
        match self {
            Self::NotSupported(request) => format!(" request type {request} not supported"),
            other => other.to_string(),
        }
    }
}

pub type RequestResult<T> = Result<T, RequestError>;

/// The error for a stored batch of `partition` at `offset` that cannot be decoded; logs it and
/// counts it in `tributary_interop_undeliverable_batches_total`. Call it once per refusal
/// answered to a client.
pub(crate) fn undeliverable(
    partition: &tributary_api::TopicPartition,
    offset: i64,
    source: BatchError,
) -> RequestError {
    tracing::warn!(%partition, offset, error = %source, "refusing a stored batch RocketMQ cannot decode; the position stays before it");
    tributary_api::interop::count_undeliverable("rocketmq", source.reason());
    RequestError::Undeliverable {
        partition: partition.to_string(),
        offset,
        source,
    }
}
