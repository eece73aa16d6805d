//! Queue arguments this server acts on, parsed once at declare time:
//!
//! | argument | effect |
//! |---|---|
//! | `x-message-ttl` (ms, ≥ 0) | messages expire that long after enqueue |
//! | `x-expires` (ms, > 0) | the queue is deleted after being unused that long ([`crate::lease`]) |
//! | `x-max-length` (≥ 0), `x-max-length-bytes` (≥ 0, body bytes) | ready messages kept at most; see `x-overflow` |
//! | `x-overflow` | `drop-head` (default: oldest dropped or dead-lettered, reason `maxlen`), `reject-publish` (the new message is refused and nacked), `reject-publish-dlx` (refused, nacked and dead-lettered, reason `maxlen`; a quorum queue falls back to `drop-head`, as RabbitMQ 3.10's do) |
//! | `x-dead-letter-exchange`, `x-dead-letter-routing-key` | where rejected, expired and dropped messages go |
//! | `x-single-active-consumer` (bool) | one consumer at a time receives; the next registered one takes over when it goes |
//! | `x-max-priority` (0..=255) | a priority queue: higher `priority` delivered first |
//! | `x-queue-type` | `classic`, `quorum` (a durable queue with `x-delivery-limit`) or `stream` (the topic of the same name, [`crate::handlers`] `stream`) |
//! | `x-delivery-limit` (quorum, ≥ 0) | a message requeued more often is dead-lettered (reason `delivery_limit`) or dropped |
//! | `x-max-age` (stream, `"7D"`, `"1h"`…) | the topic's time retention (`x-max-length-bytes`: its size retention) |
//!
//! As in RabbitMQ 3.10, each queue type accepts its own set of arguments: one of another type
//! is refused with `invalid arg … of queue type …`, unknown ones are ignored. Validation errors
//! carry RabbitMQ's texts. Expiry happens at the head of the queue: when a message reaches it
//! for a consumer or `basic.get`, and, with nobody consuming, when the head falls due
//! ([`crate::expiry`]).

use crate::codec::table::{FieldTable, FieldValue};
use crate::error::{AmqpError, PRECONDITION_FAILED};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    /// `reject-publish`, and the refused message is dead-lettered (reason `maxlen`).
    RejectPublishDlx,
}

impl Overflow {
    /// Whether a message that would not fit is refused (rather than the head dropped).
    pub fn rejects_publish(self) -> bool {
        matches!(self, Self::RejectPublish | Self::RejectPublishDlx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    #[default]
    Classic,
    Quorum,
    Stream,
}

impl QueueKind {
    /// RabbitMQ's module name, used in its error texts.
    fn module(self) -> &'static str {
        match self {
            Self::Classic => "rabbit_classic_queue",
            Self::Quorum => "rabbit_quorum_queue",
            Self::Stream => "rabbit_stream_queue",
        }
    }

    /// The `x-` arguments a queue of this type takes (RabbitMQ 3.10's lists).
    fn arguments(self) -> &'static [&'static str] {
        match self {
            Self::Classic => &[
                "x-expires",
                "x-message-ttl",
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-max-length",
                "x-max-length-bytes",
                "x-max-priority",
                "x-overflow",
                "x-queue-mode",
                "x-queue-version",
                "x-single-active-consumer",
                "x-queue-type",
                "x-queue-master-locator",
            ],
            Self::Quorum => &[
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-dead-letter-strategy",
                "x-expires",
                "x-max-length",
                "x-max-length-bytes",
                "x-max-in-memory-length",
                "x-max-in-memory-bytes",
                "x-overflow",
                "x-single-active-consumer",
                "x-queue-type",
                "x-quorum-initial-group-size",
                "x-delivery-limit",
                "x-message-ttl",
                "x-queue-leader-locator",
            ],
            Self::Stream => &[
                "x-max-length-bytes",
                "x-queue-type",
                "x-max-age",
                "x-stream-max-segment-size-bytes",
                "x-initial-cluster-size",
                "x-queue-leader-locator",
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePolicy {
    pub kind: QueueKind,
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub single_active_consumer: bool,
    /// Set (and ≥ 1) for a priority queue; `x-max-priority = 0` is a plain queue.
    pub max_priority: Option<u8>,
    pub delivery_limit: Option<u64>,
    /// A stream's `x-max-age`, in ms.
    pub max_age_ms: Option<u64>,
}

/// A queue as RabbitMQ names it in error texts: `queue 'q' in vhost 'v'`.
#[derive(Debug, Clone, Copy)]
pub struct QueueRef<'a> {
    pub name: &'a str,
    pub vhost: &'a str,
}

impl std::fmt::Display for QueueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "queue '{}' in vhost '{}'", self.name, self.vhost)
    }
}

