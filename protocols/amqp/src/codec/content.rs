//! Content headers and basic properties.
//!
//! Payload: `class_id: u16 (60), weight: u16 (0), body_size: u64`, then the raw properties:
//! `property_flags: u16` (bit 15 = first property, bit 0 = continuation, which class 60 never
//! needs) and the present properties in order: content-type (shortstr), content-encoding
//! (shortstr), headers (table), delivery-mode (octet), priority (octet), correlation-id,
//! reply-to, expiration, message-id (shortstr), timestamp (u64 seconds), type, user-id, app-id,
//! cluster-id (shortstr).
//!
//! The raw property bytes are stored and replayed byte for byte on delivery (clients' table
//! order and duplicate keys survive); [`BasicProperties::parse`] decodes them only when routing or
//! a policy needs a field.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;
use super::table::FieldTable;
use super::wire::{Reader, put_shortstr};

/// The only content class (basic).
pub const BASIC_CLASS: u16 = 60;

/// A decoded content header; `raw_properties` starts at the property flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHeader {
    pub body_size: u64,
    pub raw_properties: Bytes,
}

impl ContentHeader {
    pub fn decode(payload: &Bytes) -> Result<Self, CodecError> {
        let mut reader = Reader::new(payload);
        let class_id = reader.u16()?;
        if class_id != BASIC_CLASS {
            return Err(CodecError::BadContentClass(class_id));
        }
        let _weight = reader.u16()?;
        let body_size = reader.u64()?;
        if reader.remaining() < 2 {
            return Err(CodecError::Truncated);
        }
        let raw_properties = payload.slice(12..);
        // Validate now so a malformed list is a frame error at publish time, not at delivery.
        BasicProperties::parse(&raw_properties)?;
        Ok(Self {
            body_size,
            raw_properties,
        })
    }

    /// Appends a content header payload around already-encoded properties.
    pub fn encode_raw(out: &mut BytesMut, body_size: u64, raw_properties: &[u8]) {
        out.put_u16(BASIC_CLASS);
        out.put_u16(0);
        out.put_u64(body_size);
        if raw_properties.len() < 2 {
            out.put_u16(0);
        } else {
            out.extend_from_slice(raw_properties);
        }
    }
}

/// The basic-class properties, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    pub timestamp: Option<u64>,
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
}

impl BasicProperties {
    /// Decodes raw property bytes (flags first).
    pub fn parse(raw: &[u8]) -> Result<Self, CodecError> {
        let mut reader = Reader::new(raw);
        let flags = reader.u16()?;
        if flags & 1 != 0 {
            return Err(CodecError::PropertyContinuation);
        }
        let has = |bit: u16| flags & (1 << bit) != 0;
        let shortstr = |bit: u16, reader: &mut Reader<'_>| -> Result<Option<String>, CodecError> {
            if has(bit) {
                reader.shortstr().map(Some)
            } else {
                Ok(None)
            }
        };
        let content_type = shortstr(15, &mut reader)?;
        let content_encoding = shortstr(14, &mut reader)?;
        let headers = if has(13) {
            Some(FieldTable::decode(&mut reader)?)
        } else {
            None
        };
        let delivery_mode = if has(12) { Some(reader.u8()?) } else { None };
        let priority = if has(11) { Some(reader.u8()?) } else { None };
        let correlation_id = shortstr(10, &mut reader)?;
        let reply_to = shortstr(9, &mut reader)?;
        let expiration = shortstr(8, &mut reader)?;
        let message_id = shortstr(7, &mut reader)?;
        let timestamp = if has(6) { Some(reader.u64()?) } else { None };
        Ok(Self {
            content_type,
            content_encoding,
            headers,
            delivery_mode,
            priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp,
            kind: shortstr(5, &mut reader)?,
            user_id: shortstr(4, &mut reader)?,
            app_id: shortstr(3, &mut reader)?,
            cluster_id: shortstr(2, &mut reader)?,
        })
    }

    /// Encodes the properties (flags first). Used only when the server must change them
    /// (dead-lettering); otherwise the client's raw bytes are replayed.
    pub fn encode(&self) -> Bytes {
        let mut flags = 0u16;
        let mut list = BytesMut::new();
        let shortstr = |bit: u16, value: &Option<String>, list: &mut BytesMut, flags: &mut u16| {
            if let Some(value) = value {
                *flags |= 1 << bit;
                put_shortstr(list, value);
            }
        };
        shortstr(15, &self.content_type, &mut list, &mut flags);
        shortstr(14, &self.content_encoding, &mut list, &mut flags);
        if let Some(headers) = &self.headers {
            flags |= 1 << 13;
            headers.encode(&mut list);
        }
        if let Some(mode) = self.delivery_mode {
            flags |= 1 << 12;
            list.put_u8(mode);
        }
        if let Some(priority) = self.priority {
            flags |= 1 << 11;
            list.put_u8(priority);
        }
        shortstr(10, &self.correlation_id, &mut list, &mut flags);
        shortstr(9, &self.reply_to, &mut list, &mut flags);
        shortstr(8, &self.expiration, &mut list, &mut flags);
        shortstr(7, &self.message_id, &mut list, &mut flags);
        if let Some(timestamp) = self.timestamp {
            flags |= 1 << 6;
            list.put_u64(timestamp);
        }
        shortstr(5, &self.kind, &mut list, &mut flags);
        shortstr(4, &self.user_id, &mut list, &mut flags);
        shortstr(3, &self.app_id, &mut list, &mut flags);
        shortstr(2, &self.cluster_id, &mut list, &mut flags);
        let mut out = BytesMut::with_capacity(2 + list.len());
        out.put_u16(flags);
        out.extend_from_slice(&list);
        out.freeze()
    }

    /// Persistent (delivery-mode 2).
    pub fn persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}
