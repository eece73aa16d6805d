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
//! than the bytes left in the frame. Every element takes at least one byte on the wire, so once
//! the walk succeeds the crate's decoder reserves at most one element per byte of the frame.
//!
//! Invariants: the walk allocates nothing and never reads past the body; a known tagged field
//! must fill exactly its declared size (the crate ignores the size of those, so a lie would move
//! its position away from ours); a count is compared before any element is walked.

use std::fmt;

use kafka_protocol::messages::ApiKey;

use super::CodecError;
use super::schemas::{Field, Kind, schema_of};

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
    let mut walk = Walk {
        rest: body,
        version,
        flexible,
    };
    walk.structure(schema.fields)
        .map_err(|(field, fault)| refused(field, fault))
}

type Refusal = (&'static str, LengthFault);

struct Walk<'a> {
    rest: &'a [u8],
    version: i16,
    flexible: bool,
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
                    ..*self
                };
                inner.value(field.name, &field.kind)?;
                if !inner.rest.is_empty() {
                    return Err((field.name, LengthFault::TagSizeMismatch { declared: size }));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "bounds_tests.rs"]
mod tests;
