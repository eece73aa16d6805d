//! Log compaction: the cleaner pass of one partition whose `cleanup.policy` includes `compact`.
//!
//! A pass works on the *cleanable* segments: the longest prefix of sealed segments that lie
//! wholly below the high watermark (so, under `always`, only acknowledged batches) and below
//! the last stable offset (the first offset of a transaction still open, as Kafka cleans
//! nothing past it), and whose newest record is older than `min.compaction.lag.ms`. A
//! rewritten segment is fsync'd before it replaces the old one, whatever the durability
//! policy. It runs only when the bytes written since the last pass (the *dirty* part, after
//! the `clean point`) are at least `min.cleanable.dirty.ratio` of the cleanable bytes, or when
//! a kept tombstone's or marker's `delete.retention.ms` has run out. It then
//!
//! 0. reads the batch headers of the cleanable segments, and past them as far as needed, to
//!    know which transactions committed, aborted or are still open (`cleaner_txn`);
//! 1. builds the latest offset of every key over the cleanable segments (records of data
//!    batches outside transactions or in committed ones: an aborted record never counts, so it
//!    cannot hide a committed older value; memory bounded by [`MAX_KEY_BYTES`]: past it the pass
//!    stops at that segment and the rest waits for the next pass);
//! 2. rewrites each cleanable segment, keeping a record when it is the latest of its key or has
//!    no key, and never one of an aborted transaction; a tombstone (no value) is dropped once
//!    `delete.retention.ms` has passed since the pass that first cleaned it (the
//!    `cleaner-passes` file records when each pass ran and up to which offset); a transaction
//!    marker is kept while a batch of its transaction is, and dropped like a tombstone once none
//!    is (see `cleaner_txn` for the whole rule);
//! 3. swaps each rewritten segment in (see *Crash safety*), one at a time, throttled.
//!
//! Invariants kept for readers and recovery:
//! - Offsets never change and batches still tile the offset space: a batch keeps its base
//!   offset and last offset delta with fewer records (`rebuild_batch`); a run of batches that
//!   lost every record becomes one empty batch over the same offsets (`empty_batch`), except the
//!   last batch of each idempotent producer in the pass, which stays as an empty batch with its
//!   header (a marker stays whole), so the producer state rebuilt from headers is unchanged;
//!   an empty batch kept that way goes once its producer has a later batch. A segment still
//!   starts with a batch at its base offset. Records therefore have gaps, batches do not.
//! - Readers replaying transactions from the log see the same committed records before and
//!   after a pass: no transaction loses its marker while it has a batch left, and a pass that
//!   removed a marker bumps [`Partition::markers_removed`] under the partition lock, with the
//!   swap, so a transaction index asked after a read of the new segment replays the log again
//!   (an aborted transaction whose marker is gone must not be listed to a `read_committed`
//!   fetch: its producer's later batches would be dropped as aborted). A read of the old
//!   segment gets the marker without its records (they went in an earlier pass), which is
//!   harmless whatever the index lists.
//! - A reader that took a segment before the swap keeps reading the old file: its log handle is
//!   pinned open before the rename, and the old index mappings belong to unlinked files.
//! - Nothing above the high watermark or in the active segment is touched.
//!
//! Crash safety, per segment: the cleaned log is written to `<base>.log.clean.tmp` and fsync'd;
//! the recovery point is lowered to the segment's base (so a crash from here on re-verifies it
//! and rebuilds its indexes); the old index files are unlinked and new ones written; then, under
//! the partition lock, the temp file is renamed over `<base>.log`, the directory fsync'd and the
//! segment swapped. A crash before the rename leaves the old log (the temp file is removed at
//! open); after it, the new one. Either is whole. After the pass the new indexes are flushed
//! and the recovery point restored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use tributary_api::batch::{
    BATCH_HEADER_LEN, BatchHeader, StoredRecord, decode_records, empty_batch, rebuild_batch,
};

