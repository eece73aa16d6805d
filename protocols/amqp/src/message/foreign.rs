//! The AMQP read form of a record no AMQP publisher wrote (docs/interop.md, "AMQP consumer"):
//! `timestamp` from the record timestamp, a `headers` table from the record headers, the key as
//! routing key (or in `x-key`).
//!
//! Invariants: reserved headers never reach the table; every other header does, with its bytes
//! unchanged (long string, or void for a null value), in order, a repeated name as one array at
//! its first place; a header whose name an AMQP field table cannot hold (over 255 bytes, or not
//! UTF-8) makes the record undeliverable: an error, counted, never a table without it.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use tributary_api::batch::Record;
use tributary_api::interop::is_reserved_header;

use crate::codec::content::BasicProperties;
use crate::codec::table::{FieldTable, FieldValue};
use crate::error::{AmqpError, INTERNAL_ERROR};

/// Longest AMQP short string (field names, routing keys).
const SHORTSTR_MAX: usize = 255;
/// The header that carries a key that cannot be the routing key.
const KEY_HEADER: &str = "x-key";
/// Above this many headers, repeated names are found through a map rather than a scan.
const SCAN_LIMIT: usize = 16;

/// The routing key and raw properties of a foreign record.
pub(super) fn read(record: &Record) -> Result<(Cow<'_, str>, Bytes), AmqpError> {
    let (routing_key, properties) = build(record, Strict::Refuse)?;
    Ok((routing_key, properties.encode()))
}

