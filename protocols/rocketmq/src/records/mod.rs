//! How a RocketMQ message is stored as an engine record, and read back: the RocketMQ columns
//! of docs/interop.md ("Stored form, per writer" and "Read form, per reader"), the one place
//! the mapping is decided; [`properties`] holds the property rules of the read form.
//!
//! Invariants: the record timestamp is the born timestamp and the broker's store time is in
//! reserved `rmq.store_ts`; the key is the `KEYS` property as sent; every property is a header,
//! in send order; born host, flag, sysFlag and reconsume times are reserved `rmq.*` headers.
//! Records stored before this layout (timestamp = store time, born time in `rmq.born_ts`) read
//! the same. A reader never shows a reserved header as a property, and a message whose
//! properties do not fit RocketMQ's 32,767 bytes is an error, never a cut.
//!
//! A message's physical offset (the 8-byte locator inside offset message ids) is described in
//! [`crate::topic_ids`].

pub mod properties;

use std::net::SocketAddr;

use bytes::Bytes;
use tributary_api::Record;
use tributary_api::interop::{count_escaped_properties, count_undeliverable, is_reserved_header};

use crate::codec::message::format_properties_into;
use crate::error::{RequestError, RequestResult};
use properties::{PROPERTY_KEYS, for_each_property, stored_property};

/// Prefix of the RocketMQ reserved headers.
const RESERVED_PREFIX: &str = "rmq.";
/// Born time when the record timestamp is the store time (older records, and
/// [`IncomingMessage::to_record_at_store_time`]).
const BORN_TS: &str = "rmq.born_ts";
const STORE_TS: &str = "rmq.store_ts";
const BORN_HOST: &str = "rmq.born_host";
const FLAG: &str = "rmq.flag";
const SYS_FLAG: &str = "rmq.sysflag";
const RECONSUME: &str = "rmq.reconsume";
/// RocketMQ's limit on a message's encoded properties (a Java short).
pub const MAX_PROPERTIES_BYTES: usize = i16::MAX as usize;

/// A message as a producer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub body: Bytes,
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub properties: Vec<(String, String)>,
}

impl IncomingMessage {
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first property whose name is a reserved header name; such a message is refused
    /// (its property would be taken for broker data by some reader).
    pub fn reserved_property(&self) -> Option<&str> {
        self.properties
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| is_reserved_header(name.as_bytes()))
    }

    /// The engine record for this message, stored at `store_timestamp`.
    pub fn to_record(&self, store_timestamp: i64) -> Record {
        let mut headers: Vec<(Bytes, Option<Bytes>)> =
            Vec::with_capacity(self.properties.len() + 5);
        headers.extend(
            self.properties
                .iter()
                // Refused at send; copies made by the broker never carry one.
                .filter(|(name, _)| !is_reserved_header(name.as_bytes()))
                .map(|(name, value)| {
                    (
                        Bytes::copy_from_slice(name.as_bytes()),
                        Some(Bytes::copy_from_slice(value.as_bytes())),
                    )
                }),
        );
        let mut reserved = |name: &'static str, value: String| {
            headers.push((
                Bytes::from_static(name.as_bytes()),
                Some(Bytes::from(value)),
            ));
        };
        reserved(STORE_TS, store_timestamp.to_string());
        reserved(BORN_HOST, self.born_host.to_string());
        if self.flag != 0 {
            reserved(FLAG, self.flag.to_string());
        }
        if self.sys_flag != 0 {
            reserved(SYS_FLAG, self.sys_flag.to_string());
        }
        if self.reconsume_times != 0 {
            reserved(RECONSUME, self.reconsume_times.to_string());
        }
        Record {
            key: self
                .property(PROPERTY_KEYS)
                .map(|keys| Bytes::copy_from_slice(keys.as_bytes())),
            value: Some(self.body.clone()),
            timestamp: self.born_timestamp,
            headers,
        }
    }

    /// The record for a message that becomes visible long after it was born (a delayed
    /// message or retry when due, a committed transaction): timestamp = store time, born time
    /// in `rmq.born_ts` (the layout of older records), so that time searches find it where it
    /// lands in the queue (docs/interop.md, "What does not cross").
    pub fn to_record_at_store_time(&self, store_timestamp: i64) -> Record {
        let mut record = self.to_record(store_timestamp);
        record.timestamp = store_timestamp;
        record.headers.push((
            Bytes::from_static(BORN_TS.as_bytes()),
            Some(Bytes::from(self.born_timestamp.to_string())),
        ));
        record
    }
}

