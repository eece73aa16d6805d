//! Message-level encodings inside request and response bodies (big-endian throughout).
//!
//! - Properties string: `name \x01 value \x02` repeated.
//! - Batch body (SEND_BATCH_MESSAGE, or `batch` set on a send): repeated
//!   `i32 total size | i32 magic | i32 body CRC | i32 flag | i32 body length | body |
//!   i16 properties length | properties`.
//! - Stored message (PULL, VIEW and QUERY bodies): `i32 total size | i32 magic 0xDAA320A7 |
//!   i32 body CRC | i32 queue id | i32 flag | i64 queue offset | i64 physical offset | i32 sysFlag |
//!   i64 born timestamp | born host (4+4 or 16+4 bytes) | i64 store timestamp | store host |
//!   i32 reconsume times | i64 prepared transaction offset | i32 body length | body |
//!   u8 topic length | topic | i16 properties length | properties`. Topics longer than 255 bytes
//!   use magic 0xDAA320AB and an i16 topic length. The host widths follow sysFlag bits 0x10/0x20.
//! - Offset message id: hex (upper case) of the store host (IPv4 + i32 port, or IPv6 + port) and
//!   an i64 physical offset: 32 hex digits for IPv4, 56 for IPv6.
//!
//! Invariants: decoders check every length against the remaining input before slicing and never
//! panic on bad input; encoders produce exactly the layouts above.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

/// Separates a property name from its value.
const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property.
const PROPERTY_SEPARATOR: char = '\u{2}';
/// Stored-message magic with a one-byte topic length.
const MESSAGE_MAGIC_V1: i32 = -626_843_481;
/// Stored-message magic with a two-byte topic length.
const MESSAGE_MAGIC_V2: i32 = -626_843_477;
/// sysFlag: the born host is IPv6.
pub const SYSFLAG_BORNHOST_V6: i32 = 0x10;
/// sysFlag: the store host is IPv6.
pub const SYSFLAG_STOREHOST_V6: i32 = 0x20;

/// Why a message body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("batch entry truncated at byte {0}")]
    Truncated(usize),
    #[error("batch entry has a negative length at byte {0}")]
    NegativeLength(usize),
    #[error("message properties are not UTF-8")]
    PropertiesNotUtf8,
}

/// Parses a properties string; malformed pairs (no separator) are skipped.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.split(PROPERTY_SEPARATOR)
        .filter_map(|pair| pair.split_once(NAME_VALUE_SEPARATOR))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Writes properties in the wire form.
pub fn format_properties<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    format_properties_into(&mut out, properties);
    out
}

/// Appends properties in the wire form to `out` (a buffer reused across messages).
pub fn format_properties_into<'a>(
    out: &mut String,
    properties: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (name, value) in properties {
        out.push_str(name);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(value);
        out.push(PROPERTY_SEPARATOR);
    }
}

/// One message of a batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

/// Splits a batch body into its messages.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, MessageError> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let start = pos;
        let mut take = |len: usize| -> Result<Bytes, MessageError> {
            let end = pos
                .checked_add(len)
                .filter(|end| *end <= body.len())
                .ok_or(MessageError::Truncated(start))?;
            let slice = body.slice(pos..end);
            pos = end;
            Ok(slice)
        };
        let fixed = take(20)?;
        let word = |at: usize| {
            fixed
                .get(at..at + 4)
                .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let flag = word(12);
        let body_len =
            usize::try_from(word(16)).map_err(|_| MessageError::NegativeLength(start))?;
        let message_body = take(body_len)?;
        let props_len_bytes = take(2)?;
        let props_len =
            usize::try_from(i16::from_be_bytes([props_len_bytes[0], props_len_bytes[1]]))
                .map_err(|_| MessageError::NegativeLength(start))?;
        let properties = String::from_utf8(take(props_len)?.to_vec())
            .map_err(|_| MessageError::PropertiesNotUtf8)?;
        entries.push(BatchEntry {
            flag,
            body: message_body,
            properties,
        });
    }
    Ok(entries)
}

/// Encodes messages as a batch body (what producers send); used by tests and tools.
pub fn encode_batch(entries: &[BatchEntry]) -> Bytes {
    let mut out = BytesMut::new();
    for entry in entries {
        let total = 20 + entry.body.len() + 2 + entry.properties.len();
        out.put_i32(total as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(entry.flag);
        out.put_i32(entry.body.len() as i32);
        out.extend_from_slice(&entry.body);
        out.put_i16(entry.properties.len() as i16);
        out.extend_from_slice(entry.properties.as_bytes());
    }
    out.freeze()
}

/// A message as the stored format carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    /// Without the host-width bits; they are derived from the addresses.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub body: &'a [u8],
    pub properties: &'a str,
}

/// `UtilAll.crc32`: CRC-32 (IEEE) masked to a non-negative `i32`.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

fn put_host(out: &mut BytesMut, host: &SocketAddr) {
    match host.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.put_i32(i32::from(host.port()));
}

