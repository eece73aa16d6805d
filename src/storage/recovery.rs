//! Opening a partition directory: CRC-verifying the tail, truncating a torn write, refusing
//! interior corruption, and rebuilding indexes that are missing or disagree with the log.
//!
//! Which segments are verified: the last one, and every segment that may hold offsets at or
//! above the recovery point. The recovery point is the next offset recorded in the
//! `clean-shutdown` marker (written by `close`, removed by open), or after a crash the
//! `recovery-point` file (written by the previous open once everything below it was verified),
//! or zero when neither exists. A failed batch that is followed by no valid batch in the last
//! non-empty segment is a torn tail (truncated, logged); anything else is corruption.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tributary_api::Durability;
use tributary_api::batch::{BATCH_HEADER_LEN, BatchHeader, MAGIC_V2, verify_batch};

use super::LogConfig;
use super::checkpoint::{
    CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, read_offset, remove_durable,
    write_offset,
};
use super::error::{CorruptReason, StorageError};
use super::fs::{Fs, FsFile, OpenMode, create_dir_durable};
use super::index::{OffsetIndex, TimeIndex};
use super::naming::{parse_segment_name, segment_file};
use super::open_files::OpenFiles;
use super::partition::{LogState, Partition, SegmentSlot};
use super::segment::{
    INDEX_EXTENSION, LOG_EXTENSION, Segment, SegmentStats, TIME_INDEX_EXTENSION, index_capacity,
};

/// Bytes read per `pread` while scanning a segment.
const SCAN_CHUNK: usize = 1 << 20;
/// A damaged region longer than this is never treated as a torn tail (a crash tears at most
/// the batches in flight), so open refuses rather than truncating that much data.
const MAX_TORN_TAIL: u64 = 64 << 20;

/// What recovering one partition found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PartitionRecovery {
    pub(crate) truncated_bytes: u64,
    pub(crate) rebuilt_indexes: u32,
}

