//! Rewriting stored batches for log compaction: a batch keeps some of its records at their
//! original offsets, or becomes an empty batch that only holds its offset range.
//!
//! Invariants of a rewritten batch: its base offset, last offset delta, partition leader
//! epoch, timestamp type, producer id, epoch and base sequence are the original's (a reader
//! moves past it by `base offset + last offset delta + 1`, and the idempotent-producer state
//! rebuilt from headers is unchanged); each kept record keeps its offset delta and timestamp;
//! a compressed batch is compressed again with its own codec; the CRC and length are
//! recomputed. A batch with zero records is uncompressed. This module does no I/O.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    BATCH_HEADER_LEN, BATCH_LENGTH_PREFIX, BatchHeader, CRC_START, Compression, MAGIC_V2,
    RecordLayout, StoredRecord, encode_record, varlong_len,
};
use crate::compression;

/// The attribute bits a rewrite keeps: timestamp type, transactional, control.
const KEPT_ATTRIBUTES: i16 = 0x08 | 0x10 | 0x20;

/// `header`'s batch holding only `kept` (a subset of its records, in offset order).
pub fn rebuild_batch(header: &BatchHeader, kept: &[StoredRecord]) -> std::io::Result<Bytes> {
    encode(header, kept, header.compression().codec())
}

/// `header`'s batch with all its `records` compressed with `target` instead (a topic's
/// `compression.type`); `None` or an unknown target stores them uncompressed.
pub fn recompress_batch(
    header: &BatchHeader,
    records: &[StoredRecord],
    target: Compression,
) -> std::io::Result<Bytes> {
    encode(header, records, target.codec())
}

fn encode(
    header: &BatchHeader,
    kept: &[StoredRecord],
    codec: Option<crate::compression::Codec>,
) -> std::io::Result<Bytes> {
    let layouts: Vec<RecordLayout> = kept
        .iter()
        .map(|stored| {
            let delta = stored.offset.wrapping_sub(header.base_offset);
            RecordLayout::of(&stored.record, delta as usize, header.base_timestamp)
        })
        .collect();
    let body_len: usize = layouts
        .iter()
        .map(|layout| varlong_len(layout.len as i64) + layout.len)
        .sum();
    let mut body = BytesMut::with_capacity(body_len);
    for (stored, layout) in kept.iter().zip(&layouts) {
        encode_record(&mut body, &stored.record, layout);
    }
    let mut attributes = header.attributes & KEPT_ATTRIBUTES;
    let body: Vec<u8> = match codec {
        Some(codec) if !kept.is_empty() => {
            attributes |= Compression::attribute_bits(codec).unwrap_or(0);
            compression::compress(codec, &body)?
        }
        _ => body.to_vec(),
    };
    let count = i32::try_from(kept.len()).map_err(std::io::Error::other)?;
    Ok(seal(header, attributes, count, &body))
}

/// An empty batch holding offsets `base_offset..=last_offset` and nothing else (no producer):
/// what the cleaner leaves for a run of batches whose records were all removed.
pub fn empty_batch(base_offset: i64, last_offset: i64, max_timestamp: i64) -> Bytes {
    let header = BatchHeader {
        base_offset,
        total_len: BATCH_HEADER_LEN,
        partition_leader_epoch: -1,
        crc: 0,
        attributes: 0,
        last_offset_delta: i32::try_from(last_offset - base_offset).unwrap_or(i32::MAX),
        base_timestamp: max_timestamp,
        max_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 0,
    };
    seal(&header, 0, 0, &[])
}

fn seal(header: &BatchHeader, attributes: i16, count: i32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body.len());
    out.put_i64(header.base_offset);
    out.put_i32((BATCH_HEADER_LEN - BATCH_LENGTH_PREFIX + body.len()) as i32);
    out.put_i32(header.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0);
    out.put_i16(attributes);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.base_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(count);
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Record, build_batch, build_compressed_batch, decode_records, verify_batch};
    use crate::compression::Codec;

    fn records() -> Vec<Record> {
        (0..5)
            .map(|i| Record {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp: 1_000 + i,
                headers: vec![],
            })
            .collect()
    }

    #[test]
    fn kept_records_keep_offsets_and_codec() {
        for batch in [
            build_batch(&records()),
            build_compressed_batch(&records(), Codec::Gzip).unwrap(),
        ] {
            let mut bytes = batch.to_vec();
            bytes[..8].copy_from_slice(&100i64.to_be_bytes());
            let batch = Bytes::from(bytes);
            let header = verify_batch(&batch).unwrap();
            let all = decode_records(&batch).unwrap();
            let kept = vec![all[1].clone(), all[4].clone()];
            let rebuilt = rebuild_batch(&header, &kept).unwrap();
            let new_header = verify_batch(&rebuilt).unwrap();
            assert_eq!(new_header.base_offset, 100);
            assert_eq!(new_header.last_offset(), 104);
            assert_eq!(new_header.record_count, 2);
            assert_eq!(new_header.compression(), header.compression());
            assert_eq!(decode_records(&rebuilt).unwrap(), kept);
        }
    }

    #[test]
    fn recompression_changes_only_the_codec() {
        let batch = build_compressed_batch(&records(), Codec::Snappy).unwrap();
        let header = verify_batch(&batch).unwrap();
        let all = decode_records(&batch).unwrap();
        for target in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let recompressed = recompress_batch(&header, &all, target).unwrap();
            let new_header = verify_batch(&recompressed).unwrap();
            assert_eq!(new_header.compression(), target);
            assert_eq!(new_header.last_offset_delta, header.last_offset_delta);
            assert_eq!(decode_records(&recompressed).unwrap(), all);
        }
    }

    #[test]
    fn an_empty_batch_spans_its_range() {
        let empty = empty_batch(10, 19, 5);
        let header = verify_batch(&empty).unwrap();
        assert_eq!((header.base_offset, header.last_offset()), (10, 19));
        assert!(decode_records(&empty).unwrap().is_empty());
    }
}
