//! The layout tables checked against the `kafka-protocol` decoder they describe, and the walk
//! checked to refuse every length prefix that claims too much.
//!
//! A request is written from a table with every field present (two elements per array, "ab"
//! per string and byte string): the crate must decode it, consume it exactly and encode it back
//! to the same bytes, so a wrong field, order, version range or flexibility in a table fails.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::codec::apis::decode_body;
use crate::codec::schemas::{SCHEMAS, Schema};
use crate::codec::{KafkaRequest, SUPPORTED_APIS};

/// Writes request bodies from a table; the `corrupt`-th length prefix claims a huge length.
struct Writer {
    buf: BytesMut,
    version: i16,
    flexible: bool,
    prefixes: usize,
    corrupt: Option<usize>,
}

impl Writer {
    fn body(schema: &Schema, version: i16, corrupt: Option<usize>) -> (Bytes, usize) {
        let mut writer = Writer {
            buf: BytesMut::new(),
            version,
            flexible: schema.api.request_header_version(version) >= 2,
            prefixes: 0,
            corrupt,
        };
        writer.structure(schema.fields);
        (writer.buf.freeze(), writer.prefixes)
    }

    fn varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.buf.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    fn length(&mut self, len: usize, width: usize) {
        let huge = self.corrupt == Some(self.prefixes);
        self.prefixes += 1;
        match (self.flexible, width) {
            (true, _) => self.varint(if huge { u32::MAX } else { len as u32 + 1 }),
            (false, 2) => self.buf.put_i16(if huge { i16::MAX } else { len as i16 }),
            (false, _) => self.buf.put_i32(if huge { i32::MAX } else { len as i32 }),
        }
    }

    fn structure(&mut self, fields: &'static [Field]) {
        for field in fields {
            if field.tag.is_none() && field.in_version(self.version) {
                self.value(&field.kind);
            }
        }
        if self.flexible {
            let huge = self.corrupt == Some(self.prefixes);
            self.prefixes += 1;
            self.varint(if huge { u32::MAX } else { 0 });
        }
    }

    fn value(&mut self, kind: &'static Kind) {
        match kind {
            Kind::Fixed(width) => self.buf.put_bytes(0, *width),
            Kind::String | Kind::Bytes => {
                self.length(2, if matches!(kind, Kind::String) { 2 } else { 4 });
                self.buf.put_slice(b"ab");
            }
            Kind::Array(element) => {
                self.length(2, 4);
                self.value(element);
                self.value(element);
            }
            Kind::Struct(fields) => self.structure(fields),
        }
    }
}

fn every_version() -> impl Iterator<Item = (&'static Schema, i16)> {
    SCHEMAS
        .iter()
        .flat_map(|schema| (schema.min..=schema.max).map(move |version| (schema, version)))
}

#[test]
fn every_advertised_api_has_a_table_for_exactly_its_versions() {
    assert_eq!(SCHEMAS.len(), SUPPORTED_APIS.len());
    for api in SUPPORTED_APIS {
        let schema = schema_of(api.key).unwrap_or_else(|| panic!("no table for {:?}", api.key));
        assert_eq!(
            (schema.min, schema.max),
            (api.min, api.max),
            "{:?}",
            api.key
        );
    }
}

#[test]
fn populated_requests_pass_and_the_crate_reads_exactly_the_same_layout() {
    for (schema, version) in every_version() {
        let context = format!("{:?} v{version}", schema.api);
        let (body, _) = Writer::body(schema, version, None);
        check(schema.api, version, &body).unwrap_or_else(|error| panic!("{context}: {error}"));
        let mut input = body.clone();
        let request = decode_body(schema.api, version, &mut input)
            .expect("a decoded api")
            .unwrap_or_else(|error| panic!("{context}: the crate refused: {error}"));
        assert!(input.is_empty(), "{context}: {} bytes unread", input.len());
        let mut encoded = BytesMut::new();
        request
            .encode_body(&mut encoded, version)
            .unwrap_or_else(|error| panic!("{context}: {error}"));
        assert_eq!(encoded.freeze(), body, "{context}: re-encoded differently");
    }
}

