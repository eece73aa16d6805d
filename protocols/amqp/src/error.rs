//! Errors of the AMQP frontend and RabbitMQ's reply codes. A channel error closes the channel
//! with `channel.close`; a connection error closes the connection with `connection.close`. Reply
//! texts follow RabbitMQ's layout, `"<CODE_NAME> - <detail>"`, because clients and tests match
//! on them.

use tributary_api::EngineError;

use crate::codec::methods::MethodId;
use crate::codec::{CodecError, ErlangBinary};

pub const REPLY_SUCCESS: u16 = 200;
pub const NO_ROUTE: u16 = 312;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
pub const FRAME_ERROR: u16 = 501;
pub const SYNTAX_ERROR: u16 = 502;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const RESOURCE_ERROR: u16 = 506;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;
pub const INTERNAL_ERROR: u16 = 541;

/// RabbitMQ's name for a reply code, the prefix of every reply text.
pub fn code_name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        NO_ROUTE => "NO_ROUTE",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// A reply code, its text and the method that caused it (0/0 when none did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
    pub method: MethodId,
}

impl Reply {
    pub fn new(code: u16, detail: impl std::fmt::Display) -> Self {
        Self {
            code,
            text: format!("{} - {detail}", code_name(code)),
            method: (0, 0),
        }
    }

    pub fn caused_by(mut self, method: MethodId) -> Self {
        self.method = method;
        self
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Why a request failed or a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// Closes the channel the request arrived on.
    #[error("channel error: {0}")]
    Channel(Reply),
    /// Closes the whole connection.
    #[error("connection error: {0}")]
    Connection(Reply),
    #[error("socket I/O failed")]
    Io(#[from] std::io::Error),
    /// A connection rule closes the connection (missed heartbeats, idle, slow frame or
    /// handshake); the socket is dropped without a close method, as RabbitMQ does.
    #[error("connection rule {reason} ({limit:?}) closes the connection")]
    Expired {
        reason: tributary_api::CloseReason,
        limit: std::time::Duration,
    },
}

impl AmqpError {
    pub fn channel(code: u16, detail: impl std::fmt::Display) -> Self {
        Self::Channel(Reply::new(code, detail))
    }

    pub fn connection(code: u16, detail: impl std::fmt::Display) -> Self {
        Self::Connection(Reply::new(code, detail))
    }

    /// Tags the error with the method that caused it, for the close reply.
    pub fn caused_by(self, method: MethodId) -> Self {
        match self {
            Self::Channel(reply) => Self::Channel(reply.caused_by(method)),
            Self::Connection(reply) => Self::Connection(reply.caused_by(method)),
            other => other,
        }
    }
}

impl From<EngineError> for AmqpError {
    fn from(error: EngineError) -> Self {
        engine_error(&error)
    }
}

/// The one mapping from engine errors to AMQP replies.
pub fn engine_error(error: &EngineError) -> AmqpError {
    match error {
        EngineError::UnknownQueue(name) => {
            AmqpError::channel(NOT_FOUND, format_args!("no queue '{name}' in vhost '/'"))
        }
        EngineError::UnknownDelivery(tag) => AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!("unknown delivery tag {tag}"),
        ),
        EngineError::InvalidName(name) => {
            AmqpError::channel(PRECONDITION_FAILED, format_args!("invalid name '{name}'"))
        }
        EngineError::InvalidSetting { name, reason } => AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!("invalid arg '{name}': {reason}"),
        ),
        EngineError::PartitionCountFixed { .. } | EngineError::PartitionLimit { .. } => {
            AmqpError::channel(PRECONDITION_FAILED, error)
        }
        EngineError::BatchTooLarge { size, limit } => AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!("message size {size} is larger than configured max size {limit}"),
        ),
        other => AmqpError::connection(INTERNAL_ERROR, other),
    }
}

/// Maps a codec failure to the connection error RabbitMQ sends for it.
pub fn codec_error(error: &CodecError) -> AmqpError {
    let code = match error {
        CodecError::FrameTooLarge { .. }
        | CodecError::BadFrameEnd { .. }
        | CodecError::UnknownFrameType { .. } => FRAME_ERROR,
        CodecError::HeartbeatOnChannel { .. } => UNEXPECTED_FRAME,
        CodecError::UnknownMethod { .. } => NOT_IMPLEMENTED,
        _ => SYNTAX_ERROR,
    };
    AmqpError::connection(code, error)
}

/// Maps a method payload that does not decode: arguments RabbitMQ cannot decode are its
/// `501 FRAME_ERROR - cannot decode <<args>>`; an unknown method stays 540.
pub fn method_error(error: &CodecError, payload: &[u8]) -> AmqpError {
    match error {
        CodecError::UnknownMethod { .. } => codec_error(error),
        _ => AmqpError::connection(
            FRAME_ERROR,
            format_args!(
                "cannot decode {}",
                ErlangBinary(payload.get(4..).unwrap_or_default())
            ),
        ),
    }
}