fn invalid(queue: QueueRef<'_>, arg: &str, why: impl std::fmt::Display) -> AmqpError {
    AmqpError::channel(
        PRECONDITION_FAILED,
        format_args!("invalid arg '{arg}' for {queue}: {why}"),
    )
}

fn invalid_property(queue: QueueRef<'_>, property: &str) -> AmqpError {
    AmqpError::channel(
        PRECONDITION_FAILED,
        format_args!("invalid property '{property}' for {queue}"),
    )
}

fn unacceptable(queue: QueueRef<'_>, arg: &str, value: &FieldValue) -> AmqpError {
    invalid(
        queue,
        arg,
        format_args!("{{unacceptable_type,{}}}", value.type_name()),
    )
}

fn non_negative(queue: QueueRef<'_>, arg: &str, value: &FieldValue) -> Result<u64, AmqpError> {
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
fn typed_text(queue: QueueRef<'_>, arg: &str, value: &FieldValue) -> Result<String, AmqpError> {
    value.as_str().map(str::to_owned).ok_or_else(|| {
        AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!(
                "invalid type '{}' for arg '{arg}' in {queue}",
                value.type_name()
            ),
        )
    })
}

fn text(queue: QueueRef<'_>, arg: &str, value: &FieldValue) -> Result<String, AmqpError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| unacceptable(queue, arg, value))
}

/// Parses an interval such as `"7D"` or `"90s"` (units Y, M, D, h, m, s; Y = 365 days and
/// M = 30 days, as RabbitMQ counts them) into ms.
pub fn parse_interval(value: &str) -> Option<u64> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = value.split_at(split);
    let count: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    let unit_ms: u64 = match unit {
        "Y" => 365 * 86_400_000,
        "M" => 30 * 86_400_000,
        "D" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => return None,
    };
    count.checked_mul(unit_ms)
}