#[test]
fn every_length_prefix_claiming_more_than_the_frame_is_refused() {
    let mut refused = 0;
    for (schema, version) in every_version() {
        let (_, prefixes) = Writer::body(schema, version, None);
        for corrupt in 0..prefixes {
            let (body, _) = Writer::body(schema, version, Some(corrupt));
            match check(schema.api, version, &body) {
                Err(CodecError::LengthRefused {
                    fault: LengthFault::Overrun { declared, .. },
                    ..
                }) => assert!(declared >= i64::from(i16::MAX)),
                other => panic!("{:?} v{version}, prefix {corrupt}: {other:?}", schema.api),
            }
            refused += 1;
        }
    }
    // Every API has at least its tagged-field count or one string, most several nested arrays.
    assert!(refused > 500, "only {refused} prefixes tried");
}

#[test]
fn negative_and_truncated_lengths_are_refused() {
    let metadata = schema_of(ApiKey::Metadata).unwrap();
    let (body, _) = Writer::body(metadata, 1, None);
    let mut negative = body.to_vec();
    negative[..4].copy_from_slice(&(-2i32).to_be_bytes());
    assert!(matches!(
        check(ApiKey::Metadata, 1, &negative),
        Err(CodecError::LengthRefused {
            field: "topics",
            fault: LengthFault::Overrun { declared: -2, .. },
            ..
        })
    ));
    // Null topics (all topics) is valid in Metadata v1.
    assert!(check(ApiKey::Metadata, 1, &(-1i32).to_be_bytes()).is_ok());
    for cut in 0..body.len() {
        assert!(
            check(ApiKey::Metadata, 1, &body[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

/// Fetch v15 with a tagged section replacing the empty one at the end of the body.
fn fetch_with_tags(tags: &[u8]) -> Bytes {
    let fetch = schema_of(ApiKey::Fetch).unwrap();
    let (body, _) = Writer::body(fetch, 15, None);
    let mut tagged = BytesMut::from(&body[..body.len() - 1]);
    tagged.put_slice(tags);
    tagged.freeze()
}

#[test]
fn known_tagged_fields_must_fill_their_declared_size() {
    // replica_state (tag 1): replica_id 7, replica_epoch 0, no tagged fields = 13 bytes.
    let mut replica_state = vec![0, 0, 0, 7];
    replica_state.extend_from_slice(&[0; 8]);
    replica_state.push(0);
    let mut exact = vec![1, 1, 13];
    exact.extend_from_slice(&replica_state);
    let body = fetch_with_tags(&exact);
    check(ApiKey::Fetch, 15, &body).expect("exact size");
    let mut input = body.clone();
    let Some(Ok(KafkaRequest::Fetch(request))) = decode_body(ApiKey::Fetch, 15, &mut input) else {
        panic!("the crate refused the tagged replica state");
    };
    assert_eq!(request.replica_state.replica_id.0, 7);

    // Declared one byte long: the crate would read 13 bytes and take the 14th as what follows.
    let mut long = vec![1, 1, 14];
    long.extend_from_slice(&replica_state);
    long.push(0);
    assert!(matches!(
        check(ApiKey::Fetch, 15, &fetch_with_tags(&long)),
        Err(CodecError::LengthRefused {
            field: "replica_state",
            fault: LengthFault::TagSizeMismatch { declared: 14 },
            ..
        })
    ));
    // Declared one byte short: the content ends inside the structure.
    let mut short = vec![1, 1, 12];
    short.extend_from_slice(&replica_state);
    assert!(check(ApiKey::Fetch, 15, &fetch_with_tags(&short)).is_err());

    // An unknown tag is skipped by its size, as the crate does.
    assert!(check(ApiKey::Fetch, 15, &fetch_with_tags(&[1, 9, 2, 0xff, 0xff])).is_ok());
    // A tag claiming more bytes than are left is refused.
    assert!(matches!(
        check(ApiKey::Fetch, 15, &fetch_with_tags(&[1, 9, 100, 0])),
        Err(CodecError::LengthRefused {
            fault: LengthFault::Overrun { declared: 100, .. },
            ..
        })
    ));
}

proptest::proptest! {
    /// Any one byte of any populated request changed: the walk and the decoder behind it
    /// neither panic nor abort.
    #[test]
    fn mutated_populated_requests_never_abort(
        pick in 0usize..10_000,
        at in 0usize..10_000,
        byte in proptest::prelude::any::<u8>(),
    ) {
        let all: Vec<_> = every_version().collect();
        let (schema, version) = all[pick % all.len()];
        let (body, _) = Writer::body(schema, version, None);
        if body.is_empty() {
            return Ok(());
        }
        let mut mutated = body.to_vec();
        mutated[at % body.len()] = byte;
        if check(schema.api, version, &mutated).is_ok() {
            let mut input = Bytes::from(mutated);
            let _ = decode_body(schema.api, version, &mut input);
        }
    }
}