fn host_len(host: &SocketAddr) -> usize {
    if host.is_ipv4() { 8 } else { 20 }
}

/// Appends one stored-format record to `out`.
pub fn encode_stored(message: &StoredMessage<'_>, out: &mut BytesMut) {
    let long_topic = message.topic.len() > usize::from(u8::MAX);
    let topic_len_bytes = if long_topic { 2 } else { 1 };
    let total = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&message.born_host)
        + 8
        + host_len(&message.store_host)
        + 4
        + 8
        + 4
        + message.body.len()
        + topic_len_bytes
        + message.topic.len()
        + 2
        + message.properties.len();
    let mut sys_flag = message.sys_flag & !(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6);
    if message.born_host.is_ipv6() {
        sys_flag |= SYSFLAG_BORNHOST_V6;
    }
    if message.store_host.is_ipv6() {
        sys_flag |= SYSFLAG_STOREHOST_V6;
    }
    out.reserve(total);
    out.put_i32(total as i32);
    out.put_i32(if long_topic {
        MESSAGE_MAGIC_V2
    } else {
        MESSAGE_MAGIC_V1
    });
    out.put_i32(body_crc(message.body));
    out.put_i32(message.queue_id);
    out.put_i32(message.flag);
    out.put_i64(message.queue_offset);
    out.put_i64(message.physical_offset);
    out.put_i32(sys_flag);
    out.put_i64(message.born_timestamp);
    put_host(out, &message.born_host);
    out.put_i64(message.store_timestamp);
    put_host(out, &message.store_host);
    out.put_i32(message.reconsume_times);
    out.put_i64(0); // prepared transaction offset
    out.put_i32(message.body.len() as i32);
    out.extend_from_slice(message.body);
    if long_topic {
        out.put_i16(message.topic.len() as i16);
    } else {
        out.put_u8(message.topic.len() as u8);
    }
    out.extend_from_slice(message.topic.as_bytes());
    out.put_i16(message.properties.len() as i16);
    out.extend_from_slice(message.properties.as_bytes());
}

/// The offset message id of a message stored at `physical_offset` on `store_host`.
pub fn offset_message_id(store_host: &SocketAddr, physical_offset: i64) -> String {
    let mut raw = BytesMut::with_capacity(28);
    put_host(&mut raw, store_host);
    raw.put_i64(physical_offset);
    raw.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// The physical offset (the last 16 hex digits) of an offset message id.
pub fn physical_offset_of(message_id: &str) -> Option<i64> {
    let hex = message_id.get(message_id.len().checked_sub(16)?..)?;
    u64::from_str_radix(hex, 16).ok().map(|value| value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_match_the_captured_form() {
        let captured = "KEYS\u{1}key-1\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}myprop\u{1}v1\u{2}";
        let parsed = parse_properties(captured);
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[1], ("TAGS".to_owned(), "TagA".to_owned()));
        let again = format_properties(parsed.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert_eq!(again, captured);
        assert!(parse_properties("garbage").is_empty());
    }

    #[test]
    fn batch_round_trips_and_rejects_truncation() {
        let entries = vec![
            BatchEntry {
                flag: 0,
                body: Bytes::from_static(b"one"),
                properties: "TAGS\u{1}A\u{2}".to_owned(),
            },
            BatchEntry {
                flag: 7,
                body: Bytes::new(),
                properties: String::new(),
            },
        ];
        let body = encode_batch(&entries);
        assert_eq!(decode_batch(&body).unwrap(), entries);
        let first_len = 20 + 3 + 2 + entries[0].properties.len();
        for cut in 1..body.len() {
            let partial = body.slice(..cut);
            if cut != first_len {
                assert!(decode_batch(&partial).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn stored_record_layout_for_ipv4_and_ipv6() {
        let v4: SocketAddr = "10.0.0.5:10911".parse().unwrap();
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        let mut out = BytesMut::new();
        let message = StoredMessage {
            topic: "T",
            queue_id: 2,
            flag: 0,
            queue_offset: 5,
            physical_offset: 9,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: v6,
            store_timestamp: 2,
            store_host: v4,
            reconsume_times: 0,
            body: b"hello",
            properties: "TAGS\u{1}A\u{2}",
        };
        encode_stored(&message, &mut out);
        let total = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(total, out.len());
        assert_eq!(&out[4..8], &MESSAGE_MAGIC_V1.to_be_bytes());
        let sys_flag = i32::from_be_bytes([out[36], out[37], out[38], out[39]]);
        assert_eq!(sys_flag, SYSFLAG_BORNHOST_V6);
        assert_eq!(
            body_crc(b"hello"),
            (crc32fast::hash(b"hello") & 0x7FFF_FFFF) as i32
        );
    }

    #[test]
    fn offset_message_id_encodes_host_and_offset() {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let id = offset_message_id(&host, 0x0102);
        assert_eq!(id, "7F00000100002A9F0000000000000102");
        assert_eq!(physical_offset_of(&id), Some(0x0102));
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(offset_message_id(&v6, 1).len(), 56);
    }
}
