//! Field tables and field values with RabbitMQ's type tags (which differ from the 0-9-1 errata):
//!
//! | tag | type | tag | type |
//! |---|---|---|---|
//! | `t` | bool (octet) | `b` / `B` | i8 / u8 |
//! | `s` / `U` | i16 | `u` | u16 |
//! | `I` | i32 | `i` | u32 |
//! | `l` | i64 | `L` | u64 |
//! | `f` / `d` | f32 / f64 | `D` | decimal (scale octet + u32) |
//! | `S` | longstr | `x` | byte array (u32 length) |
//! | `A` | array (u32 byte length, then values) | `T` | timestamp (u64 seconds) |
//! | `F` | nested table (u32 byte length) | `V` | void |
//!
//! A table is a u32 byte length followed by (shortstr name, tag, value) entries. Entry order is
//! kept as received (a `Vec`, not a map) and nesting is capped at [`MAX_DEPTH`] so hostile input
//! cannot exhaust the stack.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;
use super::wire::{Reader, put_longstr, put_shortstr};

/// Deepest nesting of tables and arrays accepted.
pub const MAX_DEPTH: usize = 32;

/// One typed value in a field table or array.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Decimal { scale: u8, value: u32 },
    LongString(Bytes),
    ByteArray(Bytes),
    Array(Vec<FieldValue>),
    Timestamp(u64),
    Table(FieldTable),
    Void,
}

impl FieldValue {
    /// The value as a signed integer when it is any integer type (clients pick freely).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(i64::from(v)),
            Self::U8(v) => Some(i64::from(v)),
            Self::I16(v) => Some(i64::from(v)),
            Self::U16(v) => Some(i64::from(v)),
            Self::I32(v) => Some(i64::from(v)),
            Self::U32(v) => Some(i64::from(v)),
            Self::I64(v) => Some(v),
            Self::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as text when it is a long string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::LongString(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// RabbitMQ's name for the type, used in `inequivalent arg` error texts.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::I8(_) | Self::U8(_) => "byte",
            Self::I16(_) | Self::U16(_) => "short",
            Self::I32(_) | Self::U32(_) => "signedint",
            Self::I64(_) | Self::U64(_) => "long",
            Self::F32(_) => "float",
            Self::F64(_) => "double",
            Self::Decimal { .. } => "decimal",
            Self::LongString(_) => "longstr",
            Self::ByteArray(_) => "binary",
            Self::Array(_) => "array",
            Self::Timestamp(_) => "timestamp",
            Self::Table(_) => "table",
            Self::Void => "void",
        }
    }

    fn decode(reader: &mut Reader<'_>, depth: usize) -> Result<Self, CodecError> {
        let tag = reader.u8()?;
        Ok(match tag {
            b't' => Self::Bool(reader.u8()? != 0),
            b'b' => Self::I8(reader.u8()? as i8),
            b'B' => Self::U8(reader.u8()?),
            b's' | b'U' => Self::I16(reader.u16()? as i16),
            b'u' => Self::U16(reader.u16()?),
            b'I' => Self::I32(reader.u32()? as i32),
            b'i' => Self::U32(reader.u32()?),
            b'l' => Self::I64(reader.u64()? as i64),
            b'L' => Self::U64(reader.u64()?),
            b'f' => Self::F32(f32::from_bits(reader.u32()?)),
            b'd' => Self::F64(f64::from_bits(reader.u64()?)),
            b'D' => Self::Decimal {
                scale: reader.u8()?,
                value: reader.u32()?,
            },
            b'S' => Self::LongString(reader.longstr()?),
            b'x' => Self::ByteArray(reader.longstr()?),
            b'A' => {
                let len = reader.u32()? as usize;
                let mut inner = Reader::new(reader.take(len)?);
                let mut values = Vec::new();
                while inner.remaining() > 0 {
                    values.push(Self::decode(&mut inner, nested(depth)?)?);
                }
                Self::Array(values)
            }
            b'T' => Self::Timestamp(reader.u64()?),
            b'F' => Self::Table(FieldTable::decode_at(reader, nested(depth)?)?),
            b'V' => Self::Void,
            other => return Err(CodecError::BadFieldType(other)),
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::Bool(v) => {
                out.put_u8(b't');
                out.put_u8(u8::from(*v));
            }
            Self::I8(v) => {
                out.put_u8(b'b');
                out.put_i8(*v);
            }
            Self::U8(v) => {
                out.put_u8(b'B');
                out.put_u8(*v);
            }
            Self::I16(v) => {
                out.put_u8(b's');
                out.put_i16(*v);
            }
            Self::U16(v) => {
                out.put_u8(b'u');
                out.put_u16(*v);
            }
            Self::I32(v) => {
                out.put_u8(b'I');
                out.put_i32(*v);
            }
            Self::U32(v) => {
                out.put_u8(b'i');
                out.put_u32(*v);
            }
            Self::I64(v) => {
                out.put_u8(b'l');
                out.put_i64(*v);
            }
            Self::U64(v) => {
                out.put_u8(b'L');
                out.put_u64(*v);
            }
            Self::F32(v) => {
                out.put_u8(b'f');
                out.put_f32(*v);
            }
            Self::F64(v) => {
                out.put_u8(b'd');
                out.put_f64(*v);
            }
            Self::Decimal { scale, value } => {
                out.put_u8(b'D');
                out.put_u8(*scale);
                out.put_u32(*value);
            }
            Self::LongString(v) => {
                out.put_u8(b'S');
                put_longstr(out, v);
            }
            Self::ByteArray(v) => {
                out.put_u8(b'x');
                put_longstr(out, v);
            }
            Self::Array(values) => {
                out.put_u8(b'A');
                let mut inner = BytesMut::new();
                for value in values {
                    value.encode(&mut inner);
                }
                put_longstr(out, &inner);
            }
            Self::Timestamp(v) => {
                out.put_u8(b'T');
                out.put_u64(*v);
            }
            Self::Table(table) => {
                out.put_u8(b'F');
                table.encode(out);
            }
            Self::Void => out.put_u8(b'V'),
        }
    }
}

fn nested(depth: usize) -> Result<usize, CodecError> {
    if depth >= MAX_DEPTH {
        Err(CodecError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

/// A field table in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(String, FieldValue)>);

impl FieldTable {
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, CodecError> {
        Self::decode_at(reader, 0)
    }

    fn decode_at(reader: &mut Reader<'_>, depth: usize) -> Result<Self, CodecError> {
        let len = reader.u32()? as usize;
        Self::decode_entries(&mut Reader::new(reader.take(len)?), depth)
    }

    /// Decodes entries up to the end of `reader` (AMQPLAIN responses omit the length prefix).
    pub fn decode_entries(reader: &mut Reader<'_>, depth: usize) -> Result<Self, CodecError> {
        let mut entries = Vec::new();
        while reader.remaining() > 0 {
            let name = reader.shortstr()?;
            let value = FieldValue::decode(reader, depth)?;
            entries.push((name, value));
        }
        Ok(Self(entries))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let mut inner = BytesMut::new();
        for (name, value) in &self.0 {
            put_shortstr(&mut inner, name);
            value.encode(&mut inner);
        }
        put_longstr(out, &inner);
    }

    /// The first value stored under `name`.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, v)| v)
    }

    pub fn insert(&mut self, name: &str, value: FieldValue) {
        self.0.push((name.to_owned(), value));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
