//! Errors of the Kafka frontend, and the one place engine errors become Kafka error codes.

use kafka_protocol::ResponseError;
use tributary_api::{BatchError, EngineError};

use crate::codec::CodecError;

/// Why a Kafka connection ended abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    // The io::Error is in the message because the listener logs only Display, and "reset by
    // peer" versus "broken pipe" is what tells a client dropping out from a broker fault.
    #[error("connection I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error, closing the connection")]
    Codec(#[from] CodecError),
}

/// Why a SASL exchange failed. Only logged: the client gets Kafka's generic message, so a
/// failure does not tell an attacker which part was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    #[error("malformed SASL message: {0}")]
    Malformed(&'static str),
    #[error("the client asked for channel binding, which is not offered")]
    ChannelBindingUnsupported,
    #[error("the channel binding in client-final differs from client-first")]
    ChannelBindingMismatch,
    #[error("the client-final nonce differs from the one the server sent")]
    NonceMismatch,
    #[error("the authorization id differs from the user name")]
    AuthorizationIdMismatch,
    #[error("unknown user or wrong password")]
    BadCredentials,
    #[error("the user store could not be read")]
    UserStore(#[source] EngineError),
    #[error("internal failure computing the exchange")]
    Internal,
}

/// The Kafka error code for an engine failure. Every handler maps through this one function.
pub fn error_code(error: &EngineError) -> ResponseError {
    match error {
        EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        EngineError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        EngineError::InvalidName(_) => ResponseError::InvalidTopicException,
        EngineError::InvalidPartitions { .. } | EngineError::PartitionLimit { .. } => {
            ResponseError::InvalidPartitions
        }
        EngineError::PartitionCountFixed { .. } => ResponseError::PolicyViolation,
        EngineError::InvalidSetting { .. } => ResponseError::InvalidConfig,
        EngineError::CorruptBatch(BatchError::CrcMismatch { .. }) => ResponseError::CorruptMessage,
        EngineError::CorruptBatch(_) => ResponseError::InvalidRecord,
        EngineError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        EngineError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        EngineError::Poisoned(_) => ResponseError::KafkaStorageError,
        EngineError::Io { .. } | EngineError::Storage(_) => ResponseError::KafkaStorageError,
        EngineError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        _ => ResponseError::UnknownServerError,
    }
}

/// [`error_code`] as the wire value.
pub fn code(error: &EngineError) -> i16 {
    error_code(error).code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_partition_count_is_a_policy_violation_naming_its_holder() {
        let fixed = EngineError::PartitionCountFixed {
            topic: "t".into(),
            partitions: 1,
            holder: "the AMQP stream 't' in vhost '/'".into(),
        };
        assert_eq!(code(&fixed), 44);
        assert!(fixed.to_string().contains("the AMQP stream 't'"), "{fixed}");
    }

    #[test]
    fn crc_errors_are_corrupt_message_and_size_errors_too_large() {
        let crc = EngineError::CorruptBatch(BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert_eq!(error_code(&crc), ResponseError::CorruptMessage);
        let large = EngineError::BatchTooLarge { size: 10, limit: 5 };
        assert_eq!(code(&large), 10);
        assert_eq!(
            code(&EngineError::UnknownTopic("t".into())),
            ResponseError::UnknownTopicOrPartition.code()
        );
    }

    #[test]
    fn an_io_failure_names_its_cause_in_the_message_the_listener_logs() {
        let broken = KafkaError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let message = broken.to_string();
        assert!(message.starts_with("connection I/O failed: "), "{message}");
        assert!(message.contains("broken pipe"), "{message}");
    }
}