/// The per-message fields of the stored format that come from reserved headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta {
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    /// `None` when the record came from another protocol (use the store host).
    pub born_host: Option<SocketAddr>,
    pub store_timestamp: i64,
    pub reconsume_times: i32,
}

impl MessageMeta {
    /// Born time = the record timestamp (or `rmq.born_ts` of the old layout), store time =
    /// `rmq.store_ts` or the record timestamp; the rest from their reserved headers, else 0.
    pub fn of(record: &Record) -> Self {
        let mut meta = Self {
            flag: 0,
            sys_flag: 0,
            born_timestamp: record.timestamp,
            born_host: None,
            store_timestamp: record.timestamp,
            reconsume_times: 0,
        };
        // Only reserved headers are read here, so only they are checked for UTF-8.
        let reserved = record
            .headers
            .iter()
            .filter(|(name, _)| name.starts_with(RESERVED_PREFIX.as_bytes()))
            .filter_map(|(name, value)| {
                Some((
                    std::str::from_utf8(name).ok()?,
                    std::str::from_utf8(value.as_deref()?).ok()?,
                ))
            });
        for (name, value) in reserved {
            match name {
                BORN_TS => meta.born_timestamp = value.parse().unwrap_or(record.timestamp),
                STORE_TS => meta.store_timestamp = value.parse().unwrap_or(record.timestamp),
                BORN_HOST => meta.born_host = value.parse().ok(),
                FLAG => meta.flag = value.parse().unwrap_or(0),
                SYS_FLAG => meta.sys_flag = value.parse().unwrap_or(0),
                RECONSUME => meta.reconsume_times = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        meta
    }
}

/// A stored record read as a RocketMQ message without copying (the pull path).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    record: &'a Record,
    pub meta: MessageMeta,
}

impl<'a> MessageView<'a> {
    pub fn of(record: &'a Record) -> Self {
        Self {
            record,
            meta: MessageMeta::of(record),
        }
    }

    pub fn body(&self) -> &'a [u8] {
        self.record.value.as_deref().unwrap_or_default()
    }

    /// The stored value of a property, unescaped (what tag and SQL92 filters match).
    pub fn property(&self, name: &str) -> Option<&'a str> {
        stored_property(self.record, name)
    }

    /// Replaces `out` with the properties in the wire form; an error (counted) when they are
    /// longer than RocketMQ allows.
    pub fn write_properties(&self, out: &mut String) -> RequestResult<()> {
        out.clear();
        let escaped = for_each_property(self.record, |name, value| {
            format_properties_into(out, [(name, value)]);
        });
        count_escaped_properties(escaped);
        check_properties_len(out.len())
    }
}

/// Refuses properties RocketMQ cannot carry (counted as undeliverable).
pub fn check_properties_len(len: usize) -> RequestResult<()> {
    if len <= MAX_PROPERTIES_BYTES {
        return Ok(());
    }
    count_undeliverable("rocketmq", "properties_too_long");
    tracing::warn!(
        bytes = len,
        "a stored message cannot be delivered over RocketMQ: its properties are too long"
    );
    Err(RequestError::Undeliverable(format!(
        "the message's properties take {len} bytes, more than RocketMQ's {MAX_PROPERTIES_BYTES}"
    )))
}

/// A stored record read back as a RocketMQ message, owned: the properties as a RocketMQ
/// consumer sees them (escaped, repeated names suffixed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: Bytes,
    pub meta: MessageMeta,
    pub properties: Vec<(String, String)>,
    /// How many names and values of `properties` are escapes (counted when delivered).
    pub escaped: u64,
}

