//! The in-memory model of one partition's log that the engines are checked against: batches
//! with their assigned offsets and timestamps, segments rolled at [`SEGMENT_BYTES`], the log
//! start and the next offset. Used by `tests/storage/model.rs` (the local engine, segment by
//! segment) and `tests/cloud` (the cloud engine, which has no segments and reads the same
//! batches back). Include it with `#[path = ...] mod model;`.

#![allow(dead_code)]

use bytes::Bytes;
use tributary_api::batch::{Record, build_batch};

/// The segment size the local engine's model test configures.
pub(crate) const SEGMENT_BYTES: u64 = 1024;

#[derive(Debug, Clone)]
pub(crate) struct ModelBatch {
    pub(crate) base: i64,
    pub(crate) bytes: Bytes,
    pub(crate) timestamps: Vec<i64>,
}

impl ModelBatch {
    pub(crate) fn last(&self) -> i64 {
        self.base + self.timestamps.len() as i64 - 1
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.timestamps.iter().copied().max().unwrap_or(i64::MIN)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ModelSegment {
    pub(crate) batches: Vec<ModelBatch>,
}

impl ModelSegment {
    pub(crate) fn size(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes.len() as u64).sum()
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.batches
            .iter()
            .map(ModelBatch::max_timestamp)
            .max()
            .unwrap_or(i64::MIN)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ModelPartition {
    pub(crate) segments: Vec<ModelSegment>,
    pub(crate) log_start: i64,
    pub(crate) next_offset: i64,
}

impl ModelPartition {
    pub(crate) fn new() -> Self {
        Self {
            segments: vec![ModelSegment::default()],
            log_start: 0,
            next_offset: 0,
        }
    }

    pub(crate) fn append(&mut self, bytes: Bytes, timestamps: Vec<i64>) -> i64 {
        let active_size = self.segments.last().map_or(0, ModelSegment::size);
        if active_size > 0 && active_size + bytes.len() as u64 > SEGMENT_BYTES {
            self.segments.push(ModelSegment::default());
            // Rolling releases sealed segments wholly below the log start.
            let start = self.log_start;
            while self.segments.len() > 1
                && self.segments[0]
                    .batches
                    .last()
                    .is_some_and(|b| b.last() < start)
            {
                self.segments.remove(0);
            }
        }
        let base = self.next_offset;
        self.next_offset += timestamps.len() as i64;
        if let Some(active) = self.segments.last_mut() {
            active.batches.push(ModelBatch {
                base,
                bytes,
                timestamps,
            });
        }
        base
    }

    pub(crate) fn batches(&self) -> impl Iterator<Item = &ModelBatch> {
        self.segments.iter().flat_map(|s| s.batches.iter())
    }

    pub(crate) fn size(&self) -> u64 {
        self.segments.iter().map(ModelSegment::size).sum()
    }

    /// Deletes sealed segments from the front while `should_delete(segment, total)` holds.
    pub(crate) fn delete_prefix(&mut self, should_delete: impl Fn(&ModelSegment, u64) -> bool) {
        let mut total = self.size();
        while self.segments.len() > 1 && should_delete(&self.segments[0], total) {
            total -= self.segments[0].size();
            self.segments.remove(0);
            let first_base = self.segments[0]
                .batches
                .first()
                .map_or(self.next_offset, |b| b.base);
            self.log_start = self.log_start.max(first_base);
        }
    }

    pub(crate) fn delete_before(&mut self, offset: i64) {
        let target = offset.min(self.next_offset);
        if target > self.log_start {
            self.log_start = target;
            let start = self.log_start;
            while self.segments.len() > 1
                && self.segments[0]
                    .batches
                    .last()
                    .is_some_and(|b| b.last() < start)
            {
                self.segments.remove(0);
            }
        }
    }

    /// What a read of `offset` with `max_bytes` returns: whole batches from the one holding
    /// `offset`, at least one, then as many as fit, base offsets assigned.
    pub(crate) fn expected_read(&self, offset: i64, max_bytes: usize) -> Vec<u8> {
        let mut expected = Vec::new();
        for batch in self.batches().filter(|b| b.last() >= offset) {
            if !expected.is_empty() && expected.len() + batch.bytes.len() > max_bytes {
                break;
            }
            expected.extend_from_slice(&with_base_offset(&batch.bytes, batch.base));
        }
        expected
    }

    /// The first record at or after `timestamp` and at or after the log start, as
    /// `(offset, timestamp)`.
    pub(crate) fn expected_time_lookup(&self, timestamp: i64) -> Option<(i64, i64)> {
        self.batches()
            .filter(|b| b.last() >= self.log_start && b.max_timestamp() >= timestamp)
            .find_map(|b| {
                b.timestamps
                    .iter()
                    .enumerate()
                    .map(|(i, ts)| (b.base + i as i64, *ts))
                    .find(|(offset, ts)| *ts >= timestamp && *offset >= self.log_start)
            })
    }

    /// An offset in `[log_start, hwm]` chosen by `pick`, occasionally just outside.
    pub(crate) fn pick_offset(&self, pick: u32) -> i64 {
        let span = (self.next_offset - self.log_start + 3) as u64;
        self.log_start - 1 + (u64::from(pick) % span) as i64
    }
}

pub(crate) fn with_base_offset(bytes: &Bytes, base: i64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[..8].copy_from_slice(&base.to_be_bytes());
    out
}

pub(crate) fn make_batch(timestamps: &[i64], value_len: usize, seed: usize) -> Bytes {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{seed}-{i}"))),
            value: Some(Bytes::from(vec![(seed + i) as u8; value_len])),
            timestamp: *ts,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}
