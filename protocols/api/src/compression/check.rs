//! The properties the cargo-fuzz target (`fuzz/`, `decompress`) and the corpus replay in
//! `cargo test` check on arbitrary bytes: no panic; no codec returns more than the limit it was
//! given; `decode_records` on the bytes as a batch returns only records whose offsets lie in the
//! batch.
//!
//! [`check_record_batch`] (target `record_batch`) decodes the input as one batch as stored
//! and again with its length and CRC fields made consistent (so mutations reach the record
//! decoder): a batch that verifies decodes to records inside its offset range, at most one per
//! 7 record bytes when uncompressed, and `decode_records_from` returns exactly the records at or
//! after its cursor.
//!
//! Input layout: byte 0 picks the codec (`% 5`: gzip, snappy, lz4, zstd, zlib) for the rest as
//! a compressed stream; the whole input is also decoded as one record batch. The seed corpus
//! (`fuzz/corpus/decompress`) holds compressed batches of every codec, codec-prefixed streams
//! and hostile input; the test-only `seed_corpus` builds it, and a test keeps the files and the
//! builder in step.

use bytes::Bytes;

use super::{Codec, decompress};
use crate::batch::{
    BATCH_HEADER_LEN, BATCH_LENGTH_PREFIX, BatchHeader, Compression, VerifiedBatch, decode_records,
    decode_records_from, reseal,
};

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

/// Decodes `data` as one record batch, as given and resealed.
pub fn check_record_batch(data: &[u8]) {
    check_one_batch(Bytes::copy_from_slice(data));
    if data.len() >= BATCH_HEADER_LEN {
        let mut sealed = data.to_vec();
        let length = (sealed.len() - BATCH_LENGTH_PREFIX) as i32;
        sealed[8..12].copy_from_slice(&length.to_be_bytes());
        reseal(&mut sealed);
        check_one_batch(Bytes::from(sealed));
    }
}

fn check_one_batch(bytes: Bytes) {
    let Ok(batch) = VerifiedBatch::verify(bytes) else {
        return;
    };
    let header = *batch.header();
    let Ok(records) = decode_records(batch.bytes()) else {
        return;
    };
    for record in &records {
        assert!(
            (header.base_offset..=header.last_offset()).contains(&record.offset),
            "record offset {} outside its batch {}..={}",
            record.offset,
            header.base_offset,
            header.last_offset()
        );
    }
    if header.compression() == Compression::None {
        assert!(records.len() <= (batch.bytes().len() - BATCH_HEADER_LEN) / 7 + 1);
    }
    let cursor = records
        .get(records.len() / 2)
        .map_or(header.base_offset, |r| r.offset);
    let from = decode_records_from(batch.bytes(), cursor, usize::MAX)
        .expect("decoded once, decodes again");
    let expected: Vec<_> = records.iter().filter(|r| r.offset >= cursor).collect();
    assert_eq!(
        from.iter().collect::<Vec<_>>(),
        expected,
        "decode_records_from({cursor}) disagrees with decode_records"
    );
    let first = decode_records_from(batch.bytes(), cursor, 3).expect("decoded once, decodes again");
    assert_eq!(
        first.iter().collect::<Vec<_>>(),
        expected.into_iter().take(3).collect::<Vec<_>>(),
        "decode_records_from({cursor}, 3) is not the first three"
    );
}

#[cfg(test)]
#[path = "check_seeds.rs"]
mod seeds;
