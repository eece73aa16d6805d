//! Rolling segments, retention by age and size, and moving the log start.
//!
//! Invariants: the active (last) segment is never deleted; deletion always removes a prefix of
//! the segment list; the log start only moves forward and is persisted (checkpoint file) before
//! the segment files it releases are unlinked.

use std::sync::Arc;

use super::checkpoint::{LOG_START_FILE, write_offset};
use super::error::StorageError;
use super::partition::{LogState, Partition, SegmentSlot};
use super::segment::{Segment, SegmentStats};

/// What one retention pass did on one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    pub segments_rolled: u64,
}

impl RetentionReport {
    pub(crate) fn add(&mut self, other: RetentionReport) {
        self.segments_deleted += other.segments_deleted;
        self.bytes_deleted += other.bytes_deleted;
        self.segments_rolled += other.segments_rolled;
    }
}

impl Partition {
    /// Rolls before an append of `batch_len` bytes when the active segment is full (by the
    /// configured size, or by the 32-bit index fields), or older than `segment_ms`.
    pub(crate) fn roll_if_needed(
        &self,
        state: &mut LogState,
        batch_len: u64,
        last_offset_delta: i32,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let active = state.active();
        if active.stats.is_empty() {
            return Ok(());
        }
        let size_limit = state.config.segment_bytes.min(u64::from(u32::MAX));
        let relative_end =
            active.stats.next_offset + i64::from(last_offset_delta) - active.segment.base_offset;
        let full =
            active.stats.size + batch_len > size_limit || relative_end >= i64::from(u32::MAX);
        if full || self.is_too_old(active, state.config.segment_ms, now_ms) {
            self.roll(state)?;
        }
        Ok(())
    }

    fn is_too_old(&self, slot: &SegmentSlot, segment_ms: u64, now_ms: i64) -> bool {
        let segment_ms = i64::try_from(segment_ms).unwrap_or(i64::MAX);
        !slot.stats.is_empty()
            && slot
                .stats
                .created_ms
                .is_some_and(|created| now_ms.saturating_sub(created) >= segment_ms)
    }

    /// Seals the active segment and starts a new one at the next offset.
    pub(crate) fn roll(&self, state: &mut LogState) -> Result<(), StorageError> {
        let base = state.next_offset();
        let segment = Segment::create(&self.files, &self.dir, base, &state.config)?;
        let old = &state.active().segment;
        old.seal()?;
        let old_base = old.base_offset;
        state.unsynced_sealed.push(old_base);
        state.dir_unsynced = true;
        state.segments.push(SegmentSlot {
            segment: Arc::new(segment),
            stats: SegmentStats::empty(base),
        });
        // A segment that was active when the log start passed its end is released now.
        let log_start = state.log_start;
        self.delete_prefix(state, |slot, _| slot.stats.next_offset <= log_start)?;
        self.update_gauges(state);
        Ok(())
    }

    /// Moves the log start to `offset` (clamped to the high watermark, never backwards),
    /// persists it, and deletes whole segments below it. Returns the log start.
    pub fn delete_before(&self, offset: i64) -> Result<i64, StorageError> {
        let mut state = self.state.lock();
        let target = offset.min(state.high_watermark);
        if target > state.log_start {
            write_offset(self.fs(), &self.dir, LOG_START_FILE, target)?;
            state.log_start = target;
            self.set_log_start(target);
            let log_start = state.log_start;
            self.delete_prefix(&mut state, |slot, _| slot.stats.next_offset <= log_start)?;
        }
        Ok(state.log_start)
    }

    /// One retention pass: roll an old active segment, then delete sealed segments by age and
    /// by size.
    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StorageError> {
        let mut state = self.state.lock();
        let mut report = RetentionReport::default();
        let segment_ms = state.config.segment_ms;
        let active = state.active_mut();
        if !active.stats.is_empty() && active.stats.created_ms.is_none() {
            // Recovered segments start their age at the first pass that sees them.
            active.stats.created_ms = Some(now_ms);
        }
        if self.is_too_old(state.active(), segment_ms, now_ms) {
            self.roll(&mut state)?;
            report.segments_rolled += 1;
        }
        if !state.config.cleanup.delete {
            // `compact` alone: segments go only through the cleaner, never by age or size.
            return Ok(report);
        }
        let retention_ms = state.config.retention_ms;
        if retention_ms >= 0 {
            let cutoff = now_ms.saturating_sub(retention_ms);
            report
                .add(self.delete_prefix(&mut state, |slot, _| slot.stats.max_timestamp < cutoff)?);
        }
        let retention_bytes = state.config.retention_bytes;
        if retention_bytes >= 0 {
            let limit = retention_bytes as u64;
            report.add(
                self.delete_prefix(&mut state, |slot, total| total - slot.stats.size >= limit)?,
            );
        }
        Ok(report)
    }

    /// Deletes sealed segments from the front while `should_delete(segment, total log bytes)`
    /// holds, advancing the log start to the first remaining segment.
    fn delete_prefix(
        &self,
        state: &mut LogState,
        should_delete: impl Fn(&SegmentSlot, u64) -> bool,
    ) -> Result<RetentionReport, StorageError> {
        let mut report = RetentionReport::default();
        let mut total = state.size_bytes();
        let mut count = 0;
        while count + 1 < state.segments.len() && should_delete(&state.segments[count], total) {
            total -= state.segments[count].stats.size;
            count += 1;
        }
        if count == 0 {
            return Ok(report);
        }
        let new_start = state.segments[count].segment.base_offset;
        if new_start > state.log_start {
            write_offset(self.fs(), &self.dir, LOG_START_FILE, new_start)?;
            state.log_start = new_start;
            self.set_log_start(new_start);
        }
        for slot in state.segments.drain(..count) {
            slot.segment.delete_files(self.fs(), &self.dir)?;
            report.segments_deleted += 1;
            report.bytes_deleted += slot.stats.size;
        }
        self.count_deleted_segments(report.segments_deleted);
        self.update_gauges(state);
        Ok(report)
    }
}