use super::checkpoint::{RECOVERY_POINT_FILE, read_offset, write_offset};
use super::cleaner_passes::{MAX_PASSES, Passes};
use super::cleaner_txn::{Kind, Scan, Transactions, TxnId};
use super::error::{CorruptReason, StorageError};
use super::fs::{FsFile, OpenMode};
use super::index::{OffsetIndex, TimeIndex};
use super::naming::segment_file;
use super::partition::Partition;
use super::segment::{
    INDEX_EXTENSION, LOG_EXTENSION, Segment, SegmentStats, TIME_INDEX_EXTENSION, write_entries,
};
use crate::telemetry::names;

/// Most key bytes (plus a fixed cost per key) one pass holds in memory.
pub const MAX_KEY_BYTES: usize = 256 << 20;
/// Per-key overhead counted against [`MAX_KEY_BYTES`] (map entry, `Bytes`, offset).
const KEY_OVERHEAD: usize = 64;

/// What one cleaner pass did on one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// 1 when the partition was cleaned, 0 when it was skipped (not compacted, not dirty).
    pub passes: u64,
    pub segments_rewritten: u64,
    /// Bytes of the segments the pass read.
    pub bytes_read: u64,
    /// Bytes the rewritten segments shrank by.
    pub bytes_removed: u64,
    pub records_removed: u64,
    /// Transaction markers removed (their transactions had no batch left).
    pub markers_removed: u64,
}

impl CleanReport {
    pub(crate) fn add(&mut self, other: CleanReport) {
        self.passes += other.passes;
        self.segments_rewritten += other.segments_rewritten;
        self.bytes_read += other.bytes_read;
        self.bytes_removed += other.bytes_removed;
        self.records_removed += other.records_removed;
        self.markers_removed += other.markers_removed;
    }
}

/// How a pass may go: `bytes_per_second` throttles reading and writing (0 = unthrottled).
#[derive(Debug, Clone, Copy)]
pub struct CleanerLimits {
    pub bytes_per_second: u64,
    pub max_key_bytes: usize,
}

impl Default for CleanerLimits {
    fn default() -> Self {
        Self {
            bytes_per_second: 64 << 20,
            max_key_bytes: MAX_KEY_BYTES,
        }
    }
}

/// A cleanable segment as the pass saw it.
struct Cleanable {
    segment: Arc<Segment>,
    size: u64,
    next_offset: i64,
}

/// Reads the batches of a segment one by one.
pub(super) struct BatchReader {
    file: Arc<dyn FsFile>,
    path: PathBuf,
    position: u64,
    size: u64,
}

impl BatchReader {
    fn next(&mut self) -> Result<Option<(BatchHeader, Bytes)>, StorageError> {
        let Some((header, at)) = self.next_header()? else {
            return Ok(None);
        };
        Ok(Some((header, self.read_batch(&header, at)?)))
    }

    /// The next batch's header and its position, without reading the rest of the batch.
    pub(super) fn next_header(&mut self) -> Result<Option<(BatchHeader, u64)>, StorageError> {
        if self.position >= self.size {
            return Ok(None);
        }
        let corrupt = |position, reason| StorageError::Corrupt {
            file: self.path.clone(),
            position,
            offset: None,
            reason,
        };
        let mut raw = [0u8; BATCH_HEADER_LEN];
        self.file
            .read_exact_at(&mut raw, self.position)
            .map_err(StorageError::io(&self.path))?;
        let header = BatchHeader::parse(&raw)
            .map_err(|err| corrupt(self.position, CorruptReason::Batch(err)))?;
        if self.position + header.total_len as u64 > self.size {
            return Err(corrupt(self.position, CorruptReason::PastEnd));
        }
        let at = self.position;
        self.position += header.total_len as u64;
        Ok(Some((header, at)))
    }

    /// The whole batch `header` heads at `at` (checked against the segment by `next_header`).
    pub(super) fn read_batch(&self, header: &BatchHeader, at: u64) -> Result<Bytes, StorageError> {
        let mut batch = vec![0u8; header.total_len];
        self.file
            .read_exact_at(&mut batch, at)
            .map_err(StorageError::io(&self.path))?;
        Ok(Bytes::from(batch))
    }
}

