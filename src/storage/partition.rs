//! One partition's log: the append path with group commit, poisoning, and the shared state the
//! read, retention and recovery modules work on.
//!
//! Locking: `state` (segments, figures, high watermark) is held only for in-memory updates and
//! the `pwrite` of one batch; `sync` serialises fsync leadership. Lock order is always
//! `sync` -> (released) -> `state`, or `state` alone; `state` is never held while waiting on
//! `sync`, so the fsync leader never blocks writers.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use event_listener::{Event, EventListener};
use metrics::{Counter, Gauge, Histogram};
use parking_lot::{Condvar, Mutex};
use tributary_api::Durability;
use tributary_api::batch::{
    BatchError, BatchHeader, Compression, VerifiedBatch, decode_records, recompress_batch,
    set_log_append_time, verify_batch,
};

use super::LogConfig;
use super::error::StorageError;
use super::fs::Fs;
use super::open_files::{LogFile, OpenFiles};
use super::segment::{Segment, SegmentStats, write_entries};
use crate::telemetry::names;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What a written batch still waits for before it may be acknowledged: under `Always` the
/// offset the fsync'd prefix must reach, otherwise nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a batch is acknowledged only after `Partition::wait_durable`"]
pub struct Durable(Option<i64>);

impl Durable {
    /// Whether [`Partition::wait_durable`] has anything to wait for.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }
}

/// A segment and its running figures.
#[derive(Debug)]
pub(crate) struct SegmentSlot {
    pub(crate) segment: Arc<Segment>,
    pub(crate) stats: SegmentStats,
}

/// Everything guarded by the partition lock.
#[derive(Debug)]
pub(crate) struct LogState {
    pub(crate) config: LogConfig,
    /// Ascending by base offset; never empty; the last one is the active segment.
    pub(crate) segments: Vec<SegmentSlot>,
    pub(crate) log_start: i64,
    /// Readers see offsets below this. Under `Always` it trails the written end until fsync.
    pub(crate) high_watermark: i64,
    /// The segment and byte position where the high watermark's batch would start.
    pub(crate) hwm_segment_base: i64,
    pub(crate) hwm_position: u64,
    /// Base offsets of rolled segments that may hold data not yet fsync'd.
    pub(crate) unsynced_sealed: Vec<i64>,
    /// A segment was created since the partition directory was last fsync'd: the next fsync
    /// round syncs the directory too, or the new segment's entry could vanish at a power loss.
    pub(crate) dir_unsynced: bool,
    pub(crate) last_sync: Instant,
}

impl LogState {
    pub(crate) fn new(config: LogConfig, segments: Vec<SegmentSlot>, log_start: i64) -> Self {
        let (hwm_segment_base, hwm_position, high_watermark) =
            segments.last().map_or((0, 0, 0), |s| {
                (s.segment.base_offset, s.stats.size, s.stats.next_offset)
            });
        Self {
            config,
            segments,
            log_start,
            high_watermark,
            hwm_segment_base,
            hwm_position,
            unsynced_sealed: Vec::new(),
            dir_unsynced: false,
            last_sync: Instant::now(),
        }
    }

    pub(crate) fn active(&self) -> &SegmentSlot {
        // The constructor and every removal keep at least one segment.
        &self.segments[self.segments.len() - 1]
    }

    pub(crate) fn active_mut(&mut self) -> &mut SegmentSlot {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.active().stats.next_offset
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.stats.size).sum()
    }

    fn publish_written(&mut self) {
        let active = self.active();
        let (base, size, next) = (
            active.segment.base_offset,
            active.stats.size,
            active.stats.next_offset,
        );
        self.publish(next, base, size);
    }

    /// Raises the high watermark (never lowers it).
    pub(crate) fn publish(&mut self, offset: i64, segment_base: i64, position: u64) {
        if offset > self.high_watermark {
            self.high_watermark = offset;
            self.hwm_segment_base = segment_base;
            self.hwm_position = position;
        }
    }
}

