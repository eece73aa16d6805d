//! How a RocketMQ message is stored as an engine record, and read back.
//!
//! | record part | holds |
//! |---|---|
//! | value | the message body, verbatim (still zlib-compressed when sysFlag bit 0 is set) |
//! | key | the `KEYS` property when present (so Kafka readers see the business key) |
//! | timestamp | the broker's store time (ms); SEARCH_OFFSET_BY_TIMESTAMP searches it |
//! | headers | every message property as `name -> value`, in send order (`TAGS`, `KEYS`, `UNIQ_KEY`, user properties, ...) |
//! | header `rmq.born_ts` | the producer's born timestamp, decimal |
//! | header `rmq.born_host` | the producer's address as `ip:port` |
//! | header `rmq.flag` | the user flag, decimal, only when non-zero |
//! | header `rmq.sysflag` | the sysFlag (compression, multi-tags), decimal, only when non-zero |
//! | header `rmq.reconsume` | reconsume times, decimal, only when non-zero |
//!
//! Headers whose names start with `rmq.` are reserved for this table and are not properties.
//! Records written by other protocols read back with their headers as properties (UTF-8 ones),
//! born time = store time and born host = store host.
//!
//! A message's physical offset (the 8-byte locator inside offset message ids) is described in
//! [`crate::topic_ids`].

use std::net::SocketAddr;

use bytes::Bytes;
use tributary_api::Record;

/// Prefix of the reserved headers.
const RESERVED_PREFIX: &str = "rmq.";
const BORN_TS: &str = "rmq.born_ts";
const BORN_HOST: &str = "rmq.born_host";
const FLAG: &str = "rmq.flag";
const SYS_FLAG: &str = "rmq.sysflag";
const RECONSUME: &str = "rmq.reconsume";

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

    /// The engine record for this message, stored at `store_timestamp`.
    pub fn to_record(&self, store_timestamp: i64) -> Record {
        let mut headers: Vec<(Bytes, Option<Bytes>)> = self
            .properties
            .iter()
            .filter(|(name, _)| !name.starts_with(RESERVED_PREFIX))
            .map(|(name, value)| (Bytes::from(name.clone()), Some(Bytes::from(value.clone()))))
            .collect();
        let mut reserved = |name: &'static str, value: String| {
            headers.push((
                Bytes::from_static(name.as_bytes()),
                Some(Bytes::from(value)),
            ));
        };
        reserved(BORN_TS, self.born_timestamp.to_string());
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
                .property("KEYS")
                .map(|keys| Bytes::from(keys.to_owned())),
            value: Some(self.body.clone()),
            timestamp: store_timestamp,
            headers,
        }
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

/// A stored record read as a RocketMQ message without copying (the pull path).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    record: &'a Record,
    pub meta: MessageMeta,
}

/// A header as a property name and value, when both are UTF-8.
fn text_header(header: &(Bytes, Option<Bytes>)) -> Option<(&str, &str)> {
    let (name, value) = header;
    Some((
        std::str::from_utf8(name).ok()?,
        std::str::from_utf8(value.as_deref()?).ok()?,
    ))
}

impl<'a> MessageView<'a> {
    pub fn of(record: &'a Record) -> Self {
        let mut meta = MessageMeta {
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
            .filter_map(text_header);
        for (name, value) in reserved {
            match name {
                BORN_TS => meta.born_timestamp = value.parse().unwrap_or(record.timestamp),
                BORN_HOST => meta.born_host = value.parse().ok(),
                FLAG => meta.flag = value.parse().unwrap_or(0),
                SYS_FLAG => meta.sys_flag = value.parse().unwrap_or(0),
                RECONSUME => meta.reconsume_times = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        Self { record, meta }
    }

    pub fn body(&self) -> &'a [u8] {
        self.record.value.as_deref().unwrap_or_default()
    }

    /// The message properties in stored order: the UTF-8 headers that are not reserved.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        self.record
            .headers
            .iter()
            .filter(|(name, _)| !name.starts_with(RESERVED_PREFIX.as_bytes()))
            .filter_map(text_header)
    }

    pub fn property(&self, name: &str) -> Option<&'a str> {
        if name.starts_with(RESERVED_PREFIX) {
            return None;
        }
        // Names are compared as bytes; only the match is checked for UTF-8.
        self.record
            .headers
            .iter()
            .filter(|(key, _)| key.as_ref() == name.as_bytes())
            .find_map(text_header)
            .map(|(_, value)| value)
    }
}

/// A stored record read back as a RocketMQ message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: Bytes,
    pub meta: MessageMeta,
    pub properties: Vec<(String, String)>,
}

impl OutgoingMessage {
    pub fn from_record(record: &Record) -> Self {
        let view = MessageView::of(record);
        Self {
            body: record.value.clone().unwrap_or_default(),
            meta: view.meta,
            properties: view
                .properties()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
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
    use super::*;

    #[test]
    fn messages_round_trip_through_records() {
        let incoming = IncomingMessage {
            body: Bytes::from_static(b"body"),
            flag: 3,
            sys_flag: 1,
            born_timestamp: 1_700_000_000_000,
            born_host: "[::1]:5555".parse().unwrap(),
            reconsume_times: 2,
            properties: vec![
                ("TAGS".into(), "TagA".into()),
                ("KEYS".into(), "k1 k2".into()),
                ("UNIQ_KEY".into(), "ABC".into()),
                ("rmq.fake".into(), "dropped".into()),
                ("user".into(), "v".into()),
            ],
        };
        let record = incoming.to_record(42);
        assert_eq!(record.key.as_deref(), Some(&b"k1 k2"[..]));
        assert_eq!(record.timestamp, 42);
        let outgoing = OutgoingMessage::from_record(&record);
        assert_eq!(outgoing.body, incoming.body);
        assert_eq!(outgoing.meta.flag, 3);
        assert_eq!(outgoing.meta.sys_flag, 1);
        assert_eq!(outgoing.meta.reconsume_times, 2);
        assert_eq!(outgoing.meta.born_timestamp, incoming.born_timestamp);
        assert_eq!(outgoing.meta.born_host, Some(incoming.born_host));
        assert_eq!(outgoing.meta.store_timestamp, 42);
        assert_eq!(outgoing.tag(), Some("TagA"));
        let names: Vec<&str> = outgoing
            .properties
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["TAGS", "KEYS", "UNIQ_KEY", "user"]);
        let view = MessageView::of(&record);
        assert_eq!(view.meta, outgoing.meta);
        assert_eq!(view.body(), b"body");
        assert_eq!(view.property("user"), Some("v"));
        assert_eq!(view.property("rmq.born_ts"), None);
        assert_eq!(view.properties().count(), 4);
    }

    #[test]
    fn foreign_records_read_with_defaults() {
        let record = Record {
            key: None,
            value: None,
            timestamp: 7,
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        };
        let message = OutgoingMessage::from_record(&record);
        assert_eq!(message.meta.born_timestamp, 7);
        assert_eq!(message.meta.born_host, None);
        assert_eq!(message.properties, vec![("h".to_owned(), "v".to_owned())]);
        assert!(message.body.is_empty());
    }
}