/// The records of a data batch the cleaner may thin out (`None`: a control or empty batch).
/// Whether they may go depends on the batch's transaction (see `cleaner_txn`).
fn cleanable_records(
    header: &BatchHeader,
    batch: &Bytes,
    path: &Path,
    position: u64,
) -> Result<Option<Vec<StoredRecord>>, StorageError> {
    if header.is_control() || header.record_count == 0 {
        return Ok(None);
    }
    decode_records(batch)
        .map(Some)
        .map_err(|err| StorageError::Corrupt {
            file: path.to_path_buf(),
            position,
            offset: Some(header.base_offset),
            reason: CorruptReason::Batch(err),
        })
}

/// Sleeps as long as `bytes` should take at `bytes_per_second` since `started`.
fn throttle(started: Instant, bytes: u64, bytes_per_second: u64) {
    if bytes_per_second == 0 {
        return;
    }
    let due = Duration::from_secs_f64(bytes as f64 / bytes_per_second as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

impl Partition {
    /// One cleaner pass (see the module docs). Skips partitions that are not compacted, not
    /// dirty enough, closed or poisoned.
    pub fn clean(&self, now_ms: i64, limits: CleanerLimits) -> Result<CleanReport, StorageError> {
        let result = self.clean_inner(now_ms, limits);
        match &result {
            Ok(report) if report.passes > 0 => {
                let topic = self.topic.clone();
                metrics::counter!(names::STORAGE_CLEANER_PASSES, "topic" => topic.clone())
                    .increment(1);
                metrics::counter!(names::STORAGE_CLEANER_BYTES, "topic" => topic.clone())
                    .increment(report.bytes_read);
                metrics::counter!(names::STORAGE_CLEANER_REMOVED_BYTES, "topic" => topic.clone())
                    .increment(report.bytes_removed);
                metrics::counter!(names::STORAGE_CLEANER_REMOVED_MARKERS, "topic" => topic)
                    .increment(report.markers_removed);
            }
            Ok(_) => {}
            Err(_) => {
                metrics::counter!(names::STORAGE_CLEANER_ERRORS, "topic" => self.topic.clone())
                    .increment(1);
            }
        }
        result
    }

    fn clean_inner(&self, now_ms: i64, limits: CleanerLimits) -> Result<CleanReport, StorageError> {
        let mut report = CleanReport::default();
        if self.is_poisoned() || self.is_closed() {
            return Ok(report);
        }
        let (config, mut cleanable, tail) = {
            let state = self.state.lock();
            let config = state.config.clone();
            if !config.cleanup.compact {
                return Ok(report);
            }
            let horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
            let cleanable: Vec<Cleanable> = state.segments[..state.segments.len() - 1]
                .iter()
                .take_while(|slot| {
                    let base = slot.segment.base_offset;
                    // Wholly visible: before the high watermark's segment, or all of it.
                    let visible = base < state.hwm_segment_base
                        || (base == state.hwm_segment_base
                            && state.hwm_position >= slot.stats.size);
                    visible
                        && slot.stats.next_offset <= state.high_watermark
                        && slot.stats.max_timestamp <= horizon
                })
                .map(|slot| Cleanable {
                    segment: Arc::clone(&slot.segment),
                    size: slot.stats.size,
                    next_offset: slot.stats.next_offset,
                })
                .collect();
            // The rest of the log below the high watermark, where transactions of the
            // cleanable segments may end.
            let tail: Vec<(Arc<Segment>, u64)> = state.segments[cleanable.len()..]
                .iter()
                .map_while(|slot| {
                    let base = slot.segment.base_offset;
                    let size = match base.cmp(&state.hwm_segment_base) {
                        std::cmp::Ordering::Less => slot.stats.size,
                        std::cmp::Ordering::Equal => state.hwm_position,
                        std::cmp::Ordering::Greater => return None,
                    };
                    Some((Arc::clone(&slot.segment), size))
                })
                .collect();
            (config, cleanable, tail)
        };
        let fs = self.fs();
        let mut passes = Passes::load(fs, &self.dir);
        let worth_a_pass = |cleanable: &[Cleanable]| {
            let total: u64 = cleanable.iter().map(|c| c.size).sum();
            let dirty: u64 = cleanable
                .iter()
                .filter(|c| c.next_offset > passes.clean_point())
                .map(|c| c.size)
                .sum();
            let dirty_enough =
                dirty > 0 && dirty as f64 >= config.min_cleanable_dirty_ratio * total as f64;
            let tombstones_due = passes.tombstones_due_ms > 0 && now_ms >= passes.tombstones_due_ms;
            !cleanable.is_empty() && (dirty_enough || tombstones_due)
        };
        if !worth_a_pass(&cleanable) {
            return Ok(report);
        }
        let started = Instant::now();
        // 0. Which transactions committed or aborted; nothing at or past the LSO is cleaned.
        let mut scan = Scan::default();
        for item in &cleanable {
            self.scan_transactions(&item.segment, item.size, &mut scan)?;
        }
        scan.end_of_cleanable();
        for (segment, size) in &tail {
            if !scan.undecided() {
                break;
            }
            self.scan_transactions(segment, *size, &mut scan)?;
        }
        if let Some(stable) = scan.last_stable_offset() {
            let below = cleanable
                .iter()
                .take_while(|c| c.next_offset <= stable)
                .count();
            cleanable.truncate(below);
            if !worth_a_pass(&cleanable) {
                return Ok(report);
            }
        }
        let mut txns = scan.finish();
        // 1. The latest offset of each key, and the last batch of each producer.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        let mut last_of_producer: HashMap<i64, i64> = HashMap::new();
        let mut key_bytes = 0usize;
        let mut scanned = 0;
        for item in &cleanable {
            let mut reader = self.batch_reader(&item.segment, item.size)?;
            let mut position = 0;
            while let Some((header, batch)) = reader.next()? {
                if header.producer_id >= 0 {
                    last_of_producer.insert(header.producer_id, header.base_offset);
                }
                let path = &item.segment.log_path;
                // Aborted records never count as their key's latest, nor do undecided ones.
                let counts = matches!(
                    txns.classify(&header, &batch),
                    Kind::Plain | Kind::Committed(_)
                );
                if counts && let Some(records) = cleanable_records(&header, &batch, path, position)?
                {
                    for stored in records {
                        if let Some(key) = stored.record.key {
                            let len = key.len();
                            if latest.insert(key, stored.offset).is_none() {
                                key_bytes += len + KEY_OVERHEAD;
                            }
                        }
                    }
                }
                position = reader.position;
            }
            report.bytes_read += item.size;
            scanned += 1;
            throttle(started, report.bytes_read, limits.bytes_per_second);
            if key_bytes > limits.max_key_bytes {
                break;
            }
        }
        cleanable.truncate(scanned);
        let end = cleanable.last().map_or(0, |c| c.next_offset);
        // 2 and 3. Rewrite and swap, segment by segment.
        let old_recovery_point = read_offset(fs, &self.dir, RECOVERY_POINT_FILE);
        let mut lowered = false;
        let mut tombstones_first_cleaned: Option<i64> = None;
        let mut swapped = Vec::new();
        let mut written = 0u64;
        txns.restart();
        for item in &cleanable {
            let rewrite = Rewrite {
                latest: &latest,
                last_of_producer: &last_of_producer,
                passes: &passes,
                now_ms,
                delete_retention_ms: config.delete_retention_ms,
            };
            let outcome = rewrite.segment(self, item, &mut txns)?;
            if let Some(first) = outcome.tombstones_first_cleaned {
                tombstones_first_cleaned =
                    Some(tombstones_first_cleaned.map_or(first, |t: i64| t.min(first)));
            }
            let Some(cleaned) = outcome.cleaned else {
                continue;
            };
            if !lowered && old_recovery_point.is_none_or(|point| point > item.segment.base_offset) {
                write_offset(fs, &self.dir, RECOVERY_POINT_FILE, item.segment.base_offset)?;
                lowered = true;
            }
            written += cleaned.size;
            report.records_removed += outcome.records_removed;
            if let Some(segment) = self.swap_in(item, cleaned, outcome.markers_removed)? {
                report.segments_rewritten += 1;
                report.bytes_removed += item.size - segment.1;
                report.markers_removed += outcome.markers_removed;
                swapped.push(segment.0);
            }
            throttle(
                started,
                report.bytes_read + written,
                limits.bytes_per_second,
            );
        }
        for segment in &swapped {
            segment.flush_indexes()?;
        }
        if lowered && let Some(point) = old_recovery_point {
            write_offset(fs, &self.dir, RECOVERY_POINT_FILE, point)?;
        }
        let end = end.max(passes.clean_point());
        passes.passes.push((end, now_ms));
        if passes.passes.len() > MAX_PASSES {
            passes.passes.remove(0);
        }
        passes.tombstones_due_ms = tombstones_first_cleaned.map_or(0, |first| {
            first.saturating_add(config.delete_retention_ms).max(1)
        });
        passes.store(fs, &self.dir)?;
        report.passes = 1;
        tracing::debug!(topic = %self.topic, partition = self.id, ?report, "cleaner pass");
        Ok(report)
    }

    pub(super) fn batch_reader(
        &self,
        segment: &Segment,
        size: u64,
    ) -> Result<BatchReader, StorageError> {
        Ok(BatchReader {
            file: segment.file()?,
            path: segment.log_path.clone(),
            position: 0,
            size,
        })
    }

    /// Writes the indexes of a cleaned segment and swaps it in for `item` (see the module
    /// docs); `None` when the segment went (retention) while it was being cleaned.
    fn swap_in(
        &self,
        item: &Cleanable,
        cleaned: CleanedFile,
        markers_removed: u64,
    ) -> Result<Option<(Arc<Segment>, u64)>, StorageError> {
        let fs = self.fs();
        let base = item.segment.base_offset;
        let log_path = segment_file(&self.dir, base, LOG_EXTENSION);
        let index_path = segment_file(&self.dir, base, INDEX_EXTENSION);
        let time_path = segment_file(&self.dir, base, TIME_INDEX_EXTENSION);
        // New inodes for the indexes: the old segment's mappings stay valid for its readers.
        for path in [&index_path, &time_path] {
            match fs.remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(StorageError::io(path.clone())(err)),
            }
        }
        let files = &self.files;
        let entries = cleaned.entries.len().max(1);
        let offset_index = OffsetIndex::create(files.fs(), &index_path, base, entries)
            .map_err(StorageError::io(&index_path))?;
        let time_index = TimeIndex::create(files.fs(), &time_path, base, entries)
            .map_err(StorageError::io(&time_path))?;
        let mut state = self.state.lock();
        let present = state
            .segments
            .iter()
            .position(|slot| Arc::ptr_eq(&slot.segment, &item.segment));
        let Some(at) = present else {
            drop(state);
            let _ = fs.remove_file(&cleaned.temp_path);
            for path in [&index_path, &time_path] {
                let _ = fs.remove_file(path);
            }
            return Ok(None);
        };
        item.segment.log.pin();
        fs.rename(&cleaned.temp_path, &log_path)
            .map_err(StorageError::io(&log_path))?;
        fs.sync_dir(&self.dir)
            .map_err(StorageError::io(&self.dir))?;
        let log = fs
            .open(&log_path, OpenMode::Append)
            .map_err(StorageError::io(&log_path))?;
        let segment = Arc::new(Segment {
            base_offset: base,
            log: files.file_with(log_path.clone(), log),
            log_path,
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
        });
        for entries in &cleaned.entries {
            write_entries(&segment, *entries)?;
        }
        segment.seal()?;
        if state.hwm_segment_base == base {
            // The high watermark sat at the end of this (wholly visible) segment.
            state.hwm_position = cleaned.size;
        }
        let slot = &mut state.segments[at];
        slot.segment = Arc::clone(&segment);
        slot.stats = cleaned.stats;
        if markers_removed > 0 {
            // In the same critical section as the swap: a reader that got the new segment
            // (under this lock, later) sees the count moved, so the transaction index it asks
            // next replays instead of listing an aborted transaction whose marker it did not
            // get (its client would then drop the producer's later committed batches).
            self.markers_removed
                .fetch_add(markers_removed, Ordering::Release);
        }
        self.update_gauges(&state);
        Ok(Some((segment, cleaned.size)))
    }
}

/// A cleaned segment written to its temp file, with its figures and index entries.
struct CleanedFile {
    temp_path: PathBuf,
    size: u64,
    stats: SegmentStats,
    entries: Vec<super::segment::NewEntries>,
}

/// What rewriting one segment gave.
struct Rewritten {
    /// `None` when nothing changed (the segment stays as it is).
    cleaned: Option<CleanedFile>,
    records_removed: u64,
    markers_removed: u64,
    /// The earliest first-cleaned time of the tombstones (and removable markers) kept.
    tombstones_first_cleaned: Option<i64>,
}

/// The rules of one pass, applied to each segment.
struct Rewrite<'a> {
    latest: &'a HashMap<Bytes, i64>,
    last_of_producer: &'a HashMap<i64, i64>,
    passes: &'a Passes,
    now_ms: i64,
    delete_retention_ms: i64,
}

