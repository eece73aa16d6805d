//! The properties the cargo-fuzz target (`fuzz/`, `decompress`) and the corpus replay in
//! `cargo test` check on arbitrary bytes: no panic; no codec returns more than the limit it was
//! given; `decode_records` on the bytes as a batch returns only records whose offsets lie in the
//! batch.
//!
//! Input layout: byte 0 picks the codec (`% 5`: gzip, snappy, lz4, zstd, zlib) for the rest as
//! a compressed stream; the whole input is also decoded as one record batch. The seed corpus
//! (`fuzz/corpus/decompress`) holds compressed batches of every codec, codec-prefixed streams
//! and hostile input; the test-only `seed_corpus` builds it, and a test keeps the files and the
//! builder in step.

use bytes::Bytes;

use super::{Codec, decompress};
use crate::batch::{BatchHeader, decode_records};

/// The output limit the checks decompress with.
pub const CHECK_LIMIT: usize = 1 << 20;

const CODECS: [Codec; 5] = [
    Codec::Gzip,
    Codec::Snappy,
    Codec::Lz4,
    Codec::Zstd,
    Codec::Zlib,
];

/// Runs the decompressors and the batch decoder over `data`.
pub fn check_decoders(data: &[u8]) {
    if let Some((selector, stream)) = data.split_first() {
        let codec = CODECS[usize::from(*selector) % CODECS.len()];
        if let Ok(out) = decompress(codec, stream, CHECK_LIMIT) {
            assert!(out.len() <= CHECK_LIMIT, "{codec} inflated past its limit");
        }
    }
    let batch = Bytes::copy_from_slice(data);
    if let (Ok(header), Ok(records)) = (BatchHeader::parse(&batch), decode_records(&batch)) {
        for record in records {
            assert!(
                (header.base_offset..=header.last_offset()).contains(&record.offset),
                "record offset {} outside its batch",
                record.offset
            );
        }
    }
}

#[cfg(test)]
#[path = "check_seeds.rs"]
mod seeds;