/// Opens (creating if needed) the partition in `dir`.
pub(crate) fn open_partition(
    files: &Arc<OpenFiles>,
    topic: &str,
    id: u32,
    dir: &Path,
    config: LogConfig,
) -> Result<(Partition, PartitionRecovery), StorageError> {
    let fs = &**files.fs();
    create_dir_durable(fs, dir).map_err(StorageError::io(dir))?;
    let clean_point = read_offset(fs, dir, CLEAN_SHUTDOWN_FILE);
    let stored_point = read_offset(fs, dir, RECOVERY_POINT_FILE);
    let recovery_point = clean_point.or(stored_point).unwrap_or(0);
    let bases = list_segments(fs, dir)?;
    let mut report = PartitionRecovery::default();
    let mut slots: Vec<SegmentSlot> = Vec::with_capacity(bases.len());
    let sizes: Vec<u64> = bases
        .iter()
        .map(|base| {
            let path = segment_file(dir, *base, LOG_EXTENSION);
            fs.open(&path, OpenMode::Read)
                .and_then(|file| file.len())
                .map_err(StorageError::io(path))
        })
        .collect::<Result<_, _>>()?;
    for (i, base) in bases.iter().copied().enumerate() {
        let is_tail = sizes[i + 1..].iter().all(|size| *size == 0);
        let verify = is_tail || bases[i + 1] > recovery_point;
        let is_active = i + 1 == bases.len();
        // Above the recovery point after a crash, a policy that does not fsync every append
        // may have lost the unflushed end of a sealed segment while later ones kept bytes:
        // nothing after such damage was ever flushed (a flush covers every segment), so it is
        // a torn tail too. Under `always` the same damage is corruption.
        let unflushed = verify && clean_point.is_none() && config.durability != Durability::Always;
        let later = if is_tail || !unflushed {
            None
        } else {
            Some(&bases[i + 1..])
        };
        let (slot, cut_later) = load_segment(
            files,
            dir,
            base,
            &config,
            verify,
            is_tail,
            later,
            is_active,
            &mut report,
        )?;
        if verify && clean_point.is_none() {
            // After a crash the verified bytes may exist only in the page cache; make them
            // durable before the recovery point vouches for them.
            slot.segment
                .file()?
                .sync_data()
                .map_err(StorageError::io(&slot.segment.log_path))?;
        }
        // An empty segment expects the next one at its own base: data there went missing.
        let expected = slots
            .last()
            .map(|previous| match previous.stats.is_empty() {
                true => previous.segment.base_offset,
                false => previous.stats.next_offset,
            });
        if let Some(expected) = expected
            && slot.stats.size > 0
            && expected != base
        {
            // The earlier segment lost whole batches at its unflushed end (see `unflushed`):
            // this segment and those after it were never flushed either.
            if expected < base
                && clean_point.is_none()
                && base > recovery_point
                && config.durability != Durability::Always
            {
                drop(slot);
                for later in &bases[i..] {
                    report.truncated_bytes += remove_unflushed_segment(fs, dir, *later)?;
                }
                fs.sync_dir(dir).map_err(StorageError::io(dir))?;
                break;
            }
            return Err(StorageError::Corrupt {
                file: slot.segment.log_path.clone(),
                position: 0,
                offset: Some(base),
                reason: CorruptReason::OffsetGap {
                    expected,
                    found: base,
                },
            });
        }
        slots.push(slot);
        if cut_later {
            break;
        }
    }
    drop_misplaced_empty_segments(fs, dir, &mut slots)?;
    let first_base = slots.first().map(|s| s.segment.base_offset);
    let mut log_start = read_offset(fs, dir, LOG_START_FILE)
        .unwrap_or(0)
        .max(first_base.unwrap_or(0));
    if slots.is_empty() {
        let segment = Segment::create(files, dir, log_start, &config)?;
        // The first segment's entry must survive a power loss like the data appended to it.
        fs.sync_dir(dir).map_err(StorageError::io(dir))?;
        slots.push(SegmentSlot {
            segment: Arc::new(segment),
            stats: SegmentStats::empty(log_start),
        });
    }
    // Segments wholly below the log start are left over from an interrupted deletion.
    while slots.len() > 1 && slots[0].stats.next_offset <= log_start {
        let slot = slots.remove(0);
        slot.segment.delete_files(fs, dir)?;
    }
    let next_offset = slots.last().map_or(0, |s| s.stats.next_offset);
    if log_start > next_offset {
        // A power loss took the tail the stored log start pointed into (possible under
        // `never`/`interval`). Store the clamped value, or the records appended from here on
        // would fall below a stale log start at the next open and vanish.
        log_start = next_offset;
        write_offset(fs, dir, LOG_START_FILE, log_start)?;
    }
    if stored_point != Some(next_offset) {
        write_offset(fs, dir, RECOVERY_POINT_FILE, next_offset)?;
    }
    if clean_point.is_some() {
        // Durably: a marker that came back after a power loss would vouch for a clean
        // shutdown that never happened and skip the checks of a crash recovery.
        remove_durable(fs, dir, CLEAN_SHUTDOWN_FILE)?;
    }
    let state = LogState::new(config, slots, log_start);
    let partition = Partition::new(topic, id, dir.to_path_buf(), Arc::clone(files), state);
    Ok((partition, report))
}

/// Base offsets of the `.log` files in `dir`, ascending; removes stray indexes and temp files.
fn list_segments(fs: &dyn Fs, dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs.list_dir(dir).map_err(StorageError::io(dir))? {
        let name = entry.name.as_str();
        if let Some(base) = parse_segment_name(name) {
            logs.push(base);
        } else if name.ends_with(".tmp") {
            let _ = fs.remove_file(&dir.join(name));
        } else if name.ends_with(&format!(".{INDEX_EXTENSION}"))
            || name.ends_with(&format!(".{TIME_INDEX_EXTENSION}"))
        {
            indexes.push((
                name.split('.').next().unwrap_or_default().to_owned(),
                dir.join(name),
            ));
        }
    }
    logs.sort_unstable();
    for (stem, path) in indexes {
        if !stem
            .parse::<i64>()
            .is_ok_and(|base| logs.binary_search(&base).is_ok())
        {
            let _ = fs.remove_file(&path);
        }
    }
    Ok(logs)
}

