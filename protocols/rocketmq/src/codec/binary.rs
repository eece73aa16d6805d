//! The ROCKETMQ binary header (serialize type 1), big-endian:
//!
//! ```text
//! i16 code | u8 language | i16 version | i32 opaque | i32 flag       (13 bytes)
//! i32 remark length | remark UTF-8                                   (0 = no remark)
//! i32 ext-fields length | repeated { i16 key length | key | i32 value length | value }
//! ```
//!
//! Invariants: every length is checked against the bytes that remain before it is used, so a
//! hostile length can neither allocate nor read out of bounds; keys and values must be UTF-8.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes};

use super::{CodecError, RemotingCommand, SerializeType};

/// A cursor over the header bytes that fails instead of reading past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if len > self.buf.len() {
            return Err(CodecError::Binary(what));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn len(&mut self, what: &'static str) -> Result<usize, CodecError> {
        usize::try_from(self.i32(what)?).map_err(|_| CodecError::Binary(what))
    }

    fn text(&mut self, len: usize, what: &'static str) -> Result<String, CodecError> {
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Binary(what))
    }
}

pub(super) fn decode_header(header: &[u8]) -> Result<RemotingCommand, CodecError> {
    let mut reader = Reader { buf: header };
    let code = i32::from(reader.i16("code")?);
    let [language] = reader.array::<1>("language")?;
    let version = i32::from(reader.i16("version")?);
    let opaque = reader.i32("opaque")?;
    let flag = reader.i32("flag")?;
    let remark_len = reader.len("remark length")?;
    let remark = if remark_len == 0 {
        None
    } else {
        Some(reader.text(remark_len, "remark")?)
    };
    let ext_len = reader.len("ext fields length")?;
    let mut fields = Reader {
        buf: reader.take(ext_len, "ext fields")?,
    };
    let mut ext_fields = BTreeMap::new();
    while !fields.buf.is_empty() {
        let key_len = usize::try_from(fields.i16("key length")?)
            .map_err(|_| CodecError::Binary("key length"))?;
        let key = fields.text(key_len, "key")?;
        let value_len = fields.len("value length")?;
        let value = fields.text(value_len, "value")?;
        ext_fields.insert(key, value);
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

pub(super) fn encode_header(command: &RemotingCommand) -> Vec<u8> {
    let mut fields = Vec::new();
    for (key, value) in &command.ext_fields {
        fields.put_i16(key.len() as i16);
        fields.extend_from_slice(key.as_bytes());
        fields.put_i32(value.len() as i32);
        fields.extend_from_slice(value.as_bytes());
    }
    let remark = command.remark.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(21 + remark.len() + fields.len());
    out.put_i16(command.code as i16);
    out.put_u8(command.language);
    out.put_i16(command.version as i16);
    out.put_i32(command.opaque);
    out.put_i32(command.flag);
    out.put_i32(remark.len() as i32);
    out.extend_from_slice(remark.as_bytes());
    out.put_i32(fields.len() as i32);
    out.extend_from_slice(&fields);
    out
}