impl QueuePolicy {
    /// Parses and validates the arguments of `queue.declare`.
    pub fn parse(
        queue: QueueRef<'_>,
        arguments: &FieldTable,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
    ) -> Result<Self, AmqpError> {
        let kind = match arguments.get("x-queue-type") {
            None => QueueKind::Classic,
            Some(value) => match text(queue, "x-queue-type", value)?.as_str() {
                "classic" => QueueKind::Classic,
                "quorum" => QueueKind::Quorum,
                "stream" => QueueKind::Stream,
                other => {
                    return Err(invalid(
                        queue,
                        "x-queue-type",
                        format_args!("\"unsupported queue type '{other}'\""),
                    ));
                }
            },
        };
        let mut policy = Self {
            kind,
            ..Self::default()
        };
        let accepted = kind.arguments();
        for (name, value) in &arguments.0 {
            if accepted.contains(&name.as_str()) {
                policy.apply(queue, name, value)?;
            }
        }
        let foreign = [QueueKind::Classic, QueueKind::Quorum, QueueKind::Stream]
            .iter()
            .flat_map(|k| k.arguments().iter())
            .filter(|arg| !accepted.contains(arg));
        for arg in foreign {
            if arguments.get(arg).is_some() {
                return Err(AmqpError::channel(
                    PRECONDITION_FAILED,
                    format_args!(
                        "invalid arg '{arg}' for {queue} of queue type {}",
                        kind.module()
                    ),
                ));
            }
        }
        if kind != QueueKind::Classic {
            if auto_delete {
                return Err(invalid_property(queue, "auto-delete"));
            }
            if exclusive {
                return Err(invalid_property(queue, "exclusive-owner"));
            }
            if !durable {
                return Err(invalid_property(queue, "non-durable"));
            }
        }
        if kind != QueueKind::Quorum {
            policy.delivery_limit = None;
        }
        if kind == QueueKind::Quorum && policy.overflow == Overflow::RejectPublishDlx {
            // RabbitMQ 3.10's quorum queues warn and fall back to their default.
            tracing::warn!(%queue, "invalid overflow strategy reject-publish-dlx for a quorum queue; using drop-head");
            policy.overflow = Overflow::DropHead;
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

    /// Validates and records one argument the queue's type takes.
    fn apply(
        &mut self,
        queue: QueueRef<'_>,
        name: &str,
        value: &FieldValue,
    ) -> Result<(), AmqpError> {
        match name {
            "x-message-ttl" => self.message_ttl_ms = Some(non_negative(queue, name, value)?),
            "x-expires" => match non_negative(queue, name, value)? {
                0 => return Err(invalid(queue, name, "{value_zero,0}")),
                ms => self.expires_ms = Some(ms),
            },
            "x-max-length" => self.max_length = Some(non_negative(queue, name, value)?),
            "x-max-length-bytes" => self.max_length_bytes = Some(non_negative(queue, name, value)?),
            "x-max-priority" => match non_negative(queue, name, value)? {
                0 => {}
                n @ 1..=255 => self.max_priority = Some(n as u8),
                n => {
                    return Err(invalid(
                        queue,
                        name,
                        format_args!("{{max_value_exceeded,{n}}}"),
                    ));
                }
            },
            "x-delivery-limit" => self.delivery_limit = Some(non_negative(queue, name, value)?),
            "x-max-age" => {
                let age = text(queue, name, value)?;
                self.max_age_ms = Some(
                    parse_interval(&age).ok_or_else(|| invalid(queue, name, "invalid_max_age"))?,
                );
            }
            "x-overflow" => {
                self.overflow = match text(queue, name, value)?.as_str() {
                    "drop-head" => Overflow::DropHead,
                    "reject-publish" => Overflow::RejectPublish,
                    "reject-publish-dlx" => Overflow::RejectPublishDlx,
                    _ => return Err(invalid(queue, name, "invalid_overflow")),
                }
            }
            "x-dead-letter-exchange" => {
                self.dead_letter_exchange = Some(typed_text(queue, name, value)?)
            }
            "x-dead-letter-routing-key" => {
                self.dead_letter_routing_key = Some(typed_text(queue, name, value)?)
            }
            "x-single-active-consumer" => match value {
                FieldValue::Bool(on) => self.single_active_consumer = *on,
                other => return Err(unacceptable(queue, name, other)),
            },
            _ => {}
        }
        Ok(())
    }

    /// Lenient parse for stored definitions (validated when they were declared).
    pub fn stored(queue: QueueRef<'_>, arguments: &FieldTable) -> Self {
        Self::parse(queue, arguments, true, false, false).unwrap_or_default()
    }

    /// Whether the engine must count the bytes of ready messages.
    pub fn counts_bytes(&self) -> bool {
        self.max_length_bytes.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: QueueRef<'static> = QueueRef {
        name: "q",
        vhost: "/",
    };
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
            Q,
            &args(vec![
                ("x-message-ttl", FieldValue::I32(100)),
                ("x-max-length", FieldValue::I64(3)),
                ("x-overflow", s("reject-publish")),
                ("x-dead-letter-exchange", s("dlx")),
            ]),
            false,
            false,
            false,
        )
        .unwrap();
        assert_eq!(policy.message_ttl_ms, Some(100));
        assert_eq!(policy.max_length, Some(3));
        assert_eq!(policy.overflow, Overflow::RejectPublish);
        assert_eq!(policy.dead_letter_exchange.as_deref(), Some("dlx"));
        let negative = QueuePolicy::parse(
            Q,
            &args(vec![("x-max-length", FieldValue::I32(-1))]),
            false,
            false,
            false,
        );
        assert!(
            matches!(negative, Err(AmqpError::Channel(r)) if r.code == 406 && r.text.contains("value_negative"))
        );
        let parse = |entries, durable| QueuePolicy::parse(Q, &args(entries), durable, false, false);
        assert!(parse(vec![("x-message-ttl", s("soon"))], false).is_err());
        let text_of = |result: Result<QueuePolicy, AmqpError>| match result {
            Err(AmqpError::Channel(reply)) => reply.text,
            other => panic!("expected a channel error, got {other:?}"),
        };
        assert!(
            text_of(parse(vec![("x-queue-type", s("bogus"))], true))
                .ends_with("\"unsupported queue type 'bogus'\"")
        );
        assert!(
            text_of(parse(vec![("x-queue-type", s("quorum"))], false))
                .ends_with("invalid property 'non-durable' for queue 'q' in vhost '/'")
        );
        assert!(
            text_of(parse(vec![("x-max-priority", FieldValue::I32(256))], false)).ends_with(
                "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
            )
        );
        assert!(
            text_of(parse(vec![("x-expires", FieldValue::I32(0))], false))
                .ends_with("{value_zero,0}")
        );
        let quorum_priority = parse(
            vec![
                ("x-queue-type", s("quorum")),
                ("x-max-priority", FieldValue::I32(5)),
            ],
            true,
        );
        assert!(text_of(quorum_priority).ends_with(
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        ));
        let stream = parse(
            vec![("x-queue-type", s("stream")), ("x-max-age", s("7D"))],
            true,
        )
        .unwrap();
        assert_eq!(
            (stream.kind, stream.max_age_ms),
            (QueueKind::Stream, Some(7 * 86_400_000))
        );
        assert_eq!(parse_interval("30m"), Some(1_800_000));
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("5w"), None);
    }
}