/// Batches of a cleaned segment, accumulated with the same figures appends keep.
struct Output {
    batches: Vec<Bytes>,
    stats: SegmentStats,
    entries: Vec<super::segment::NewEntries>,
    interval: u32,
    /// Offsets of whole batches that lost every record: (first, last, max timestamp).
    gap: Option<(i64, i64, i64)>,
}

impl Output {
    fn push(&mut self, batch: Bytes) {
        if let Some((first, last, max_timestamp)) = self.gap.take() {
            self.push_now(empty_batch(first, last, max_timestamp));
        }
        self.push_now(batch);
    }

    fn push_now(&mut self, batch: Bytes) {
        if let Ok(header) = BatchHeader::parse(&batch) {
            self.entries
                .push(self.stats.observe(&header, self.interval));
        }
        self.batches.push(batch);
    }

    fn skip(&mut self, header: &BatchHeader) {
        let last = header.last_offset();
        self.gap = match self.gap {
            // An empty batch spans at most i32::MAX + 1 offsets.
            Some((first, _, ts)) if last - first <= i64::from(i32::MAX) => {
                Some((first, last, ts.max(header.max_timestamp)))
            }
            Some((first, previous_last, ts)) => {
                self.push_now(empty_batch(first, previous_last, ts));
                Some((header.base_offset, last, header.max_timestamp))
            }
            None => Some((header.base_offset, last, header.max_timestamp)),
        };
    }
}

