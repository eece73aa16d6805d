//! The length check every request body passes before `kafka-protocol` decodes it.
//!
//! Why it exists: the crate's array decoder calls `Vec::with_capacity(count)` with the count as
//! read off the wire, before decoding any element, so a request of a few bytes claiming 2^31
//! elements aborts the process (allocation failure is not a panic that can be caught). Strings
//! and byte strings are taken as slices of the frame after a bounds check, so they are safe, but
//! they must be walked over to find the next count.
//!
//! How: [`check`] walks the body with the field layout of [`super::schemas`], reading exactly what
//! the crate's decoder reads (same order, same varint rule, known tagged fields parsed from their
//! content), and refuses any array, string, byte string or tagged-field count that claims more
//! than the bytes left in the frame. The walk steps over every element, so once it succeeds
//! every element the decoder will build is really in the frame.
//!
//! Decoded memory: an element's Rust form is larger than its least wire form (an empty compact
//! string is 1 byte on the wire and a 32-byte `StrBytes` decoded, an unknown tagged field 2
//! bytes and a B-tree entry), so "one element per frame byte" still let a 100 MiB frame decode
//! into gigabytes. The walk therefore also adds up what the decoder will allocate: for each
//! array, its count times the in-memory size of one element (every field of the element's Rust
//! struct, whichever version is decoded, see [`inline_size`]), and [`UNKNOWN_TAG_BYTES`] per
//! unknown tagged field; a request whose total passes [`MAX_DECODE_AMPLIFICATION`] times its
//! body plus [`DECODE_ALLOWANCE`], or [`MAX_DECODED_BYTES`] whatever its size, is refused
//! before decoding. A test measures the decoder's real allocations against this estimate for
//! every API and version.
//!
//! Invariants: the walk allocates nothing and never reads past the body; a known tagged field
//! must fill exactly its declared size (the crate ignores the size of those, so a lie would move
//! its position away from ours); a count is compared before any element is walked; a request
//! that passes decodes into at most `min(MAX_DECODE_AMPLIFICATION * body + DECODE_ALLOWANCE,
//! MAX_DECODED_BYTES)` bytes of heap (as estimated; the estimate is tested to be an upper
//! bound).

use std::fmt;

use kafka_protocol::messages::ApiKey;

use super::CodecError;
use super::schemas::{Field, Kind, schema_of};

/// Largest ratio of estimated decoded heap bytes to body bytes a request may have. Measured:
/// a Fetch of 10,000 partitions decodes into 2.3 times its size (5.0 at v4, whose partitions
/// are 16 wire bytes); a Metadata request naming topics of 2 characters 17 times (estimated
/// 26, so refused beyond about 1,300 such names); frames of empty strings or empty tagged
/// fields are estimated at 32 to 96 times.
pub const MAX_DECODE_AMPLIFICATION: usize = 16;
/// Decoded bytes any request may have regardless of its size, so small requests with a high
/// ratio (a few short group names) are never refused.
pub const DECODE_ALLOWANCE: usize = 64 << 10;
/// Decoded bytes no request may exceed, whatever its size: the largest real requests (a
/// Metadata request naming 100,000 topics, a Fetch of 100,000 partitions) are estimated at a
/// fraction of it, and a produce request's records stay slices of the frame.
pub const MAX_DECODED_BYTES: usize = 64 << 20;
/// Heap bytes one unknown tagged field costs once decoded: a `(i32, Bytes)` entry of a B-tree
/// leaf (408 bytes for at most 11 entries, about 6 after a split), rounded up.
pub(crate) const UNKNOWN_TAG_BYTES: usize = 96;
/// In-memory size of a string or byte string (`StrBytes` / `Bytes`, nullable or not).
const BYTES_HANDLE: usize = 32;
/// In-memory size of a `Vec` and of the `BTreeMap` of unknown tagged fields every struct has.
const COLLECTION_HANDLE: usize = 24;

