//! How an AMQP message is stored as a RecordBatch v2 record and read back: the AMQP columns of
//! docs/interop.md ("Stored form, per writer" and "Read form, per reader"), the one place the
//! mapping is decided. [`headers`] writes a message's properties as record headers, [`foreign`]
//! builds the properties of a record no AMQP publisher wrote.
//!
//! Invariants: an AMQP-written record keeps its raw content-header properties, as received, in
//! reserved header `amqp.props` and its exchange in `amqp.exchange`, and an AMQP reader replays
//! them unchanged; an empty routing key is stored as no key; the record timestamp is the
//! `timestamp` property × 1000 when set, else the broker's time; a record that cannot be read
//! as AMQP (see [`foreign`]) is an error, never a partial delivery.

mod foreign;
mod headers;

use std::borrow::Cow;

use bytes::Bytes;
use tributary_api::batch::Record;
use tributary_api::queue::PRIORITY_HEADER;

use crate::codec::content::BasicProperties;
use crate::codec::table::{FieldTable, FieldValue};
use crate::error::AmqpError;

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

/// Builds the record for a published message (docs/interop.md, "AMQP publisher").
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
    // Sized exactly, so a message without properties costs what it did before the mapping.
    let mut record_headers = Vec::with_capacity(2 + headers::count(properties));
    headers::push(properties, &mut record_headers);
    record_headers.push((
        Bytes::from_static(HEADER_EXCHANGE),
        Some(Bytes::copy_from_slice(exchange.as_bytes())),
    ));
    record_headers.push((Bytes::from_static(HEADER_PROPERTIES), Some(raw_properties)));
    Record {
        key: key_of(routing_key),
        value: Some(body),
        timestamp,
        headers: record_headers,
    }
}

/// The record key for a routing key: an empty routing key is no key.
pub fn key_of(routing_key: &str) -> Option<Bytes> {
    (!routing_key.is_empty()).then(|| Bytes::copy_from_slice(routing_key.as_bytes()))
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

/// Reads a stored record as an AMQP message. A record an AMQP publisher wrote replays its
/// properties without copying them; any other gets the read form of docs/interop.md, or an
/// error (counted) when it cannot be delivered over AMQP.
pub fn view_record(record: &Record) -> Result<MessageView<'_>, AmqpError> {
    let header = |name: &[u8]| {
        record
            .headers
            .iter()
            .find(|(key, _)| key.as_ref() == name)
            .and_then(|(_, value)| value.as_ref())
    };
    let body = record.value.as_deref().unwrap_or_default();
    let Some(raw) = header(HEADER_PROPERTIES) else {
        let (routing_key, raw_properties) = foreign::read(record)?;
        return Ok(MessageView {
            exchange: Cow::Borrowed(""),
            routing_key,
            raw_properties,
            body,
        });
    };
    let raw_properties = if BasicProperties::parse(raw).is_ok() {
        raw.clone()
    } else {
        Bytes::from_static(EMPTY_PROPERTIES)
    };
    Ok(MessageView {
        exchange: lossy_text(header(HEADER_EXCHANGE)),
        routing_key: lossy_text(record.key.as_ref()),
        raw_properties,
        body,
    })
}

fn lossy_text(bytes: Option<&Bytes>) -> Cow<'_, str> {
    bytes.map_or(Cow::Borrowed(""), |b| String::from_utf8_lossy(b))
}

/// Reads a stored record back as an AMQP message (errors as [`view_record`]).
pub fn from_record(record: &Record) -> Result<StoredMessage, AmqpError> {
    let view = view_record(record)?;
    Ok(StoredMessage {
        exchange: view.exchange.into_owned(),
        routing_key: view.routing_key.into_owned(),
        raw_properties: view.raw_properties,
        body: record.value.clone().unwrap_or_default(),
    })
}

