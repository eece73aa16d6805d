//! One segment: a `.log` file of whole batches plus its two indexes, and the running figures
//! (size, next offset, max timestamp) that appends and recovery keep alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tributary_api::batch::{BATCH_HEADER_LEN, BatchHeader};

use super::LogConfig;
use super::error::{CorruptReason, StorageError};
use super::fs::{FsFile, OpenMode};
use super::index::{OffsetIndex, TimeIndex};
use super::naming::segment_file;
use super::open_files::{LogFile, OpenFiles};

pub(crate) const LOG_EXTENSION: &str = "log";
pub(crate) const INDEX_EXTENSION: &str = "index";
pub(crate) const TIME_INDEX_EXTENSION: &str = "timeindex";

/// The files of one segment. Figures that change on append live in [`SegmentStats`], guarded by
/// the partition lock; the indexes have their own locks so readers do not wait for writers.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    /// Opened on demand within the descriptor budget (see `open_files`).
    pub(crate) log: Arc<LogFile>,
    pub(crate) log_path: PathBuf,
    pub(crate) offset_index: RwLock<OffsetIndex>,
    pub(crate) time_index: RwLock<TimeIndex>,
}

/// Entries to preallocate in a new active segment's indexes.
pub(crate) fn index_capacity(config: &LogConfig) -> usize {
    let per_entry = u64::from(config.index_interval_bytes.max(1));
    (config.segment_bytes / per_entry + 2).clamp(16, 1 << 20) as usize
}

impl Segment {
    /// Creates the empty files of a new segment.
    pub(crate) fn create(
        files: &Arc<OpenFiles>,
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
    ) -> Result<Self, StorageError> {
        let fs = files.fs();
        let log_path = segment_file(dir, base_offset, LOG_EXTENSION);
        // Append mode: batches go to the end with one `writev`; reads are positional.
        let log = fs
            .open(&log_path, OpenMode::CreateAppend)
            .map_err(StorageError::io(&log_path))?;
        // A stray file of the same name (from an interrupted roll) is emptied.
        log.set_len(0).map_err(StorageError::io(&log_path))?;
        let capacity = index_capacity(config);
        let index_path = segment_file(dir, base_offset, INDEX_EXTENSION);
        let offset_index = OffsetIndex::create(fs, &index_path, base_offset, capacity)
            .map_err(StorageError::io(&index_path))?;
        let time_path = segment_file(dir, base_offset, TIME_INDEX_EXTENSION);
        let time_index = TimeIndex::create(fs, &time_path, base_offset, capacity)
            .map_err(StorageError::io(&time_path))?;
        Ok(Self {
            base_offset,
            log: files.file_with(log_path.clone(), log),
            log_path,
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
        })
    }

    /// The open log file (opened again if the descriptor budget closed it).
    pub(crate) fn file(&self) -> Result<Arc<dyn FsFile>, StorageError> {
        self.log.get().map_err(StorageError::io(&self.log_path))
    }

    /// Reads and decodes the batch header at `position`.
    pub(crate) fn read_header(&self, position: u64) -> Result<BatchHeader, StorageError> {
        let mut raw = [0u8; BATCH_HEADER_LEN];
        self.file()?
            .read_exact_at(&mut raw, position)
            .map_err(StorageError::io(&self.log_path))?;
        BatchHeader::parse(&raw).map_err(|err| StorageError::Corrupt {
            file: self.log_path.clone(),
            position,
            offset: None,
            reason: CorruptReason::Batch(err),
        })
    }

    /// Seals the segment: trims both indexes to their entries.
    pub(crate) fn seal(&self) -> Result<(), StorageError> {
        let mut offsets = self.offset_index.write();
        offsets
            .trim()
            .map_err(|e| StorageError::io(offsets.path())(e))?;
        let mut times = self.time_index.write();
        times.trim().map_err(|e| StorageError::io(times.path())(e))
    }

    /// Writes the index mappings back to their files (clean shutdown).
    pub(crate) fn flush_indexes(&self) -> Result<(), StorageError> {
        let offsets = self.offset_index.read();
        offsets
            .flush()
            .map_err(|e| StorageError::io(offsets.path())(e))?;
        let times = self.time_index.read();
        times.flush().map_err(|e| StorageError::io(times.path())(e))
    }

    /// Unlinks the segment's files. Open readers keep their handles (and mappings) valid: the
    /// log handle is pinned open first.
    /// The log goes first, so a crash half-way leaves only stray indexes, which open removes.
    pub(crate) fn delete_files(
        &self,
        fs: &dyn super::fs::Fs,
        dir: &Path,
    ) -> Result<(), StorageError> {
        self.log.pin();
        for extension in [LOG_EXTENSION, INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
            let path = segment_file(dir, self.base_offset, extension);
            match fs.remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(StorageError::io(path)(err)),
            }
        }
        Ok(())
    }
}

/// The running figures of a segment, updated by every batch appended or recovered.
#[derive(Debug, Clone)]
pub(crate) struct SegmentStats {
    pub(crate) size: u64,
    pub(crate) next_offset: i64,
    /// `i64::MIN` while empty.
    pub(crate) max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp`.
    pub(crate) max_timestamp_offset: i64,
    /// Log bytes since the last offset-index entry (or the segment start).
    pub(crate) bytes_since_index: u64,
    /// When the segment received its first append in this process (for `segment_ms`).
    pub(crate) created_ms: Option<i64>,
}

/// Index entries a batch produces, by the one rule shared by append and recovery.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NewEntries {
    pub(crate) offset: Option<(i64, u64)>,
    pub(crate) time: Option<(i64, i64)>,
}

impl SegmentStats {
    pub(crate) fn empty(base_offset: i64) -> Self {
        Self {
            size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            max_timestamp_offset: -1,
            bytes_since_index: 0,
            created_ms: None,
        }
    }

    /// Accounts for a batch at `position` (= the current size) and returns the index entries
    /// to write: an offset entry once `interval` bytes have passed since the last one (never at
    /// position 0, which is implied), a time entry when the max timestamp grows.
    pub(crate) fn observe(&mut self, header: &BatchHeader, interval: u32) -> NewEntries {
        let position = self.size;
        let mut entries = NewEntries::default();
        if position > 0 && self.bytes_since_index >= u64::from(interval) {
            entries.offset = Some((header.base_offset, position));
            self.bytes_since_index = 0;
        }
        if header.max_timestamp > self.max_timestamp {
            entries.time = Some((header.max_timestamp, header.base_offset));
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_offset = header.last_offset();
        }
        self.bytes_since_index += header.total_len as u64;
        self.size += header.total_len as u64;
        self.next_offset = header.last_offset() + 1;
        entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }
}

/// Writes `entries` into the segment's indexes.
pub(crate) fn write_entries(segment: &Segment, entries: NewEntries) -> Result<(), StorageError> {
    if let Some((offset, position)) = entries.offset {
        let mut index = segment.offset_index.write();
        index
            .append(offset, position)
            .map_err(|e| StorageError::io(index.path())(e))?;
    }
    if let Some((timestamp, offset)) = entries.time {
        let mut index = segment.time_index.write();
        index
            .append(timestamp, offset)
            .map_err(|e| StorageError::io(index.path())(e))?;
    }
    Ok(())
}