/// Bytes one value of `kind` takes inline in its parent (a `Vec` buffer or a struct). A struct
/// counts every field of every version in the tables, since the decoder builds the whole Rust
/// struct, plus half again: the crate's structs also carry fields of versions above the ones we
/// advertise (Fetch's replica directory id) and padding. The bounds tests measure that this
/// stays above what the decoder really allocates.
fn inline_size(kind: &Kind) -> usize {
    match kind {
        Kind::Fixed(width) => *width,
        Kind::String | Kind::Bytes => BYTES_HANDLE,
        Kind::Array(_) => COLLECTION_HANDLE,
        Kind::Struct(fields) => {
            let fields: usize = fields.iter().map(|field| inline_size(&field.kind)).sum();
            ((fields + COLLECTION_HANDLE) * 3 / 2).next_multiple_of(8)
        }
    }
}

/// How a length prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LengthFault {
    /// The prefix claims more elements or bytes than the frame has left (or a negative length).
    Overrun { declared: i64, remaining: usize },
    /// The request ends inside the field.
    Truncated,
    /// A known tagged field whose content does not fill its declared size.
    TagSizeMismatch { declared: usize },
    /// No layout table covers this version (the firewall routes none here; tested).
    NoLayout,
    /// The request would decode into more memory than its size allows (see the module doc).
    Amplification { decoded: usize, body: usize },
}

impl fmt::Display for LengthFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overrun {
                declared,
                remaining,
            } => write!(f, "declares {declared} with {remaining} bytes left"),
            Self::Truncated => f.write_str("runs past the end of the request"),
            Self::TagSizeMismatch { declared } => {
                write!(f, "does not fill its declared {declared} bytes")
            }
            Self::NoLayout => f.write_str("has no layout to check lengths against"),
            Self::Amplification { decoded, body } => write!(
                f,
                "would decode into about {decoded} bytes from {body}, more than {MAX_DECODE_AMPLIFICATION} times its size or {MAX_DECODED_BYTES} bytes"
            ),
        }
    }
}

/// Checks every length prefix of a `version` request body of `api` against the bytes left.
pub(crate) fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), CodecError> {
    let refused = |field, fault| CodecError::LengthRefused {
        api,
        version,
        field,
        fault,
    };
    let Some(schema) = schema_of(api).filter(|schema| (schema.min..=schema.max).contains(&version))
    else {
        return Err(refused("(request)", LengthFault::NoLayout));
    };
    let flexible = api.request_header_version(version) >= 2;
    let decoded = decoded_estimate(schema.fields, version, flexible, body)
        .map_err(|(field, fault)| refused(field, fault))?;
    let allowed = body
        .len()
        .saturating_mul(MAX_DECODE_AMPLIFICATION)
        .saturating_add(DECODE_ALLOWANCE)
        .min(MAX_DECODED_BYTES);
    if decoded > allowed {
        let fault = LengthFault::Amplification {
            decoded,
            body: body.len(),
        };
        return Err(refused("(request)", fault));
    }
    Ok(())
}

/// Walks `body` and returns the heap bytes the decoder is estimated to allocate for it.
pub(crate) fn decoded_estimate(
    fields: &'static [Field],
    version: i16,
    flexible: bool,
    body: &[u8],
) -> Result<usize, Refusal> {
    let mut walk = Walk {
        rest: body,
        version,
        flexible,
        decoded: 0,
    };
    walk.structure(fields)?;
    Ok(walk.decoded)
}

type Refusal = (&'static str, LengthFault);

struct Walk<'a> {
    rest: &'a [u8],
    version: i16,
    flexible: bool,
    /// Heap bytes the decoder allocates for what was walked so far.
    decoded: usize,
}

