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
    /// Elements per array, and the content of every string and byte string.
    elements: usize,
    text: &'static [u8],
}

impl Writer {
    fn body(schema: &Schema, version: i16, corrupt: Option<usize>) -> (Bytes, usize) {
        Self::body_of(schema, version, corrupt, 2, b"ab")
    }

    fn body_of(
        schema: &Schema,
        version: i16,
        corrupt: Option<usize>,
        elements: usize,
        text: &'static [u8],
    ) -> (Bytes, usize) {
        let mut writer = Writer {
            buf: BytesMut::new(),
            version,
            flexible: schema.api.request_header_version(version) >= 2,
            prefixes: 0,
            corrupt,
            elements,
            text,
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
                let text = self.text;
                self.length(text.len(), if matches!(kind, Kind::String) { 2 } else { 4 });
                self.buf.put_slice(text);
            }
            Kind::Array(element) => {
                self.length(self.elements, 4);
                for _ in 0..self.elements {
                    self.value(element);
                }
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

/// Counts the bytes this thread allocates, so a test can measure what one decode allocates.
mod counting {
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) struct Counting;

    fn add(bytes: usize) {
        // `try_with`: allocations while the thread is being torn down are not counted.
        let _ = ALLOCATED.try_with(|total| total.set(total.get() + bytes));
    }

    /// Bytes allocated by this thread while `work` ran (reallocations count their growth).
    pub(super) fn allocated_by<T>(work: impl FnOnce() -> T) -> (T, usize) {
        let before = ALLOCATED.with(Cell::get);
        let result = work();
        (result, ALLOCATED.with(Cell::get) - before)
    }

    // SAFETY: every method forwards its arguments unchanged to the system allocator, so the
    // caller's obligations for `GlobalAlloc` are exactly the system allocator's; counting
    // touches only a thread-local integer and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            // SAFETY: forwarded unchanged (see the impl).
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size());
            // SAFETY: forwarded unchanged (see the impl).
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged (see the impl).
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size.saturating_sub(layout.size()));
            // SAFETY: forwarded unchanged (see the impl).
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;
}

/// What decoding `body` allocates, measured.
fn measured_decode(schema: &Schema, version: i16, body: &Bytes) -> usize {
    let mut input = body.clone();
    let (decoded, allocated) =
        counting::allocated_by(|| decode_body(schema.api, version, &mut input));
    let context = format!("{:?} v{version}", schema.api);
    decoded
        .expect("a decoded api")
        .unwrap_or_else(|error| panic!("{context}: the crate refused: {error}"));
    allocated
}

fn estimate(schema: &Schema, version: i16, body: &[u8]) -> usize {
    let flexible = schema.api.request_header_version(version) >= 2;
    decoded_estimate(schema.fields, version, flexible, body).expect("a walkable body")
}

#[test]
fn the_decoded_memory_estimate_is_an_upper_bound_for_every_api_and_version() {
    let mut worst_ratio = 0.0f64;
    for (schema, version) in every_version() {
        // Empty strings and many elements: the shape that decodes to the most per wire byte.
        for (elements, text) in [(12, &b""[..]), (12, &b"ab"[..]), (1, &b""[..])] {
            let (body, _) = Writer::body_of(schema, version, None, elements, text);
            let measured = measured_decode(schema, version, &body);
            let estimated = estimate(schema, version, &body);
            // The slack covers one-off allocations independent of size (a `Bytes` turned
            // shared on its first split); `check` has `DECODE_ALLOWANCE` for them.
            assert!(
                measured <= estimated + 256,
                "{:?} v{version} ({elements} elements): decoding allocated {measured} bytes, estimated {estimated}",
                schema.api
            );
            if body.len() > 1_000 {
                worst_ratio = worst_ratio.max(measured as f64 / body.len() as f64);
            }
        }
    }
    // Shapes near the worst case are built here; they decode to many times their size.
    assert!(worst_ratio > 4.0, "worst measured ratio {worst_ratio:.1}");
}

