//! What a produced batch must satisfy beyond its length and CRC before it is stored, so that
//! every reader gets back each record exactly once. Kafka's `LogValidator` refuses a client
//! batch whose record count is not positive or is not `lastOffsetDelta + 1`, and rewrites a
//! compressed one whose inner offsets are not 0, 1, 2, ...; Tributary stores batches as
//! received, so it refuses those instead (`INVALID_RECORD`), since a reader moves to the last
//! offset it delivered + 1 and would step over the records an out-of-order delta hides.
//!
//! Invariants of a batch that passes [`check_produced`]:
//! - `record_count == last_offset_delta + 1 >= 1`, and the records section holds that many
//!   whole records;
//! - record i has offset delta exactly i;
//! - every record's timestamp, base timestamp + delta, fits in an `i64`.
//!
//! A compressed batch is inflated to be checked (bounded by
//! [`MAX_INFLATED_BATCH_BYTES`](super::MAX_INFLATED_BATCH_BYTES)), as
//! Kafka's broker does. Keys, values and headers are stepped over by length, never copied.

use bytes::Bytes;

use super::{
    BATCH_HEADER_LEN, BatchError, BatchHeader, Compression, Cursor, VerifiedBatch, inflate_records,
};

/// Refuses a produced batch a reader could not read back record by record (see the module doc).
pub fn check_produced(batch: &VerifiedBatch) -> Result<(), BatchError> {
    let header = batch.header();
    if header.record_count <= 0 || header.record_count != header.last_offset_delta.wrapping_add(1) {
        return Err(BatchError::BadCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let bytes = batch.bytes();
    if header.compression() == Compression::None {
        let end = header.total_len.min(bytes.len());
        return check_records(header, bytes, BATCH_HEADER_LEN..end);
    }
    let inflated = inflate_records(header, bytes)?;
    check_records(header, &inflated, 0..inflated.len())
}

fn check_records(
    header: &BatchHeader,
    buf: &Bytes,
    section: std::ops::Range<usize>,
) -> Result<(), BatchError> {
    let mut cursor = Cursor {
        buf,
        pos: section.start,
        end: section.end,
    };
    for index in 0..i64::from(header.record_count) {
        let len = cursor.varint_len()?;
        let record_end = cursor
            .pos
            .checked_add(len)
            .filter(|end| *end <= section.end)
            .ok_or(BatchError::BadRecord("record length"))?;
        let _attributes = cursor.take(1)?;
        let timestamp_delta = cursor.varlong()?;
        let offset_delta = cursor.varlong()?;
        if offset_delta != index {
            return Err(BatchError::BadRecord(
                "record offset delta is not the record's position in its batch",
            ));
        }
        if header.base_timestamp.checked_add(timestamp_delta).is_none() {
            return Err(BatchError::BadRecord(
                "record timestamp delta overflows the base timestamp",
            ));
        }
        cursor.pos = record_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;
    use crate::batch::{Record, build_batch, build_compressed_batch, put_varlong, reseal};
    use crate::compression::Codec;

    fn records(count: usize) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp: 1_000 + i as i64,
                ..Record::default()
            })
            .collect()
    }

    /// A batch of value-only records with the given offset and timestamp deltas.
    fn batch_with_deltas(base_timestamp: i64, deltas: &[(i64, i64)]) -> VerifiedBatch {
        let mut body = BytesMut::new();
        for (offset_delta, timestamp_delta) in deltas {
            let mut record = BytesMut::new();
            record.put_i8(0);
            put_varlong(&mut record, *timestamp_delta);
            put_varlong(&mut record, *offset_delta);
            put_varlong(&mut record, -1); // key
            put_varlong(&mut record, 1);
            record.put_u8(b'x');
            put_varlong(&mut record, 0); // headers
            put_varlong(&mut body, record.len() as i64);
            body.extend_from_slice(&record);
        }
        let template = build_batch(&records(deltas.len()));
        let mut out = BytesMut::from(&template[..BATCH_HEADER_LEN]);
        out.extend_from_slice(&body);
        let len = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        out[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
        let mut bytes = out.to_vec();
        reseal(&mut bytes);
        VerifiedBatch::verify(Bytes::from(bytes)).expect("length and CRC are right")
    }

    #[test]
    fn batches_the_broker_builds_pass() {
        for count in [1, 2, 50] {
            let plain = VerifiedBatch::verify(build_batch(&records(count))).unwrap();
            assert_eq!(check_produced(&plain), Ok(()));
            let zstd = build_compressed_batch(&records(count), Codec::Zstd).unwrap();
            assert_eq!(
                check_produced(&VerifiedBatch::verify(zstd).unwrap()),
                Ok(())
            );
        }
    }

    #[test]
    fn out_of_order_offset_deltas_are_refused() {
        let ordered = batch_with_deltas(1_000, &[(0, 0), (1, 0), (2, 0)]);
        assert_eq!(check_produced(&ordered), Ok(()));
        let shuffled = batch_with_deltas(1_000, &[(2, 0), (0, 0), (1, 0)]);
        assert!(matches!(
            check_produced(&shuffled),
            Err(BatchError::BadRecord(_))
        ));
        let repeated = batch_with_deltas(1_000, &[(0, 0), (0, 0), (2, 0)]);
        assert!(check_produced(&repeated).is_err());
    }

    #[test]
    fn timestamps_further_apart_than_an_i64_round_trip_through_build_batch() {
        let far_apart = [i64::MAX, i64::MIN, 0].map(|timestamp| Record {
            timestamp,
            ..Record::default()
        });
        let batch = build_batch(&far_apart);
        let decoded = crate::batch::decode_records(&batch).unwrap();
        let timestamps: Vec<i64> = decoded.iter().map(|r| r.record.timestamp).collect();
        assert_eq!(timestamps, [i64::MAX, i64::MIN, 0]);
    }

    #[test]
    fn a_timestamp_delta_that_overflows_is_refused() {
        let overflowing = batch_with_deltas(1_000, &[(0, 0), (1, i64::MAX)]);
        assert!(matches!(
            check_produced(&overflowing),
            Err(BatchError::BadRecord(_))
        ));
        let underflowing = batch_with_deltas(-1_000, &[(0, i64::MIN)]);
        assert!(check_produced(&underflowing).is_err());
    }
}
