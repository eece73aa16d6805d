//! How an AMQP message is stored as a RecordBatch v2 record (ARCHITECTURE §5), and read back.
//!
//! | record field | content |
//! |---|---|
//! | key | the routing key the message was published with (UTF-8) |
//! | value | the body, byte for byte |
//! | timestamp | the `timestamp` property × 1000 when set (AMQP has seconds), else broker time (ms) |
//! | header `amqp.exchange` | the exchange it was published to (`""` = default exchange) |
//! | header `amqp.props` | the raw content-header properties: u16 flags + property list, as received |
//!
//! | header `queue.priority` | in a priority queue only: the message's priority, clamped to the queue's `x-max-priority` |
//!
//! An AMQP reader replays `amqp.props` unchanged, so a consumer sees exactly the properties the
//! publisher sent. A record written by another protocol has no `amqp.*` headers: it is delivered
//! with empty properties, exchange `""` and its key as the routing key.

use std::borrow::Cow;

use bytes::Bytes;
use tributary_api::batch::Record;
use tributary_api::queue::PRIORITY_HEADER;

use crate::codec::content::BasicProperties;
use crate::codec::table::{FieldTable, FieldValue};

pub const HEADER_EXCHANGE: &[u8] = b"amqp.exchange";
pub const HEADER_PROPERTIES: &[u8] = b"amqp.props";

/// Property bytes for "no properties" (flags 0).
pub const EMPTY_PROPERTIES: &[u8] = &[0, 0];

/// A message as AMQP delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub exchange: String,
    pub routing_key: String,
    pub raw_properties: Bytes,
    pub body: Bytes,
}

/// Builds the record for a published message.
pub fn to_record(
    exchange: &str,
    routing_key: &str,
    raw_properties: Bytes,
    properties: &BasicProperties,
    body: Bytes,
    now_ms: i64,
) -> Record {
    let timestamp = properties
        .timestamp
        .and_then(|seconds| i64::try_from(seconds).ok())
        .and_then(|seconds| seconds.checked_mul(1000))
        .unwrap_or(now_ms);
    Record {
        key: Some(Bytes::copy_from_slice(routing_key.as_bytes())),
        value: Some(body),
        timestamp,
        headers: vec![
            (
                Bytes::from_static(HEADER_EXCHANGE),
                Some(Bytes::copy_from_slice(exchange.as_bytes())),
            ),
            (Bytes::from_static(HEADER_PROPERTIES), Some(raw_properties)),
        ],
    }
}

/// A stored record read as an AMQP message, borrowing from the record (the delivery path:
/// names are copied only when they are not valid UTF-8).
#[derive(Debug)]
pub struct MessageView<'a> {
    pub exchange: Cow<'a, str>,
    pub routing_key: Cow<'a, str>,
    pub raw_properties: Bytes,
    pub body: &'a [u8],
}

/// Reads a stored record as an AMQP message without copying it.
pub fn view_record(record: &Record) -> MessageView<'_> {
    let header = |name: &[u8]| {
        record
            .headers
            .iter()
            .find(|(key, _)| key.as_ref() == name)
            .and_then(|(_, value)| value.as_ref())
    };
    let raw_properties = header(HEADER_PROPERTIES)
        .filter(|raw| BasicProperties::parse(raw).is_ok())
        .cloned()
        .unwrap_or_else(|| Bytes::from_static(EMPTY_PROPERTIES));
    MessageView {
        exchange: lossy_text(header(HEADER_EXCHANGE)),
        routing_key: lossy_text(record.key.as_ref()),
        raw_properties,
        body: record.value.as_deref().unwrap_or_default(),
    }
}

fn lossy_text(bytes: Option<&Bytes>) -> Cow<'_, str> {
    bytes.map_or(Cow::Borrowed(""), |b| String::from_utf8_lossy(b))
}

/// Reads a stored record back as an AMQP message.
pub fn from_record(record: &Record) -> StoredMessage {
    let view = view_record(record);
    StoredMessage {
        exchange: view.exchange.into_owned(),
        routing_key: view.routing_key.into_owned(),
        raw_properties: view.raw_properties,
        body: record.value.clone().unwrap_or_default(),
    }
}

/// Sets a priority queue's priority header (replacing one a dead-lettered record carried).
pub fn set_priority(record: &mut Record, priority: u8) {
    record
        .headers
        .retain(|(key, _)| key.as_ref() != PRIORITY_HEADER);
    record.headers.push((
        Bytes::from_static(PRIORITY_HEADER),
        Some(Bytes::copy_from_slice(&[priority])),
    ));
}

/// The raw properties with one header set (added, or replaced in place), re-encoded; the raw
/// bytes unchanged if they do not parse.
pub fn with_header(raw_properties: &Bytes, name: &str, value: FieldValue) -> Bytes {
    let Ok(mut properties) = BasicProperties::parse(raw_properties) else {
        return raw_properties.clone();
    };
    let headers = properties.headers.get_or_insert_with(FieldTable::default);
    match headers.0.iter_mut().find(|(key, _)| key == name) {
        Some((_, old)) => *old = value,
        None => headers.insert(name, value),
    }
    properties.encode()
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_keeps_raw_properties() {
        // flags: content-type (bit 15) + delivery-mode (bit 12), then "text/plain" and 2.
        let mut raw = vec![0x90, 0x00, 10];
        raw.extend_from_slice(b"text/plain");
        raw.push(2);
        let raw = Bytes::from(raw);
        let props = BasicProperties::parse(&raw).unwrap();
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert!(props.persistent());
        let record = to_record(
            "ex",
            "rk",
            raw.clone(),
            &props,
            Bytes::from_static(b"hi"),
            42,
        );
        assert_eq!(record.timestamp, 42);
        let back = from_record(&record);
        assert_eq!(back.exchange, "ex");
        assert_eq!(back.routing_key, "rk");
        assert_eq!(back.raw_properties, raw);
        assert_eq!(back.body, Bytes::from_static(b"hi"));
    }

    #[test]
    fn a_header_is_added_or_replaced() {
        let raw = Bytes::from_static(EMPTY_PROPERTIES);
        let once = with_header(&raw, "x-delivery-count", FieldValue::I64(1));
        let twice = with_header(&once, "x-delivery-count", FieldValue::I64(2));
        let headers = BasicProperties::parse(&twice).unwrap().headers.unwrap();
        assert_eq!(headers.0.len(), 1);
        assert_eq!(headers.get("x-delivery-count"), Some(&FieldValue::I64(2)));
    }

    #[test]
    fn foreign_records_get_empty_properties() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            timestamp: 1,
            headers: vec![],
        };
        let back = from_record(&record);
        assert_eq!(back.raw_properties.as_ref(), EMPTY_PROPERTIES);
        assert_eq!(back.routing_key, "k");
    }
}