/// DescribeGroups v5 naming `count` empty groups: one byte each on the wire.
fn empty_group_names(count: u32) -> Bytes {
    let mut body = BytesMut::new();
    let mut prefix = count + 1;
    while prefix >= 0x80 {
        body.put_u8((prefix as u8) | 0x80);
        prefix >>= 7;
    }
    body.put_u8(prefix as u8);
    body.put_bytes(1, count as usize);
    body.put_u8(0); // include_authorized_operations
    body.put_u8(0); // no tagged fields
    body.freeze()
}

#[test]
fn a_frame_of_empty_names_that_decodes_to_32_times_its_size_is_refused() {
    let describe = schema_of(ApiKey::DescribeGroups).unwrap();
    // Small: within the allowance, decoded as before.
    let small = empty_group_names(1_000);
    check(ApiKey::DescribeGroups, 5, &small).expect("a small request passes");
    // 1 MiB of empty names: every length prefix fits, so this passed before; it decodes into
    // 32 MiB.
    let large = empty_group_names(1 << 20);
    let measured = measured_decode(describe, 5, &large);
    assert!(
        measured >= 30 * large.len(),
        "decoded into {measured} bytes"
    );
    match check(ApiKey::DescribeGroups, 5, &large) {
        Err(CodecError::LengthRefused {
            fault: LengthFault::Amplification { decoded, body },
            ..
        }) => {
            assert_eq!(body, large.len());
            assert!(
                decoded >= measured,
                "estimate {decoded} below measured {measured}"
            );
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn unknown_tagged_fields_count_toward_the_decoded_size() {
    // 200,000 unknown tags of no content: 2 bytes each on the wire, a B-tree entry each decoded.
    let count: u32 = 200_000;
    let mut tags = BytesMut::new();
    let mut prefix = count;
    while prefix >= 0x80 {
        tags.put_u8((prefix as u8) | 0x80);
        prefix >>= 7;
    }
    tags.put_u8(prefix as u8);
    for tag in 0..count {
        let mut value = tag + 100;
        while value >= 0x80 {
            tags.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        tags.put_u8(value as u8);
        tags.put_u8(0);
    }
    let body = fetch_with_tags(&tags);
    let fetch = schema_of(ApiKey::Fetch).unwrap();
    let measured = measured_decode(fetch, 15, &body);
    assert!(measured <= estimate(fetch, 15, &body));
    assert!(matches!(
        check(ApiKey::Fetch, 15, &body),
        Err(CodecError::LengthRefused {
            fault: LengthFault::Amplification { .. },
            ..
        })
    ));
}

#[test]
fn a_fetch_of_ten_thousand_partitions_still_passes() {
    let fetch = schema_of(ApiKey::Fetch).unwrap();
    for version in [4, 12, 16] {
        let (body, _) = Writer::body_of(fetch, version, None, 100, b"topic-name-0001");
        check(ApiKey::Fetch, version, &body).expect("a large real-shaped fetch passes");
        // Measured: 5.0 times the body at v4 (16-byte partitions), 2.3 from v12.
        assert!(measured_decode(fetch, version, &body) <= 6 * body.len());
    }
}

#[test]
fn no_request_decodes_past_the_absolute_bound_whatever_its_size() {
    // Metadata v1 naming topics of 40 characters: about 5 times its size, within the ratio,
    // until the estimate reaches MAX_DECODED_BYTES (about 600,000 topics).
    let name = [b'n'; 40];
    let body_of = |count: u32| {
        let mut body = BytesMut::new();
        body.put_i32(count as i32);
        for _ in 0..count {
            body.put_i16(name.len() as i16);
            body.put_slice(&name);
        }
        body.freeze()
    };
    check(ApiKey::Metadata, 1, &body_of(100_000)).expect("100,000 topics pass");
    assert!(matches!(
        check(ApiKey::Metadata, 1, &body_of(700_000)),
        Err(CodecError::LengthRefused {
            fault: LengthFault::Amplification { decoded, .. },
            ..
        }) if decoded > MAX_DECODED_BYTES
    ));
}
