//! The properties the cargo-fuzz target `request_decoder` (`fuzz/`) and the corpus replay in
//! `cargo test` check on arbitrary bytes: no panic; an incomplete frame leaves the buffer as it
//! was; no frame is larger than the limit; and for a Produce, the record sets go through the
//! handler's own batch split (length, magic, CRC-32C) and every accepted batch decodes into
//! records whose offsets lie inside it, no more of them than the batch's bytes can hold.
//!
//! Invariants: no I/O, deterministic. The seed corpus (`fuzz/corpus/request_decoder`) holds
//! captured and hand-made requests plus Produce requests with real batches of every codec
//! (built by the test-only `seed_corpus`).

use bytes::{Bytes, BytesMut};
use tributary_api::FrameLimits;
use tributary_api::batch::{BATCH_HEADER_LEN, decode_records};

use crate::codec::{KafkaRequest, Routed, route, split_frame};
use crate::handlers::split_batches;

/// The frame limit the checks decode with.
pub const CHECK_LIMITS: FrameLimits = FrameLimits {
    max_frame_bytes: 1 << 20,
};

/// Splits `data` into frames, routes each and checks Produce record sets; returns the number
/// of frames split.
pub fn check_decoders(data: &[u8]) -> usize {
    let mut buf = BytesMut::from(data);
    let mut frames = 0;
    loop {
        let before = buf.clone();
        match split_frame(&mut buf, CHECK_LIMITS) {
            Ok(Some(raw)) => {
                assert!(raw.frame.len() + 4 <= CHECK_LIMITS.max_frame_bytes);
                frames += 1;
                if let Ok(Routed::Request { body, .. }) = route(raw)
                    && let KafkaRequest::Produce(produce) = *body
                {
                    for topic in produce.topic_data {
                        for partition in topic.partition_data {
                            if let Some(records) = partition.records {
                                check_record_set(&records);
                            }
                        }
                    }
                }
            }
            Ok(None) => {
                assert_eq!(buf, before, "incomplete input must stay in the buffer");
                return frames;
            }
            Err(_) => return frames,
        }
    }
}

/// Runs one partition's record set through the produce handler's split and the record decoder.
pub fn check_record_set(records: &Bytes) {
    let Ok(batches) = split_batches(records) else {
        return;
    };
    let mut covered = 0;
    for batch in batches {
        covered += batch.bytes().len();
        let header = *batch.header();
        if let Ok(decoded) = decode_records(batch.bytes()) {
            for record in &decoded {
                assert!(
                    (header.base_offset..=header.last_offset()).contains(&record.offset),
                    "record offset {} outside its batch",
                    record.offset
                );
            }
            // An uncompressed record takes at least 7 bytes; a compressed batch is bounded by
            // the decompressor's limit, not by its own size.
            if header.compression().codec().is_none() {
                assert!(decoded.len() <= (batch.bytes().len() - BATCH_HEADER_LEN) / 7 + 1);
            }
        }
    }
    assert_eq!(
        covered,
        records.len(),
        "accepted batches do not cover the record set"
    );
}

#[cfg(test)]
#[path = "check_seeds.rs"]
mod seeds;