impl Rewrite<'_> {
    fn keeps(&self, stored: &StoredRecord, tombstones_first_cleaned: &mut Option<i64>) -> bool {
        let Some(key) = &stored.record.key else {
            return true;
        };
        if self
            .latest
            .get(key)
            .is_some_and(|latest| *latest != stored.offset)
        {
            return false;
        }
        if stored.record.value.is_none() {
            let first = match self.passes.first_cleaned(stored.offset) {
                Some(first) if self.now_ms.saturating_sub(first) >= self.delete_retention_ms => {
                    return false;
                }
                Some(first) => first,
                // First cleaned by this pass.
                None => self.now_ms,
            };
            *tombstones_first_cleaned =
                Some(tombstones_first_cleaned.map_or(first, |t: i64| t.min(first)));
        }
        true
    }

    /// Whether the marker `header` heads, closing `closed`, goes (see `cleaner_txn`); a
    /// marker kept only for its delete horizon joins `tombstones_first_cleaned`.
    fn marker_goes(
        &self,
        header: &BatchHeader,
        closed: Option<TxnId>,
        txns: &Transactions,
        tombstones_first_cleaned: &mut Option<i64>,
    ) -> bool {
        let last_of_producer =
            self.last_of_producer.get(&header.producer_id) == Some(&header.base_offset);
        if txns.marker_needed(closed) || last_of_producer {
            return false;
        }
        let first = match self.passes.first_cleaned(header.base_offset) {
            Some(first) if self.now_ms.saturating_sub(first) >= self.delete_retention_ms => {
                return true;
            }
            Some(first) => first,
            None => self.now_ms,
        };
        *tombstones_first_cleaned =
            Some(tombstones_first_cleaned.map_or(first, |t: i64| t.min(first)));
        false
    }

    fn segment(
        &self,
        partition: &Partition,
        item: &Cleanable,
        txns: &mut Transactions,
    ) -> Result<Rewritten, StorageError> {
        let mut reader = partition.batch_reader(&item.segment, item.size)?;
        let interval = partition.state.lock().config.index_interval_bytes;
        let mut out = Output {
            batches: Vec::new(),
            stats: SegmentStats::empty(item.segment.base_offset),
            entries: Vec::new(),
            interval,
            gap: None,
        };
        let mut removed = 0u64;
        let mut markers = 0u64;
        // Whether the segment differs from the original (a batch went or shrank).
        let mut changed = false;
        let mut tombstones_first_cleaned = None;
        let mut position = 0;
        while let Some((header, batch)) = reader.next()? {
            let path = &item.segment.log_path;
            let kind = txns.classify(&header, &batch);
            let last_of_producer =
                self.last_of_producer.get(&header.producer_id) == Some(&header.base_offset);
            let txn = match kind {
                Kind::Open | Kind::Control => {
                    out.push(batch);
                    position = reader.position;
                    continue;
                }
                Kind::Marker(closed) => {
                    if self.marker_goes(&header, closed, txns, &mut tombstones_first_cleaned) {
                        markers += 1;
                        removed += u64::try_from(header.record_count).unwrap_or(0);
                        changed = true;
                        out.skip(&header);
                    } else {
                        out.push(batch);
                    }
                    position = reader.position;
                    continue;
                }
                Kind::Plain => None,
                Kind::Committed(txn) | Kind::Aborted(txn) => Some(txn),
            };
            let records = cleanable_records(&header, &batch, path, position)?;
            position = reader.position;
            let Some(records) = records else {
                // An empty batch a producer's header was kept in: redundant once the producer
                // has a later batch (and it would keep its transaction's marker forever).
                if header.producer_id >= 0 && header.record_count == 0 && !last_of_producer {
                    changed = true;
                    out.skip(&header);
                } else {
                    if let Some(txn) = txn {
                        txns.keep(txn);
                    }
                    out.push(batch);
                }
                continue;
            };
            let total = records.len();
            let kept: Vec<StoredRecord> = if matches!(kind, Kind::Aborted(_)) {
                Vec::new()
            } else {
                records
                    .into_iter()
                    .filter(|stored| self.keeps(stored, &mut tombstones_first_cleaned))
                    .collect()
            };
            removed += (total - kept.len()) as u64;
            if kept.len() == total {
                out.push(batch);
            } else if !kept.is_empty() || last_of_producer {
                let rebuilt = rebuild_batch(&header, &kept).map_err(StorageError::io(path))?;
                out.push(rebuilt);
            } else {
                changed = true;
                out.skip(&header);
                continue;
            }
            changed |= kept.len() != total;
            if let Some(txn) = txn {
                txns.keep(txn);
            }
        }
        if let Some((first, last, max_timestamp)) = out.gap.take() {
            out.push_now(empty_batch(first, last, max_timestamp));
        }
        if !changed {
            return Ok(Rewritten {
                cleaned: None,
                records_removed: 0,
                markers_removed: 0,
                tombstones_first_cleaned,
            });
        }
        let fs = partition.fs();
        let temp_path = item
            .segment
            .log_path
            .with_extension(format!("{LOG_EXTENSION}.clean.tmp"));
        let file = fs
            .open(&temp_path, OpenMode::CreateAppend)
            .map_err(StorageError::io(&temp_path))?;
        file.set_len(0).map_err(StorageError::io(&temp_path))?;
        for batch in &out.batches {
            file.append_two(&batch[..8], &batch[8..])
                .map_err(StorageError::io(&temp_path))?;
        }
        file.sync_data().map_err(StorageError::io(&temp_path))?;
        Ok(Rewritten {
            cleaned: Some(CleanedFile {
                temp_path,
                size: out.stats.size,
                stats: out.stats,
                entries: out.entries,
            }),
            records_removed: removed,
            markers_removed: markers,
            tombstones_first_cleaned,
        })
    }
}