/// [`read`] leaving out the headers it would refuse.
pub(super) fn read_lenient(record: &Record) -> (Cow<'_, str>, Bytes) {
    match build(record, Strict::Skip) {
        Ok((routing_key, properties)) => (routing_key, properties.encode()),
        Err(_) => (
            Cow::Borrowed(""),
            Bytes::from_static(super::EMPTY_PROPERTIES),
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strict {
    Refuse,
    Skip,
}

fn build(record: &Record, strict: Strict) -> Result<(Cow<'_, str>, BasicProperties), AmqpError> {
    let routing_key = record
        .key
        .as_deref()
        .filter(|key| key.len() <= SHORTSTR_MAX)
        .and_then(|key| std::str::from_utf8(key).ok());
    let mut table = table_of(record, strict)?;
    if routing_key.is_none()
        && let Some(key) = &record.key
    {
        table.insert(KEY_HEADER, FieldValue::LongString(key.clone()));
    }
    let properties = BasicProperties {
        // Seconds, rounded down; AMQP has no time before the epoch.
        timestamp: u64::try_from(record.timestamp.div_euclid(1000)).ok(),
        headers: (!table.is_empty()).then_some(table),
        ..BasicProperties::default()
    };
    Ok((Cow::Borrowed(routing_key.unwrap_or_default()), properties))
}

/// The `headers` table: every header that is not reserved, repeated names grouped.
fn table_of(record: &Record, strict: Strict) -> Result<FieldTable, AmqpError> {
    let mut entries: Vec<(String, FieldValue)> = Vec::new();
    // Where each name's entry is, once there are too many headers to scan.
    let mut places: Option<HashMap<&[u8], usize>> =
        (record.headers.len() > SCAN_LIMIT).then(HashMap::new);
    for (name, value) in &record.headers {
        if is_reserved_header(name) {
            continue;
        }
        let name_text = match field_name(name) {
            Ok(text) => text,
            Err(refusal) if strict == Strict::Refuse => return Err(refusal.error(name.len())),
            Err(_) => continue,
        };
        let value = value
            .clone()
            .map_or(FieldValue::Void, FieldValue::LongString);
        let existing = match &mut places {
            Some(places) => places.get(name.as_ref()).copied(),
            None => entries.iter().position(|(n, _)| n == name_text),
        };
        match existing {
            Some(index) => match &mut entries[index].1 {
                FieldValue::Array(values) => values.push(value),
                first => {
                    let first = std::mem::replace(first, FieldValue::Void);
                    entries[index].1 = FieldValue::Array(vec![first, value]);
                }
            },
            None => {
                if let Some(places) = &mut places {
                    places.insert(name.as_ref(), entries.len());
                }
                entries.push((name_text.to_owned(), value));
            }
        }
    }
    Ok(FieldTable(entries))
}

/// Why a header name cannot be an AMQP field name.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    TooLong,
    NotUtf8,
}

impl Refusal {
    /// The delivery error, counted.
    fn error(self, len: usize) -> AmqpError {
        let (reason, detail) = match self {
            Self::TooLong => ("header_name_too_long", "longer than 255 bytes"),
            Self::NotUtf8 => ("header_name_not_utf8", "not UTF-8"),
        };
        tributary_api::interop::count_undeliverable("amqp", reason);
        tracing::warn!(
            reason,
            name_bytes = len,
            "a record cannot be delivered over AMQP: a header name is {detail}"
        );
        AmqpError::channel(
            INTERNAL_ERROR,
            format_args!(
                "a stored record cannot be delivered over AMQP: a header name of {len} bytes is {detail} (docs/interop.md)"
            ),
        )
    }
}

fn field_name(name: &[u8]) -> Result<&str, Refusal> {
    if name.len() > SHORTSTR_MAX {
        return Err(Refusal::TooLong);
    }
    std::str::from_utf8(name).map_err(|_| Refusal::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], value: Option<&[u8]>) -> (Bytes, Option<Bytes>) {
        (
            Bytes::copy_from_slice(name),
            value.map(Bytes::copy_from_slice),
        )
    }

    fn record(key: Option<&[u8]>, timestamp: i64, headers: Vec<(Bytes, Option<Bytes>)>) -> Record {
        Record {
            key: key.map(Bytes::copy_from_slice),
            value: Some(Bytes::from_static(b"v")),
            timestamp,
            headers,
        }
    }

    fn long_string(bytes: &[u8]) -> FieldValue {
        FieldValue::LongString(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn headers_become_a_table_with_duplicates_grouped_and_reserved_hidden() {
        let headers = vec![
            header(b"h", Some(b"1")),
            header(b"rmq.born_host", Some(b"1.2.3.4:5")),
            header(b"bin", Some(&[0, 1, 2, 0xff])),
            header(b"h", None),
            header(b"queue.priority", Some(&[3])),
            header(b"nil", None),
            header(b"h", Some(b"3")),
            header(b"amqp.content-type", Some(b"text/plain")),
        ];
        let stored = record(Some(b"k"), 1_700_000_000_999, headers);
        let (routing_key, properties) = build(&stored, Strict::Refuse).unwrap();
        assert_eq!(routing_key, "k");
        assert_eq!(properties.timestamp, Some(1_700_000_000));
        assert_eq!(properties.content_type, None);
        let table = properties.headers.unwrap();
        assert_eq!(
            table.0,
            vec![
                (
                    "h".to_owned(),
                    FieldValue::Array(vec![long_string(b"1"), FieldValue::Void, long_string(b"3")])
                ),
                ("bin".to_owned(), long_string(&[0, 1, 2, 0xff])),
                ("nil".to_owned(), FieldValue::Void),
                ("amqp.content-type".to_owned(), long_string(b"text/plain")),
            ]
        );
    }

    #[test]
    fn many_headers_group_like_few() {
        let headers: Vec<_> = (0..40u8)
            .map(|n| header(format!("n{}", n % 3).as_bytes(), Some(&[n])))
            .collect();
        let (_, properties) = build(&record(None, 0, headers), Strict::Refuse).unwrap();
        let table = properties.headers.unwrap();
        assert_eq!(table.0.len(), 3);
        let FieldValue::Array(values) = &table.0[0].1 else {
            panic!("not grouped: {:?}", table.0[0]);
        };
        assert_eq!(values.len(), 14);
        assert_eq!(values[1], long_string(&[3]));
    }

    #[test]
    fn keys_that_cannot_be_routing_keys_go_to_x_key() {
        let long = vec![b'k'; 256];
        let stored = record(Some(&long), 5, vec![]);
        let (routing_key, properties) = build(&stored, Strict::Refuse).unwrap();
        assert_eq!(routing_key, "");
        assert_eq!(
            properties.headers.unwrap().get("x-key"),
            Some(&long_string(&long))
        );
        let stored = record(Some(&[0xff]), 5, vec![]);
        let (routing_key, properties) = build(&stored, Strict::Refuse).unwrap();
        assert_eq!(routing_key, "");
        assert!(properties.headers.is_some());
        let stored = record(None, -1, vec![]);
        let (routing_key, properties) = build(&stored, Strict::Refuse).unwrap();
        assert_eq!(routing_key, "");
        assert_eq!(properties, BasicProperties::default());
    }

    #[test]
    fn a_name_over_255_bytes_is_refused_or_left_out() {
        let name = vec![b'n'; 256];
        let headers = vec![header(&name, Some(b"v")), header(b"ok", Some(b"1"))];
        let stored = record(None, 0, headers);
        assert!(matches!(
            build(&stored, Strict::Refuse),
            Err(AmqpError::Channel(reply)) if reply.code == INTERNAL_ERROR
        ));
        assert!(
            build(
                &record(None, 0, vec![header(&[0xff], None)]),
                Strict::Refuse
            )
            .is_err()
        );
        let max = vec![b'n'; 255];
        assert!(build(&record(None, 0, vec![header(&max, None)]), Strict::Refuse).is_ok());
        let (_, properties) = build(&stored, Strict::Skip).unwrap();
        assert_eq!(properties.headers.unwrap().0.len(), 1);
    }
}