/// [`from_record`] for a server-side copy that must be made whatever the record holds
/// (dead-lettering): a header AMQP cannot carry is left out of the copy's properties. It stays
/// in the record itself, which the copy keeps, so Kafka and RocketMQ readers still see it.
pub fn from_record_lenient(record: &Record) -> StoredMessage {
    from_record(record).unwrap_or_else(|_| {
        let (routing_key, raw_properties) = foreign::read_lenient(record);
        StoredMessage {
            exchange: String::new(),
            routing_key: routing_key.into_owned(),
            raw_properties,
            body: record.value.clone().unwrap_or_default(),
        }
    })
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
        let back = from_record(&record).unwrap();
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
    fn foreign_records_without_headers_get_only_a_timestamp() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            timestamp: 1_500,
            headers: vec![],
        };
        let back = from_record(&record).unwrap();
        let properties = BasicProperties::parse(&back.raw_properties).unwrap();
        assert_eq!(
            properties,
            BasicProperties {
                timestamp: Some(1),
                ..BasicProperties::default()
            }
        );
        assert_eq!(back.routing_key, "k");
        assert_eq!(back.exchange, "");
    }

    #[test]
    fn an_empty_routing_key_is_no_key_and_properties_become_headers() {
        let mut table = FieldTable::default();
        table.insert("n", FieldValue::I32(7));
        let properties = BasicProperties {
            headers: Some(table),
            message_id: Some("m-1".into()),
            timestamp: Some(1_700_000_000),
            ..BasicProperties::default()
        };
        let raw = properties.encode();
        let record = to_record("", "", raw.clone(), &properties, Bytes::new(), 5);
        assert_eq!(record.key, None);
        assert_eq!(record.timestamp, 1_700_000_000_000);
        let names: Vec<&[u8]> = record.headers.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(
            names,
            [
                &b"n"[..],
                b"amqp.message-id",
                HEADER_EXCHANGE,
                HEADER_PROPERTIES
            ]
        );
        assert_eq!(record.headers[0].1.as_deref(), Some(&b"7"[..]));
        // An AMQP reader still gets exactly what was published.
        let back = from_record(&record).unwrap();
        assert_eq!(back.raw_properties, raw);
        assert_eq!(back.routing_key, "");
    }

    mod mapping {
        use proptest::prelude::*;

        use super::*;

        /// A scalar table value and the long string an AMQP reader of the record gets back.
        fn scalar() -> impl Strategy<Value = (FieldValue, Option<Vec<u8>>)> {
            prop_oneof![
                any::<bool>().prop_map(|v| (FieldValue::Bool(v), Some(v.to_string().into_bytes()))),
                any::<i8>().prop_map(|v| (FieldValue::I8(v), Some(v.to_string().into_bytes()))),
                any::<u16>().prop_map(|v| (FieldValue::U16(v), Some(v.to_string().into_bytes()))),
                any::<i32>().prop_map(|v| (FieldValue::I32(v), Some(v.to_string().into_bytes()))),
                any::<i64>().prop_map(|v| (FieldValue::I64(v), Some(v.to_string().into_bytes()))),
                any::<u64>()
                    .prop_map(|v| (FieldValue::Timestamp(v), Some(v.to_string().into_bytes()))),
                any::<f64>().prop_map(|v| (FieldValue::F64(v), Some(v.to_string().into_bytes()))),
                proptest::collection::vec(any::<u8>(), 0..16)
                    .prop_map(|v| (FieldValue::LongString(Bytes::from(v.clone())), Some(v))),
                proptest::collection::vec(any::<u8>(), 0..16)
                    .prop_map(|v| (FieldValue::ByteArray(Bytes::from(v.clone())), Some(v))),
                Just((FieldValue::Void, None)),
            ]
        }

        fn read_back(expected: Option<Vec<u8>>) -> FieldValue {
            expected.map_or(FieldValue::Void, |v| FieldValue::LongString(Bytes::from(v)))
        }

        proptest! {
            /// AMQP table -> record headers -> AMQP reader of a record without `amqp.props`
            /// (as a Kafka consumer would copy it): every entry comes back under its name as
            /// the documented text in a long string (void stays void, arrays stay arrays of
            /// the elements' text), and the record's float texts read back to the same value.
            #[test]
            fn table_entries_read_back_as_their_text(
                entries in proptest::collection::vec(
                    ("[a-z]{1,8}", proptest::collection::vec(scalar(), 1..4), any::<bool>()),
                    0..8,
                ),
                message_id in proptest::option::of("[ -~]{0,20}"),
                seconds in proptest::option::of(0u64..4_000_000_000),
            ) {
                let mut names = std::collections::HashSet::new();
                let entries: Vec<_> = entries
                    .into_iter()
                    .filter(|(name, _, _)| names.insert(name.clone()))
                    .collect();
                let mut table = FieldTable::default();
                let mut expected = FieldTable::default();
                for (name, values, as_array) in &entries {
                    if *as_array && values.len() > 1 {
                        table.insert(name, FieldValue::Array(values.iter().map(|(v, _)| v.clone()).collect()));
                        expected.insert(name, FieldValue::Array(values.iter().map(|(_, e)| read_back(e.clone())).collect()));
                    } else {
                        table.insert(name, values[0].0.clone());
                        expected.insert(name, read_back(values[0].1.clone()));
                    }
                }
                let properties = BasicProperties {
                    headers: Some(table),
                    message_id: message_id.clone(),
                    timestamp: seconds,
                    ..BasicProperties::default()
                };
                let raw = properties.encode();
                let mut record = to_record("ex", "rk", raw, &properties, Bytes::new(), 7_000);
                record.headers.retain(|(name, _)| !tributary_api::interop::is_reserved_header(name));
                let read = from_record(&record).unwrap();
                prop_assert_eq!(&read.routing_key, "rk");
                prop_assert_eq!(&read.exchange, "");
                let parsed = BasicProperties::parse(&read.raw_properties).unwrap();
                prop_assert_eq!(parsed.timestamp, Some(seconds.unwrap_or(7)));
                if let Some(id) = &message_id {
                    expected.insert("amqp.message-id", FieldValue::LongString(Bytes::from(id.clone())));
                }
                let got = parsed.headers.unwrap_or_default();
                prop_assert_eq!(&got, &expected);
                for (name, values, _) in &entries {
                    if let (FieldValue::F64(sent), Some(FieldValue::LongString(text))) = (&values[0].0, got.get(name)) {
                        let back: f64 = std::str::from_utf8(text).unwrap().parse().unwrap();
                        prop_assert!(back == *sent || (back.is_nan() && sent.is_nan()));
                    }
                }
            }
        }
    }
}
