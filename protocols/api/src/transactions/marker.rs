//! Transaction markers: Kafka's control batches. A marker is a RecordBatch v2 with the
//! transactional (0x10) and control (0x20) attribute bits, the producer id and epoch of the
//! transaction, base sequence -1 and one record whose key is `int16 version (0), int16 type`
//! (0 ABORT, 1 COMMIT) and whose value is `int16 version (0), int32 coordinator epoch`.
//!
//! Only the coordinator writes markers; Produce refuses control batches from clients.

use bytes::Bytes;

use crate::Record;
use crate::batch::{BatchHeader, build_batch, decode_records, reseal};

/// Attribute bits of a marker batch: transactional and control.
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// One marker batch ending the transaction of `producer_id` at `epoch`.
pub fn build(producer_id: i64, epoch: i16, committed: bool, now_ms: i64) -> Bytes {
    let kind = if committed { COMMIT } else { ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    // One coordinator, never moved: its epoch stays 0.
    value.extend_from_slice(&0i32.to_be_bytes());
    let record = Record {
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        timestamp: now_ms,
        headers: Vec::new(),
    };
    let mut batch = build_batch(&[record]).to_vec();
    batch[21..23].copy_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    reseal(&mut batch);
    Bytes::from(batch)
}

/// Whether the control batch `batch` (whole, its header already parsed as `header`) is a
/// COMMIT marker (`Some(true)`), an ABORT marker (`Some(false)`), or neither (another control
/// type or an unreadable record: `None`, and the reader treats it as no marker).
pub fn committed(header: &BatchHeader, batch: &Bytes) -> Option<bool> {
    if !header.is_control() {
        return None;
    }
    let records = decode_records(batch).ok()?;
    let key = records.first()?.record.key.clone()?;
    let kind = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    match kind {
        COMMIT => Some(true),
        ABORT => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::VerifiedBatch;

    #[test]
    fn a_marker_verifies_and_reads_back() {
        for committed_flag in [true, false] {
            let batch = build(42, 3, committed_flag, 1_000);
            let verified = VerifiedBatch::verify(batch.clone()).expect("valid crc");
            let header = *verified.header();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(header.base_sequence, -1);
            assert_eq!(committed(&header, &batch), Some(committed_flag));
        }
    }

    #[test]
    fn a_data_batch_is_no_marker() {
        let batch = build_batch(&[Record::default()]);
        let header = BatchHeader::parse(&batch).expect("header");
        assert_eq!(committed(&header, &batch), None);
    }
}