impl OutgoingMessage {
    pub fn from_record(record: &Record) -> Self {
        let mut properties = Vec::with_capacity(record.headers.len());
        let escaped = for_each_property(record, |name, value| {
            properties.push((name.to_owned(), value.to_owned()));
        });
        Self {
            body: record.value.clone().unwrap_or_default(),
            meta: MessageMeta::of(record),
            properties,
            escaped,
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn tag(&self) -> Option<&str> {
        self.property("TAGS")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::message::{format_properties, parse_properties};

    fn incoming(properties: Vec<(String, String)>) -> IncomingMessage {
        IncomingMessage {
            body: Bytes::from_static(b"body"),
            flag: 3,
            sys_flag: 1,
            born_timestamp: 1_700_000_000_000,
            born_host: "[::1]:5555".parse().unwrap(),
            reconsume_times: 2,
            properties,
        }
    }

    fn text_pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn messages_round_trip_through_records() {
        let incoming = incoming(text_pairs(&[
            ("TAGS", "TagA"),
            ("KEYS", "k1 k2"),
            ("UNIQ_KEY", "ABC"),
            ("user", "v"),
        ]));
        let record = incoming.to_record(1_700_000_000_042);
        assert_eq!(record.key.as_deref(), Some(&b"k1 k2"[..]));
        assert_eq!(record.timestamp, incoming.born_timestamp);
        assert!(
            !record
                .headers
                .iter()
                .any(|(n, _)| n.as_ref() == b"rmq.born_ts")
        );
        let outgoing = OutgoingMessage::from_record(&record);
        assert_eq!(outgoing.body, incoming.body);
        assert_eq!(outgoing.meta.flag, 3);
        assert_eq!(outgoing.meta.sys_flag, 1);
        assert_eq!(outgoing.meta.reconsume_times, 2);
        assert_eq!(outgoing.meta.born_timestamp, incoming.born_timestamp);
        assert_eq!(outgoing.meta.born_host, Some(incoming.born_host));
        assert_eq!(outgoing.meta.store_timestamp, 1_700_000_000_042);
        assert_eq!(outgoing.tag(), Some("TagA"));
        assert_eq!(outgoing.properties, incoming.properties);
        assert_eq!(outgoing.escaped, 0);
        let view = MessageView::of(&record);
        assert_eq!(view.meta, outgoing.meta);
        assert_eq!(view.body(), b"body");
        assert_eq!(view.property("user"), Some("v"));
        assert_eq!(view.property("rmq.store_ts"), None);
        let mut wire = String::new();
        view.write_properties(&mut wire).unwrap();
        assert_eq!(parse_properties(&wire), incoming.properties);
    }

    #[test]
    fn reserved_property_names_are_found() {
        let ok = incoming(text_pairs(&[("TAGS", "a"), ("rmqx", "b")]));
        assert_eq!(ok.reserved_property(), None);
        let bad = incoming(text_pairs(&[("TAGS", "a"), ("rmq.flag", "9")]));
        assert_eq!(bad.reserved_property(), Some("rmq.flag"));
        let bad = incoming(text_pairs(&[("amqp.props", "x")]));
        assert_eq!(bad.reserved_property(), Some("amqp.props"));
    }

    #[test]
    fn records_of_the_old_layout_and_late_records_read_alike() {
        let message = incoming(text_pairs(&[("TAGS", "T")]));
        // Stored before this layout: timestamp = store time, born time in rmq.born_ts.
        let old = Record {
            key: None,
            value: Some(message.body.clone()),
            timestamp: 1_700_000_000_500,
            headers: vec![
                (Bytes::from_static(b"TAGS"), Some(Bytes::from_static(b"T"))),
                (
                    Bytes::from_static(b"rmq.born_ts"),
                    Some(Bytes::from_static(b"1700000000000")),
                ),
                (
                    Bytes::from_static(b"rmq.born_host"),
                    Some(Bytes::from_static(b"[::1]:5555")),
                ),
                (
                    Bytes::from_static(b"rmq.flag"),
                    Some(Bytes::from_static(b"3")),
                ),
                (
                    Bytes::from_static(b"rmq.sysflag"),
                    Some(Bytes::from_static(b"1")),
                ),
                (
                    Bytes::from_static(b"rmq.reconsume"),
                    Some(Bytes::from_static(b"2")),
                ),
            ],
        };
        let late = message.to_record_at_store_time(1_700_000_000_500);
        assert_eq!(late.timestamp, 1_700_000_000_500);
        for record in [&old, &late] {
            let read = OutgoingMessage::from_record(record);
            assert_eq!(read.meta.born_timestamp, 1_700_000_000_000);
            assert_eq!(read.meta.store_timestamp, 1_700_000_000_500);
            assert_eq!(read.meta.born_host, Some(message.born_host));
            assert_eq!((read.meta.flag, read.meta.sys_flag), (3, 1));
            assert_eq!(read.meta.reconsume_times, 2);
            assert_eq!(read.properties, message.properties);
        }
    }

    #[test]
    fn foreign_records_read_with_defaults() {
        let record = Record {
            key: Some(Bytes::from_static(b"kafka-key")),
            value: None,
            timestamp: 7,
            headers: vec![
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"v"))),
                (
                    Bytes::from_static(b"amqp.props"),
                    Some(Bytes::from_static(&[0, 0])),
                ),
                (Bytes::from_static(b"amqp.exchange"), Some(Bytes::new())),
                (
                    Bytes::from_static(b"queue.priority"),
                    Some(Bytes::from_static(&[1])),
                ),
                (
                    Bytes::from_static(b"amqp.content-type"),
                    Some(Bytes::from_static(b"t/p")),
                ),
            ],
        };
        let message = OutgoingMessage::from_record(&record);
        assert_eq!(message.meta.born_timestamp, 7);
        assert_eq!(message.meta.store_timestamp, 7);
        assert_eq!(message.meta.born_host, None);
        assert_eq!((message.meta.flag, message.meta.reconsume_times), (0, 0));
        assert_eq!(
            message.properties,
            text_pairs(&[
                ("h", "v"),
                ("amqp.content-type", "t/p"),
                ("KEYS", "kafka-key")
            ])
        );
        assert!(message.body.is_empty());
    }

