//! The decoder properties the cargo-fuzz target (`fuzz/`, `frame_decoder`) and the corpus
//! replay in `cargo test` check on arbitrary bytes: no panic; an incomplete frame leaves the
//! buffer as it was; no decoded frame is larger than `frame_max`; the method, content-header,
//! property and field-table decoders accept or refuse any payload without panicking.
//! [`check_method_payload`] (target `method_payload`) feeds a bare payload to those decoders
//! and checks their round trips: a decoded method (when its encoding decodes again), property
//! list or field table re-encodes to bytes that decode and re-encode to the same bytes.
//!
//! The seed corpus (`fuzz/corpus/frame_decoder`) holds the client sequences of the reference
//! captures (`captures/amqp-*.log`, decoded text) re-encoded by this codec, plus hostile frames;
//! the test-only `seed_corpus` builds it, and a test keeps the files and the builder in step.

use bytes::{Bytes, BytesMut};

use super::content::{BasicProperties, ContentHeader};
use super::methods::Method;
use super::table::FieldTable;
use super::wire::Reader;
use super::{FrameKind, check_protocol_header, decode_frame};

/// The `frame_max` the checks decode with (RabbitMQ's default).
pub const CHECK_FRAME_MAX: u32 = 131_072;

/// Runs every decoder over `data` (an optional protocol header, then frames).
pub fn check_decoders(data: &[u8]) {
    let _ = check_protocol_header(&data[..data.len().min(8)]);
    let start = if data.starts_with(b"AMQP") {
        data.len().min(8)
    } else {
        0
    };
    let mut buf = BytesMut::from(&data[start..]);
    loop {
        let before = buf.len();
        match decode_frame(&mut buf, CHECK_FRAME_MAX) {
            Ok(Some(frame)) => {
                assert!(
                    before - buf.len() <= CHECK_FRAME_MAX as usize,
                    "a frame over frame_max was decoded"
                );
                match frame.kind {
                    FrameKind::Method(payload) => {
                        let _ = Method::decode(&payload);
                    }
                    FrameKind::Header(payload) => {
                        if let Ok(header) = ContentHeader::decode(&payload) {
                            let _ = BasicProperties::parse(&header.raw_properties);
                        }
                    }
                    FrameKind::Body(_) | FrameKind::Heartbeat => {}
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed input");
                break;
            }
            Err(_) => break,
        }
    }
}

/// Runs a bare frame payload through the method, content-header, property and field-table
/// decoders, checking that whatever decodes re-encodes stably.
pub fn check_method_payload(data: &[u8]) {
    if let Ok(method) = Method::decode(data) {
        let mut first = BytesMut::new();
        method.encode(&mut first);
        // Only what the broker sends is encoded with every field; a client-only method (such
        // as channel.open) encodes to its id alone, which need not decode again.
        if let Ok(again) = Method::decode(&first) {
            let mut second = BytesMut::new();
            again.encode(&mut second);
            assert_eq!(
                first,
                second,
                "method {:?} does not round-trip",
                method.id()
            );
        }
    }
    let payload = Bytes::copy_from_slice(data);
    if let Ok(header) = ContentHeader::decode(&payload)
        && let Ok(properties) = BasicProperties::parse(&header.raw_properties)
    {
        let first = properties.encode();
        let again = BasicProperties::parse(&first).expect("encoded properties parse");
        assert_eq!(first, again.encode(), "properties do not round-trip");
    }
    let mut reader = Reader::new(data);
    if let Ok(table) = FieldTable::decode(&mut reader) {
        let mut first = BytesMut::new();
        table.encode(&mut first);
        let again = FieldTable::decode(&mut Reader::new(&first)).expect("an encoded table decodes");
        let mut second = BytesMut::new();
        again.encode(&mut second);
        assert_eq!(first, second, "a field table does not round-trip");
    }
}

#[cfg(test)]
#[path = "check_seeds.rs"]
mod seeds;