impl<'a> Walk<'a> {
    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], Refusal> {
        if len > self.rest.len() {
            return Err((field, LengthFault::Truncated));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn int(&mut self, field: &'static str, width: usize) -> Result<i64, Refusal> {
        let bytes = self.take(field, width)?;
        Ok(bytes
            .iter()
            .fold(0i64, |value, &byte| (value << 8) | i64::from(byte)))
    }

    /// An unsigned varint as the crate reads it: at most five bytes, high bits dropped.
    fn varint(&mut self, field: &'static str) -> Result<u32, Refusal> {
        let mut value = 0u32;
        for index in 0..5 {
            let byte = self.take(field, 1)?[0];
            value |= u32::from(byte & 0x7f).wrapping_shl(index * 7);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length or count: compact (`n + 1`, 0 for null) when flexible, else a signed integer of
    /// `width` bytes (-1 for null). `None` is null; anything over the bytes left is refused.
    fn length(&mut self, field: &'static str, width: usize) -> Result<Option<usize>, Refusal> {
        let declared = if self.flexible {
            i64::from(self.varint(field)?) - 1
        } else {
            let raw = self.int(field, width)?;
            // Sign-extend the big-endian value of `width` bytes.
            let shift = 64 - 8 * width as u32;
            (raw << shift) >> shift
        };
        if declared == -1 {
            return Ok(None);
        }
        let remaining = self.rest.len();
        match usize::try_from(declared) {
            Ok(len) if len <= remaining => Ok(Some(len)),
            _ => Err((
                field,
                LengthFault::Overrun {
                    declared,
                    remaining,
                },
            )),
        }
    }

    fn structure(&mut self, fields: &'static [Field]) -> Result<(), Refusal> {
        for field in fields {
            if field.tag.is_none() && field.in_version(self.version) {
                self.value(field.name, &field.kind)?;
            }
        }
        if self.flexible {
            self.tagged_fields(fields)?;
        }
        Ok(())
    }

    fn value(&mut self, field: &'static str, kind: &'static Kind) -> Result<(), Refusal> {
        match kind {
            Kind::Fixed(width) => {
                self.take(field, *width)?;
            }
            Kind::String | Kind::Bytes => {
                let width = if matches!(kind, Kind::String) { 2 } else { 4 };
                if let Some(len) = self.length(field, width)? {
                    self.take(field, len)?;
                }
            }
            Kind::Array(element) => {
                if let Some(count) = self.length(field, 4)? {
                    let buffer = count.saturating_mul(inline_size(element));
                    self.decoded = self.decoded.saturating_add(buffer);
                    for _ in 0..count {
                        self.value(field, element)?;
                    }
                }
            }
            Kind::Struct(fields) => self.structure(fields)?,
        }
        Ok(())
    }

    fn tagged_fields(&mut self, fields: &'static [Field]) -> Result<(), Refusal> {
        const SECTION: &str = "tagged fields";
        let count = self.varint(SECTION)?;
        let remaining = self.rest.len();
        if count as usize > remaining {
            let declared = i64::from(count);
            return Err((
                SECTION,
                LengthFault::Overrun {
                    declared,
                    remaining,
                },
            ));
        }
        for _ in 0..count {
            let tag = self.varint(SECTION)?;
            let size = self.varint(SECTION)? as usize;
            let remaining = self.rest.len();
            if size > remaining {
                let declared = size as i64;
                return Err((
                    SECTION,
                    LengthFault::Overrun {
                        declared,
                        remaining,
                    },
                ));
            }
            let content = self.take(SECTION, size)?;
            let known = fields
                .iter()
                .find(|field| field.tag == Some(tag) && field.in_version(self.version));
            if let Some(field) = known {
                let mut inner = Walk {
                    rest: content,
                    decoded: 0,
                    ..*self
                };
                inner.value(field.name, &field.kind)?;
                if !inner.rest.is_empty() {
                    return Err((field.name, LengthFault::TagSizeMismatch { declared: size }));
                }
                self.decoded = self.decoded.saturating_add(inner.decoded);
            } else {
                self.decoded = self.decoded.saturating_add(UNKNOWN_TAG_BYTES);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "bounds_tests.rs"]
mod tests;
