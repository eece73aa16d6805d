//! Queue arguments this server acts on, parsed once at declare time:
//!
//! | argument | effect |
//! |---|---|
//! | `x-message-ttl` (ms, ≥ 0) | messages expire that long after enqueue |
//! | `x-max-length` (≥ 0) | ready messages kept at most; see `x-overflow` |
//! | `x-overflow` | `drop-head` (default: oldest dropped or dead-lettered, reason `maxlen`), `reject-publish` and `reject-publish-dlx` (the new message is refused and nacked) |
//! | `x-dead-letter-exchange`, `x-dead-letter-routing-key` | where rejected, expired and dropped messages go |
//! | `x-single-active-consumer` (bool) | one consumer at a time receives; the next registered one takes over when it goes |
//! | `x-queue-type` | `classic` or `quorum` (a durable classic queue here); `stream` is refused |
//!
//! Other `x-` arguments are accepted and ignored, as RabbitMQ does with unknown ones.
//! Expiry happens at the head of the queue: when a message reaches it for a consumer or
//! `basic.get`, and, with nobody consuming, when the head falls due ([`crate::expiry`]).

use crate::codec::table::{FieldTable, FieldValue};
use crate::error::{AmqpError, PRECONDITION_FAILED};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePolicy {
    pub message_ttl_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub single_active_consumer: bool,
}

fn invalid(queue: &str, arg: &str, why: impl std::fmt::Display) -> AmqpError {
    AmqpError::channel(
        PRECONDITION_FAILED,
        format_args!("invalid arg '{arg}' for queue '{queue}' in vhost '/': {why}"),
    )
}

fn non_negative(queue: &str, arg: &str, value: &FieldValue) -> Result<u64, AmqpError> {
    match value.as_i64() {
        Some(n) if n >= 0 => Ok(n as u64),
        Some(n) => Err(invalid(queue, arg, format_args!("{{value_negative,{n}}}"))),
        None => Err(invalid(
            queue,
            arg,
            format_args!("\"expected integer, got {}\"", value.type_name()),
        )),
    }
}

/// A string argument RabbitMQ type-checks before validating (the dead-letter pair), with its
/// own wording for a wrong type.
fn typed_text(queue: &str, arg: &str, value: &FieldValue) -> Result<String, AmqpError> {
    value.as_str().map(str::to_owned).ok_or_else(|| {
        AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!(
                "invalid type '{}' for arg '{arg}' in queue '{queue}' in vhost '/'",
                value.type_name()
            ),
        )
    })
}

fn text(queue: &str, arg: &str, value: &FieldValue) -> Result<String, AmqpError> {
    value.as_str().map(str::to_owned).ok_or_else(|| {
        invalid(
            queue,
            arg,
            format_args!("{{unacceptable_type,{}}}", value.type_name()),
        )
    })
}

impl QueuePolicy {
    /// Parses and validates the arguments of `queue.declare`.
    pub fn parse(
        queue: &str,
        arguments: &FieldTable,
        durable: bool,
        exclusive: bool,
    ) -> Result<Self, AmqpError> {
        let mut policy = Self::default();
        for (name, value) in &arguments.0 {
            match name.as_str() {
                "x-message-ttl" => policy.message_ttl_ms = Some(non_negative(queue, name, value)?),
                "x-max-length" => policy.max_length = Some(non_negative(queue, name, value)?),
                "x-overflow" => {
                    policy.overflow = match text(queue, name, value)?.as_str() {
                        "drop-head" => Overflow::DropHead,
                        "reject-publish" | "reject-publish-dlx" => Overflow::RejectPublish,
                        _ => return Err(invalid(queue, name, "invalid_overflow")),
                    }
                }
                "x-dead-letter-exchange" => {
                    policy.dead_letter_exchange = Some(typed_text(queue, name, value)?)
                }
                "x-dead-letter-routing-key" => {
                    policy.dead_letter_routing_key = Some(typed_text(queue, name, value)?)
                }
                "x-single-active-consumer" => match value {
                    FieldValue::Bool(on) => policy.single_active_consumer = *on,
                    other => {
                        return Err(invalid(
                            queue,
                            name,
                            format_args!("{{unacceptable_type,{}}}", other.type_name()),
                        ));
                    }
                },
                "x-queue-type" => match text(queue, name, value)?.as_str() {
                    "classic" => {}
                    "quorum" if !durable => {
                        return Err(AmqpError::channel(
                            PRECONDITION_FAILED,
                            format_args!(
                                "invalid property 'non-durable' for queue '{queue}' in vhost '/'"
                            ),
                        ));
                    }
                    "quorum" if exclusive => {
                        return Err(AmqpError::channel(
                            PRECONDITION_FAILED,
                            format_args!(
                                "invalid property 'exclusive-owner' for queue '{queue}' in vhost '/'"
                            ),
                        ));
                    }
                    "quorum" => {}
                    other => {
                        return Err(invalid(
                            queue,
                            name,
                            format_args!("\"unsupported queue type '{other}'\""),
                        ));
                    }
                },
                _ => {}
            }
        }
        if policy.dead_letter_routing_key.is_some() && policy.dead_letter_exchange.is_none() {
            return Err(invalid(
                queue,
                "x-dead-letter-routing-key",
                "routing_key_but_no_dlx_defined",
            ));
        }
        Ok(policy)
    }

    /// Lenient parse for stored definitions (validated when they were declared).
    pub fn stored(queue: &str, arguments: &FieldTable) -> Self {
        Self::parse(queue, arguments, true, false).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(entries: Vec<(&str, FieldValue)>) -> FieldTable {
        FieldTable(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    #[test]
    fn parses_and_validates() {
        let s = |v: &'static str| FieldValue::LongString(Bytes::from_static(v.as_bytes()));
        let policy = QueuePolicy::parse(
            "q",
            &args(vec![
                ("x-message-ttl", FieldValue::I32(100)),
                ("x-max-length", FieldValue::I64(3)),
                ("x-overflow", s("reject-publish")),
                ("x-dead-letter-exchange", s("dlx")),
            ]),
            false,
            false,
        )
        .unwrap();
        assert_eq!(policy.message_ttl_ms, Some(100));
        assert_eq!(policy.max_length, Some(3));
        assert_eq!(policy.overflow, Overflow::RejectPublish);
        assert_eq!(policy.dead_letter_exchange.as_deref(), Some("dlx"));
        let negative = QueuePolicy::parse(
            "q",
            &args(vec![("x-max-length", FieldValue::I32(-1))]),
            false,
            false,
        );
        assert!(
            matches!(negative, Err(AmqpError::Channel(r)) if r.code == 406 && r.text.contains("value_negative"))
        );
        let wrong_type =
            QueuePolicy::parse("q", &args(vec![("x-message-ttl", s("soon"))]), false, false);
        assert!(wrong_type.is_err());
        let stream =
            QueuePolicy::parse("q", &args(vec![("x-queue-type", s("stream"))]), true, false);
        assert!(
            matches!(stream, Err(AmqpError::Channel(r)) if r.text.contains("unsupported queue type 'stream'"))
        );
        assert!(
            QueuePolicy::parse(
                "q",
                &args(vec![("x-queue-type", s("quorum"))]),
                false,
                false
            )
            .is_err()
        );
    }
}