#[derive(Debug)]
struct SyncState {
    /// Every batch below this offset is on disk.
    synced_offset: i64,
    /// A leader is running `sync_data` right now.
    leader: bool,
}

/// Metric handles, resolved once per partition.
#[derive(Debug)]
struct PartitionMetrics {
    appended_bytes: Counter,
    appended_records: Counter,
    fsyncs: Counter,
    fsync_seconds: Histogram,
    segments: Gauge,
    bytes: Gauge,
    segments_deleted: Counter,
}

/// One partition of a topic: a directory of segments. See the module docs of `storage`.
pub struct Partition {
    pub(crate) topic: String,
    pub(crate) id: u32,
    pub(crate) dir: PathBuf,
    pub(crate) files: Arc<OpenFiles>,
    pub(crate) state: Mutex<LogState>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    high_watermark: AtomicI64,
    log_start: AtomicI64,
    written_offset: AtomicI64,
    poisoned: AtomicBool,
    /// Set when the topic is deleted or the partition is closed.
    closed: AtomicBool,
    fsyncs: AtomicU64,
    /// Transaction markers the cleaner removed since the partition was opened.
    pub(crate) markers_removed: AtomicU64,
    appended: Event,
    metrics: PartitionMetrics,
    #[cfg(test)]
    pub(crate) fail_next_sync: AtomicBool,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("topic", &self.topic)
            .field("id", &self.id)
            .field("high_watermark", &self.high_watermark())
            .field("log_start", &self.log_start_offset())
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Partition {
    pub(crate) fn new(
        topic: &str,
        id: u32,
        dir: PathBuf,
        files: Arc<OpenFiles>,
        state: LogState,
    ) -> Self {
        let labels = [("topic", topic.to_owned()), ("partition", id.to_string())];
        let metrics = PartitionMetrics {
            appended_bytes: metrics::counter!(names::STORAGE_APPENDED_BYTES, "topic" => topic.to_owned()),
            appended_records: metrics::counter!(names::STORAGE_APPENDED_RECORDS, "topic" => topic.to_owned()),
            fsyncs: metrics::counter!(names::STORAGE_FSYNCS, "topic" => topic.to_owned()),
            fsync_seconds: metrics::histogram!(names::STORAGE_FSYNC_SECONDS),
            segments: metrics::gauge!(names::STORAGE_PARTITION_SEGMENTS, &labels),
            bytes: metrics::gauge!(names::STORAGE_PARTITION_BYTES, &labels),
            segments_deleted: metrics::counter!(names::STORAGE_SEGMENTS_DELETED, "topic" => topic.to_owned()),
        };
        let next = state.next_offset();
        let partition = Self {
            topic: topic.to_owned(),
            id,
            dir,
            files,
            high_watermark: AtomicI64::new(state.high_watermark),
            log_start: AtomicI64::new(state.log_start),
            written_offset: AtomicI64::new(next),
            sync: Mutex::new(SyncState {
                synced_offset: next,
                leader: false,
            }),
            synced: Condvar::new(),
            state: Mutex::new(state),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            markers_removed: AtomicU64::new(0),
            appended: Event::new(),
            metrics,
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
        };
        partition.update_gauges(&partition.state.lock());
        partition
    }

    /// Verifies, numbers and writes one batch; returns once durable per the durability policy.
    pub fn append(&self, batch: &[u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        let (info, durable) = self.append_unsynced(batch, now_ms)?;
        self.wait_durable(durable)?;
        Ok(info)
    }

    /// The first half of [`Partition::append`]: verifies, numbers and writes the batch, and
    /// returns where it landed with what [`Partition::wait_durable`] must wait for before the
    /// batch may be acknowledged. Callers that write several batches in order and wait for them
    /// afterwards let one fsync cover all of them.
    pub fn append_unsynced(
        &self,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<(AppendInfo, Durable), StorageError> {
        self.check_writable()?;
        let header = verify_batch(batch)?;
        self.append_checked(batch, header, now_ms)
    }

    /// [`Partition::append_unsynced`] without a second CRC pass over a batch the caller has
    /// verified already.
    pub fn append_verified(
        &self,
        batch: &VerifiedBatch,
        now_ms: i64,
    ) -> Result<(AppendInfo, Durable), StorageError> {
        self.check_writable()?;
        self.append_checked(batch.bytes(), *batch.header(), now_ms)
    }

    /// `header` is what `verify_batch` returned for exactly `batch`.
    fn append_checked(
        &self,
        batch: &[u8],
        mut header: BatchHeader,
        now_ms: i64,
    ) -> Result<(AppendInfo, Durable), StorageError> {
        // Read without holding the lock over the checks below; a config changed meanwhile
        // applies from the next append.
        let (compact, log_append_time, compression) = {
            let state = self.state.lock();
            (
                state.config.cleanup.compact,
                state.config.log_append_time,
                state.config.compression.target(),
            )
        };
        if compact && !header.is_control() {
            refuse_keyless(batch)?;
        }
        let recompressed: Bytes;
        let batch = match compression {
            Some(target) if target != header.compression() && !header.is_control() => {
                // The topic's `compression.type`: the records are stored with its codec
                // (offsets, sequences and timestamps unchanged), as Kafka's broker does.
                recompressed = recompress(batch, &header, target)?;
                header = verify_batch(&recompressed)?;
                &recompressed[..]
            }
            _ => batch,
        };
        let stamped: Vec<u8>;
        let batch = if log_append_time && !header.is_control() {
            // Kafka's LogAppendTime: the batch's max timestamp becomes the append time and the
            // timestamp-type attribute is set (the CRC is recomputed); readers take the max
            // timestamp as every record's timestamp.
            let mut copy = batch.to_vec();
            set_log_append_time(&mut copy, now_ms);
            header.attributes |= 0x08;
            header.max_timestamp = now_ms;
            stamped = copy;
            &stamped[..]
        } else {
            batch
        };
        let (info, durable_target) = {
            let mut state = self.state.lock();
            self.check_writable()?;
            let limit = state.config.max_batch_bytes as usize;
            if batch.len() > limit {
                return Err(StorageError::BatchTooLarge {
                    size: batch.len(),
                    limit,
                });
            }
            self.roll_if_needed(
                &mut state,
                batch.len() as u64,
                header.last_offset_delta,
                now_ms,
            )?;
            let base_offset = state.next_offset();
            header.base_offset = base_offset;
            self.write_batch(&mut state, batch, base_offset)?;
            let interval = state.config.index_interval_bytes;
            let active = state.active_mut();
            active.stats.created_ms.get_or_insert(now_ms);
            let entries = active.stats.observe(&header, interval);
            let segment = Arc::clone(&active.segment);
            if let Err(err) = write_entries(&segment, entries) {
                self.poison(&err);
                return Err(self.poisoned_error());
            }
            self.written_offset
                .store(state.next_offset(), Ordering::Release);
            let always = state.config.durability == Durability::Always;
            if !always {
                state.publish_written();
                self.high_watermark
                    .store(state.high_watermark, Ordering::Release);
            }
            self.update_gauges(&state);
            let info = AppendInfo {
                base_offset,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
            };
            (info, always.then_some(info.last_offset + 1))
        };
        self.metrics.appended_bytes.increment(batch.len() as u64);
        self.metrics
            .appended_records
            .increment(header.offset_count());
        if durable_target.is_none() {
            self.appended.notify(usize::MAX);
        }
        Ok((info, Durable(durable_target)))
    }

    /// Returns once the batch `durable` came from is as durable as the policy asks (under
    /// `Always`, fsync'd, leading the fsync if nobody is; otherwise at once).
    pub fn wait_durable(&self, durable: Durable) -> Result<(), StorageError> {
        match durable.0 {
            Some(target) => self.sync_up_to(target),
            None => Ok(()),
        }
    }

    /// Writes the batch at the end of the active segment with its new base offset, in one
    /// `writev` (the log is opened in append mode) so the batch is never copied. A failed write
    /// poisons the partition; the high watermark is untouched, so no torn batch is visible.
    fn write_batch(
        &self,
        state: &mut LogState,
        batch: &[u8],
        base_offset: i64,
    ) -> Result<(), StorageError> {
        let active = state.active();
        let position = active.stats.size;
        let file = match active.segment.file() {
            Ok(file) => file,
            Err(err) => {
                self.poison(&err);
                return Err(self.poisoned_error());
            }
        };
        if let Err(source) = file.append_two(&base_offset.to_be_bytes(), &batch[8..]) {
            let path = active.segment.log_path.clone();
            // Best effort: drop the partial bytes so a restart sees a clean end.
            let _ = file.set_len(position);
            self.poison(&StorageError::Io { path, source });
            return Err(self.poisoned_error());
        }
        Ok(())
    }

    /// Waits until every batch below `target` is fsync'd, leading the fsync if nobody is.
    fn sync_up_to(&self, target: i64) -> Result<(), StorageError> {
        let mut sync = self.sync.lock();
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                return Err(self.poisoned_error());
            }
            if sync.synced_offset >= target {
                return Ok(());
            }
            if sync.leader {
                self.synced.wait(&mut sync);
                continue;
            }
            sync.leader = true;
            drop(sync);
            let result = self.sync_written_data();
            sync = self.sync.lock();
            sync.leader = false;
            match result {
                Ok(synced) => sync.synced_offset = sync.synced_offset.max(synced),
                Err(err) => self.poison(&err),
            }
            self.synced.notify_all();
        }
    }

    /// fsyncs everything written so far (used by the interval flusher, `flush_all` and close).
    pub(crate) fn sync_all_written(&self) -> Result<(), StorageError> {
        self.sync_up_to(self.written_offset.load(Ordering::Acquire))
    }

    /// True when written data awaits an fsync.
    pub(crate) fn is_dirty(&self) -> bool {
        !self.poisoned.load(Ordering::Acquire)
            && self.sync.lock().synced_offset < self.written_offset.load(Ordering::Acquire)
    }

    /// One fsync round: the sealed segments still dirty, then the active one. Returns the
    /// offset below which everything is now durable, and publishes it as high watermark.
    fn sync_written_data(&self) -> Result<i64, StorageError> {
        let (files, target, segment_base, position, sync_dir) = {
            let mut state = self.state.lock();
            let pending = std::mem::take(&mut state.unsynced_sealed);
            let sync_dir = std::mem::take(&mut state.dir_unsynced);
            let mut files: Vec<(Arc<LogFile>, PathBuf)> = state
                .segments
                .iter()
                .filter(|s| pending.contains(&s.segment.base_offset))
                .map(|s| (Arc::clone(&s.segment.log), s.segment.log_path.clone()))
                .collect();
            let active = state.active();
            files.push((
                Arc::clone(&active.segment.log),
                active.segment.log_path.clone(),
            ));
            (
                files,
                active.stats.next_offset,
                active.segment.base_offset,
                active.stats.size,
                sync_dir,
            )
        };
        if sync_dir {
            self.fs()
                .sync_dir(&self.dir)
                .map_err(StorageError::io(&self.dir))?;
        }
        for (file, path) in files {
            let started = Instant::now();
            #[cfg(test)]
            if self.fail_next_sync.swap(false, Ordering::AcqRel) {
                return Err(StorageError::Io {
                    path,
                    source: std::io::Error::other("injected fsync failure"),
                });
            }
            file.get()
                .and_then(|handle| handle.sync_data())
                .map_err(StorageError::io(path))?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.metrics.fsyncs.increment(1);
            self.metrics
                .fsync_seconds
                .record(started.elapsed().as_secs_f64());
        }
        {
            let mut state = self.state.lock();
            state.publish(target, segment_base, position);
            state.last_sync = Instant::now();
            self.high_watermark
                .store(state.high_watermark, Ordering::Release);
        }
        self.appended.notify(usize::MAX);
        Ok(target)
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        Ok(())
    }

    fn poisoned_error(&self) -> StorageError {
        StorageError::Poisoned {
            topic: self.topic.clone(),
            partition: self.id,
        }
    }

    /// Refuses all further appends after a write or fsync failure: the page cache may have
    /// dropped the data, so acknowledging anything later would be a lie.
    pub(crate) fn poison(&self, cause: &StorageError) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            metrics::gauge!(names::STORAGE_POISONED_PARTITIONS).increment(1.0);
            tracing::error!(topic = %self.topic, partition = self.id, error = %cause,
                "partition poisoned; it refuses appends until restarted");
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn update_gauges(&self, state: &LogState) {
        self.metrics.segments.set(state.segments.len() as f64);
        self.metrics.bytes.set(state.size_bytes() as f64);
    }

    pub(crate) fn count_deleted_segments(&self, count: u64) {
        self.metrics.segments_deleted.increment(count);
    }

    pub(crate) fn set_log_start(&self, log_start: i64) {
        self.log_start.store(log_start, Ordering::Release);
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// A listener woken after every append that raises the high watermark.
    /// Race-free use: create the listener, re-check the high watermark, then wait.
    pub fn listen(&self) -> EventListener {
        self.appended.listen()
    }

    pub fn size_bytes(&self) -> u64 {
        self.state.lock().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.state.lock().segments.len()
    }

    /// The offset after the oldest sealed segment; None while only the active segment exists.
    /// A log start moved below it frees no disk space.
    pub fn first_sealed_end(&self) -> Option<i64> {
        let state = self.state.lock();
        (state.segments.len() > 1).then(|| state.segments[0].stats.next_offset)
    }

    /// fsyncs performed by this partition since it was opened.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    pub(crate) fn fs(&self) -> &dyn Fs {
        &**self.files.fs()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn config(&self) -> LogConfig {
        self.state.lock().config.clone()
    }

    pub(crate) fn set_config(&self, config: LogConfig) {
        self.state.lock().config = config;
    }
}

impl Partition {
    /// Time since the last completed fsync round.
    pub(crate) fn since_last_sync(&self) -> std::time::Duration {
        self.state.lock().last_sync.elapsed()
    }

    /// Clean shutdown: refuse appends, fsync the log, write the index mappings back, and record
    /// the clean-shutdown marker (with the next offset) so the next open verifies only the tail.
    /// A poisoned partition gets no marker: its next open verifies as after a crash.
    pub(crate) fn shutdown(&self) -> Result<(), StorageError> {
        self.mark_closed();
        if self.is_poisoned() {
            return Ok(());
        }
        self.sync_all_written()?;
        let state = self.state.lock();
        for slot in &state.segments {
            slot.segment.flush_indexes()?;
        }
        super::checkpoint::write_offset(
            self.fs(),
            &self.dir,
            super::checkpoint::CLEAN_SHUTDOWN_FILE,
            state.next_offset(),
        )
    }
}

/// Why a compacted topic refuses a record (Kafka's wording).
pub(crate) const KEYLESS_REFUSAL: &str = "compacted topic cannot accept a record without a key";

/// `batch` (whose header is `header`) with its records compressed with `target`.
fn recompress(
    batch: &[u8],
    header: &BatchHeader,
    target: Compression,
) -> Result<Bytes, StorageError> {
    let records = decode_records(&Bytes::copy_from_slice(batch))?;
    recompress_batch(header, &records, target).map_err(|source| StorageError::Io {
        path: PathBuf::from("<recompressing a batch>"),
        source,
    })
}

/// Refuses a batch holding a record without a key: the cleaner keeps the latest record per key,
/// so a keyless one would have no defined fate (Kafka refuses it the same way).
fn refuse_keyless(batch: &[u8]) -> Result<(), StorageError> {
    let records = decode_records(&Bytes::copy_from_slice(batch))?;
    if records.iter().any(|stored| stored.record.key.is_none()) {
        return Err(StorageError::InvalidBatch(BatchError::BadRecord(
            KEYLESS_REFUSAL,
        )));
    }
    Ok(())
}