/// Deletes trailing empty segments that no longer start at the log's next offset (left behind
/// when a torn tail before them was truncated).
fn drop_misplaced_empty_segments(
    fs: &dyn Fs,
    dir: &Path,
    slots: &mut Vec<SegmentSlot>,
) -> Result<(), StorageError> {
    while slots.len() > 1 {
        let last = &slots[slots.len() - 1];
        let previous = &slots[slots.len() - 2];
        if last.stats.size == 0 && last.segment.base_offset != previous.stats.next_offset {
            last.segment.delete_files(fs, dir)?;
            slots.pop();
        } else {
            break;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn load_segment(
    files: &Arc<OpenFiles>,
    dir: &Path,
    base: i64,
    config: &LogConfig,
    verify: bool,
    is_tail: bool,
    later: Option<&[i64]>,
    is_active: bool,
    report: &mut PartitionRecovery,
) -> Result<(SegmentSlot, bool), StorageError> {
    let log_path = segment_file(dir, base, LOG_EXTENSION);
    let fs = files.fs();
    let log = fs
        .open(&log_path, OpenMode::Append)
        .map_err(StorageError::io(&log_path))?;
    let size = log.len().map_err(StorageError::io(&log_path))?;
    let index_path = segment_file(dir, base, INDEX_EXTENSION);
    let time_path = segment_file(dir, base, TIME_INDEX_EXTENSION);
    if !verify
        && let Some(slot) =
            open_sealed_with_indexes(files, &log, &log_path, base, size, &index_path, &time_path)?
    {
        return Ok((slot, false));
    }
    let mut cut_later = false;
    let mut scan = scan_log(
        &*log,
        &log_path,
        base,
        size,
        verify,
        config.index_interval_bytes,
    )?;
    if let Some(failure) = scan.failure.take() {
        let torn = (is_tail || later.is_some())
            && size - failure.position <= MAX_TORN_TAIL
            && !valid_batch_after(&*log, failure.position, size)
                .map_err(StorageError::io(&log_path))?;
        if !torn {
            return Err(StorageError::Corrupt {
                file: log_path,
                position: failure.position,
                offset: failure.offset,
                reason: failure.reason,
            });
        }
        if let Some(later) = later.filter(|_| !is_tail) {
            // Later segments go first: a crash before the truncation then finds this segment
            // as the torn tail again.
            for base in later {
                report.truncated_bytes += remove_unflushed_segment(&**fs, dir, *base)?;
            }
            fs.sync_dir(dir).map_err(StorageError::io(dir))?;
            cut_later = true;
        }
        tracing::warn!(file = %log_path.display(), position = failure.position,
            bytes = size - failure.position, reason = %failure.reason, "truncating torn tail");
        log.set_len(failure.position)
            .map_err(StorageError::io(&log_path))?;
        log.sync_data().map_err(StorageError::io(&log_path))?;
        report.truncated_bytes += size - failure.position;
    }
    let capacity = if is_active { index_capacity(config) } else { 0 };
    let offset_index = match OffsetIndex::open_checked(
        fs,
        &index_path,
        base,
        scan.stats.size,
        Some(&scan.offset_entries),
    ) {
        Some(index) => index,
        None => {
            report.rebuilt_indexes += 1;
            let mut index = OffsetIndex::create(
                fs,
                &index_path,
                base,
                capacity.max(scan.offset_entries.len()),
            )
            .map_err(StorageError::io(&index_path))?;
            for (offset, position) in &scan.offset_entries {
                index
                    .append(*offset, *position)
                    .map_err(StorageError::io(&index_path))?;
            }
            index
        }
    };
    let time_index = match TimeIndex::open_checked(
        fs,
        &time_path,
        base,
        scan.stats.next_offset,
        Some(&scan.time_entries),
    ) {
        Some(index) => index,
        None => {
            report.rebuilt_indexes += 1;
            let mut index =
                TimeIndex::create(fs, &time_path, base, capacity.max(scan.time_entries.len()))
                    .map_err(StorageError::io(&time_path))?;
            for (timestamp, offset) in &scan.time_entries {
                index
                    .append(*timestamp, *offset)
                    .map_err(StorageError::io(&time_path))?;
            }
            index
        }
    };
    let segment = Segment {
        base_offset: base,
        log: files.file_with(log_path.clone(), log),
        log_path,
        offset_index: RwLock::new(offset_index),
        time_index: RwLock::new(time_index),
    };
    if !is_active {
        segment.seal()?;
    }
    let slot = SegmentSlot {
        segment: Arc::new(segment),
        stats: scan.stats,
    };
    Ok((slot, cut_later))
}

/// Removes a segment that follows a torn one (see `open_partition`); returns its log size.
fn remove_unflushed_segment(fs: &dyn Fs, dir: &Path, base: i64) -> Result<u64, StorageError> {
    let log_path = segment_file(dir, base, LOG_EXTENSION);
    // Already gone when a torn segment removed its successors and then lost its own place.
    let size = match fs
        .open(&log_path, OpenMode::Read)
        .and_then(|file| file.len())
    {
        Ok(size) => size,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(StorageError::io(&log_path)(err)),
    };
    tracing::warn!(file = %log_path.display(), bytes = size,
        "removing an unflushed segment after a torn one");
    for extension in [LOG_EXTENSION, INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
        let path = segment_file(dir, base, extension);
        match fs.remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(StorageError::io(path)(err)),
        }
    }
    Ok(size)
}

/// A sealed segment below the recovery point whose indexes look sound: its figures come from
/// the indexes plus a header walk from the last offset-index entry. `None` means rebuild.
fn open_sealed_with_indexes(
    files: &Arc<OpenFiles>,
    log: &Arc<dyn FsFile>,
    log_path: &Path,
    base: i64,
    size: u64,
    index_path: &Path,
    time_path: &Path,
) -> Result<Option<SegmentSlot>, StorageError> {
    let fs = files.fs();
    let Some(offset_index) = OffsetIndex::open_checked(fs, index_path, base, size, None) else {
        return Ok(None);
    };
    let (mut next_offset, mut position) = offset_index.lookup(i64::MAX);
    // (max timestamp, base offset, last offset) of the first batch in the walked tail reaching it.
    let mut max_in_tail: Option<(i64, i64, i64)> = None;
    while position < size {
        let Some(header) = read_header(&**log, position, size) else {
            return Ok(None);
        };
        if max_in_tail.is_none_or(|(ts, _, _)| header.max_timestamp > ts) {
            max_in_tail = Some((
                header.max_timestamp,
                header.base_offset,
                header.last_offset(),
            ));
        }
        next_offset = header.last_offset() + 1;
        position += header.total_len as u64;
    }
    if position != size || size == 0 {
        return Ok(None);
    }
    let Some(time_index) = TimeIndex::open_checked(fs, time_path, base, next_offset, None) else {
        return Ok(None);
    };
    let Some((max_timestamp, max_batch)) = time_index.last() else {
        return Ok(None);
    };
    // The time index must end at a batch that really has that max timestamp, and no batch
    // walked above may exceed it; otherwise it lost entries and is rebuilt.
    if max_in_tail.is_some_and(|(ts, _, _)| ts > max_timestamp) {
        return Ok(None);
    }
    let max_timestamp_offset = match max_in_tail {
        Some((ts, base, last)) if ts == max_timestamp && base == max_batch => last,
        _ => {
            let (_, mut at) = offset_index.lookup(max_batch);
            loop {
                let Some(header) = read_header(&**log, at, size) else {
                    return Ok(None);
                };
                if header.base_offset == max_batch {
                    if header.max_timestamp != max_timestamp {
                        return Ok(None);
                    }
                    break header.last_offset();
                }
                if header.base_offset > max_batch {
                    return Ok(None);
                }
                at += header.total_len as u64;
            }
        }
    };
    let mut stats = SegmentStats::empty(base);
    stats.size = size;
    stats.next_offset = next_offset;
    stats.max_timestamp = max_timestamp;
    stats.max_timestamp_offset = max_timestamp_offset;
    Ok(Some(SegmentSlot {
        segment: Arc::new(Segment {
            base_offset: base,
            log: files.file_with(log_path.to_path_buf(), Arc::clone(log)),
            log_path: log_path.to_path_buf(),
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
        }),
        stats,
    }))
}

fn read_header(log: &dyn FsFile, position: u64, size: u64) -> Option<BatchHeader> {
    let mut raw = [0u8; BATCH_HEADER_LEN];
    log.read_exact_at(&mut raw, position).ok()?;
    BatchHeader::parse(&raw)
        .ok()
        .filter(|h| position + h.total_len as u64 <= size)
}

struct ScanFailure {
    position: u64,
    offset: Option<i64>,
    reason: CorruptReason,
}

struct ScanResult {
    stats: SegmentStats,
    offset_entries: Vec<(i64, u64)>,
    time_entries: Vec<(i64, i64)>,
    failure: Option<ScanFailure>,
}

/// Walks every batch of a segment (CRC-checking each when `verify`), rebuilding the index
/// entries. Stops at the first bad batch, reporting where.
fn scan_log(
    log: &dyn FsFile,
    log_path: &Path,
    base: i64,
    size: u64,
    verify: bool,
    interval: u32,
) -> Result<ScanResult, StorageError> {
    let mut reader = ChunkReader {
        file: log,
        path: log_path.to_path_buf(),
        buf: Vec::new(),
        buf_start: 0,
    };
    let mut result = ScanResult {
        stats: SegmentStats::empty(base),
        offset_entries: Vec::new(),
        time_entries: Vec::new(),
        failure: None,
    };
    let mut position = 0u64;
    while position < size {
        let fail = |offset, reason| {
            Some(ScanFailure {
                position,
                offset,
                reason,
            })
        };
        let header_len = (size - position).min(BATCH_HEADER_LEN as u64) as usize;
        let header = match BatchHeader::parse(reader.get(position, header_len)?) {
            Ok(header) => header,
            Err(err) => {
                result.failure = fail(None, CorruptReason::Batch(err));
                break;
            }
        };
        let end = position + header.total_len as u64;
        if end > size {
            result.failure = fail(Some(header.base_offset), CorruptReason::PastEnd);
            break;
        }
        if verify && let Err(err) = verify_batch(reader.get(position, header.total_len)?) {
            result.failure = fail(Some(header.base_offset), CorruptReason::Batch(err));
            break;
        }
        if header.base_offset != result.stats.next_offset {
            let expected = result.stats.next_offset;
            result.failure = fail(
                Some(header.base_offset),
                CorruptReason::OffsetGap {
                    expected,
                    found: header.base_offset,
                },
            );
            break;
        }
        let entries = result.stats.observe(&header, interval);
        result.offset_entries.extend(entries.offset);
        result.time_entries.extend(entries.time);
        position = end;
    }
    Ok(result)
}

/// True when a CRC-valid batch starts anywhere in `(from, size)`: the damage at `from` is then
/// interior corruption, not a torn tail.
fn valid_batch_after(log: &dyn FsFile, from: u64, size: u64) -> std::io::Result<bool> {
    let mut rest = vec![0u8; (size - from) as usize];
    log.read_exact_at(&mut rest, from)?;
    for start in 1..rest.len() {
        let candidate = &rest[start..];
        if candidate.len() < BATCH_HEADER_LEN {
            break;
        }
        if candidate[16] as i8 != MAGIC_V2 {
            continue;
        }
        if let Ok(header) = BatchHeader::parse(candidate)
            && header.total_len <= candidate.len()
            && verify_batch(&candidate[..header.total_len]).is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sequential positional reads in large chunks.
struct ChunkReader<'a> {
    file: &'a dyn FsFile,
    path: PathBuf,
    buf: Vec<u8>,
    buf_start: u64,
}

impl ChunkReader<'_> {
    /// `len` bytes at `position`; the caller guarantees they lie within the file.
    fn get(&mut self, position: u64, len: usize) -> Result<&[u8], StorageError> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if position < self.buf_start || position + len as u64 > buf_end {
            let file_len = self.file.len().map_err(StorageError::io(&self.path))?;
            let want = len
                .max(SCAN_CHUNK)
                .min((file_len - position) as usize)
                .max(len);
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, position)
                .map_err(StorageError::io(&self.path))?;
            self.buf_start = position;
        }
        let start = (position - self.buf_start) as usize;
        Ok(&self.buf[start..start + len])
    }
}