    #[test]
    fn properties_over_the_limit_are_refused() {
        let fits = "x".repeat(MAX_PROPERTIES_BYTES - 3);
        let record = Record {
            key: None,
            value: None,
            timestamp: 0,
            headers: vec![(Bytes::from_static(b"a"), Some(Bytes::from(fits)))],
        };
        let mut wire = String::new();
        MessageView::of(&record)
            .write_properties(&mut wire)
            .unwrap();
        assert_eq!(wire.len(), MAX_PROPERTIES_BYTES);
        let mut over = record.clone();
        over.headers[0].0 = Bytes::from_static(b"ab");
        let refused = MessageView::of(&over).write_properties(&mut wire);
        assert!(matches!(refused, Err(RequestError::Undeliverable(_))));
        assert_eq!(
            refused.unwrap_err().response_code(),
            crate::error::code::SYSTEM_ERROR
        );
    }

    /// Property names and values a RocketMQ producer sends: no separators, not empty, not
    /// an escape.
    fn property_text() -> impl Strategy<Value = String> {
        "[^\\x00-\\x02]{1,12}".prop_filter("not an escape", |text| {
            !text.starts_with(properties::ESCAPE_PREFIX) && text != properties::ESCAPED_NULL
        })
    }

    proptest! {
        #[test]
        fn a_rocketmq_message_reads_back_identical(
            properties in proptest::collection::vec((property_text(), property_text()), 0..8),
            born in 0i64..4_000_000_000_000,
            store_delta in 0i64..100_000,
            flag in any::<i32>(),
            reconsume in 0i32..20,
        ) {
            // RocketMQ clients keep properties in a map: names are unique.
            let mut unique = properties;
            let mut seen = std::collections::HashSet::new();
            unique.retain(|(name, _)| seen.insert(name.clone()));
            let wire = format_properties(unique.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let mut message = incoming(parse_properties(&wire));
            message.born_timestamp = born;
            message.flag = flag;
            message.reconsume_times = reconsume;
            let record = message.to_record(born + store_delta);
            let view = MessageView::of(&record);
            let mut again = String::new();
            view.write_properties(&mut again).unwrap();
            prop_assert_eq!(&again, &wire);
            let read = OutgoingMessage::from_record(&record);
            prop_assert_eq!(read.properties, message.properties);
            prop_assert_eq!(read.meta.born_timestamp, born);
            prop_assert_eq!(read.meta.store_timestamp, born + store_delta);
            prop_assert_eq!(read.meta.flag, flag);
            prop_assert_eq!(read.meta.reconsume_times, reconsume);
            prop_assert_eq!(read.meta.born_host, Some(message.born_host));
        }
    }
}
