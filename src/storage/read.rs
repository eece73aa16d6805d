//! The read path: offset lookups, whole-batch byte ranges, timestamp lookups.
//!
//! A read takes a snapshot of the segment list and the high watermark under the partition lock,
//! then works lock-free on file handles: an index lookup gives a batch start at or before the
//! wanted offset, and 61-byte header reads (`pread`) walk forward to the batch that holds it.
//! The end of the range is found the same way from the position index. Slices hold their file
//! open, so retention may unlink a segment while a reader still uses it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tributary_api::batch::{Compression, decode_records};

use super::error::{CorruptReason, StorageError};
use super::fs::FsFile;
use super::partition::Partition;
use super::segment::Segment;

/// A byte range of a segment file, read with `pread` only when asked.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<dyn FsFile>,
    position: u64,
    len: usize,
}

impl FileSlice {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file position where the range starts.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The open segment file (for zero-copy senders); `None` on a simulated disk.
    pub fn file(&self) -> Option<&File> {
        self.file.as_std()
    }

    /// Appends the range's bytes to `out`.
    pub fn read_into(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + self.len, 0);
        let result = self.file.read_exact_at(&mut out[start..], self.position);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Fills `out`, which must be exactly `len()` bytes, with the range (no zeroing or
    /// allocation: for callers that reuse a buffer).
    pub fn read_exact_into(&self, out: &mut [u8]) -> std::io::Result<()> {
        if out.len() != self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "buffer length differs from the slice length",
            ));
        }
        self.file.read_exact_at(out, self.position)
    }

    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        let mut out = Vec::with_capacity(self.len);
        self.read_into(&mut out)?;
        Ok(Bytes::from(out))
    }
}

/// Whole batches read from a partition, plus the log bounds at the time of the read.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub slices: Vec<FileSlice>,
    pub log_start: i64,
    pub high_watermark: i64,
}

impl ReadResult {
    /// Copies all slices into one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, StorageError> {
        let mut out = Vec::with_capacity(self.len());
        for slice in &self.slices {
            slice
                .read_into(&mut out)
                .map_err(|source| StorageError::Io {
                    path: Path::new("<segment slice>").to_path_buf(),
                    source,
                })?;
        }
        Ok(Bytes::from(out))
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.slices.iter().map(FileSlice::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A segment as a reader sees it: bytes past `visible` are not yet below the high watermark.
struct VisibleSegment {
    segment: Arc<Segment>,
    visible: u64,
}

impl Partition {
    /// Whole batches starting with the one holding `offset`, up to `max_bytes` (at least one
    /// batch when any exists at or after `offset`).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        let (segments, log_start, high_watermark) = {
            let state = self.state.lock();
            if offset < state.log_start || offset > state.high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    high_watermark: state.high_watermark,
                });
            }
            let mut segments = Vec::new();
            if offset < state.high_watermark {
                let first = state
                    .segments
                    .partition_point(|s| s.segment.base_offset <= offset)
                    .saturating_sub(1);
                for slot in &state.segments[first..] {
                    let base = slot.segment.base_offset;
                    if base > state.hwm_segment_base {
                        break;
                    }
                    let visible = if base == state.hwm_segment_base {
                        state.hwm_position
                    } else {
                        slot.stats.size
                    };
                    segments.push(VisibleSegment {
                        segment: Arc::clone(&slot.segment),
                        visible,
                    });
                }
            }
            (segments, state.log_start, state.high_watermark)
        };
        let mut result = ReadResult {
            slices: Vec::new(),
            log_start,
            high_watermark,
        };
        let mut remaining = max_bytes as u64;
        for (i, seen) in segments.iter().enumerate() {
            let start = if i == 0 {
                locate(&seen.segment, offset, seen.visible)?
            } else {
                0
            };
            if start >= seen.visible {
                continue;
            }
            let available = seen.visible - start;
            if available <= remaining {
                result.slices.push(slice(&seen.segment, start, available)?);
                remaining -= available;
                if remaining == 0 {
                    break;
                }
                continue;
            }
            let end = last_boundary_within(&seen.segment, start, start + remaining, seen.visible)?;
            if end > start {
                result
                    .slices
                    .push(slice(&seen.segment, start, end - start)?);
            } else if result.slices.is_empty() {
                let header = seen.segment.read_header(start)?;
                result
                    .slices
                    .push(slice(&seen.segment, start, header.total_len as u64)?);
            }
            break;
        }
        Ok(result)
    }

    /// The first batch whose max timestamp is `>= timestamp`, as (offset, timestamp): the offset
    /// and timestamp of its first record at or after `timestamp` (compressed batches inflated),
    /// else, for a compressed batch that does not inflate, its base offset and max timestamp.
    /// The offset is at least the log start.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let (candidates, log_start, high_watermark) = {
            let state = self.state.lock();
            let candidates: Vec<VisibleSegment> = state
                .segments
                .iter()
                .filter(|s| {
                    s.stats.max_timestamp >= timestamp
                        && s.stats.next_offset > state.log_start
                        && s.segment.base_offset <= state.hwm_segment_base
                })
                .map(|s| VisibleSegment {
                    segment: Arc::clone(&s.segment),
                    visible: if s.segment.base_offset == state.hwm_segment_base {
                        state.hwm_position
                    } else {
                        s.stats.size
                    },
                })
                .collect();
            (candidates, state.log_start, state.high_watermark)
        };
        for VisibleSegment { segment, visible } in candidates {
            let Some((_, batch_offset)) = segment.time_index.read().first_at_or_after(timestamp)
            else {
                continue;
            };
            if batch_offset >= high_watermark {
                return Ok(None);
            }
            if let Some(found) =
                find_by_time(&segment, batch_offset, log_start, timestamp, visible)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The batch with the largest max timestamp: (its last offset, that timestamp).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let state = self.state.lock();
        let mut best: Option<(i64, i64)> = None;
        for slot in &state.segments {
            let stats = &slot.stats;
            if stats.is_empty() || stats.max_timestamp_offset >= state.high_watermark {
                continue;
            }
            if best.is_none_or(|(_, ts)| stats.max_timestamp > ts) {
                best = Some((stats.max_timestamp_offset, stats.max_timestamp));
            }
        }
        Ok(best)
    }
}

/// Walks batches from `batch_offset` (named by the time index) or the log start, whichever is
/// later, to the first record at or after the log start with timestamp `>= timestamp`.
/// Compressed batches are inflated like any reader's; one that does not inflate and whose max
/// timestamp qualifies answers with its base offset (clamped to the log start) and max
/// timestamp.
fn find_by_time(
    segment: &Segment,
    batch_offset: i64,
    log_start: i64,
    timestamp: i64,
    visible: u64,
) -> Result<Option<(i64, i64)>, StorageError> {
    let from = batch_offset.max(log_start);
    let (_, indexed) = segment.offset_index.read().lookup(from);
    let mut position = scan_to(segment, from, indexed, visible)?;
    while position < visible {
        let header = segment.read_header(position)?;
        if header.max_timestamp >= timestamp {
            if header.base_timestamp >= timestamp && header.base_offset >= log_start {
                return Ok(Some((header.base_offset, header.base_timestamp)));
            }
            let mut raw = vec![0u8; header.total_len];
            segment
                .file()?
                .read_exact_at(&mut raw, position)
                .map_err(StorageError::io(&segment.log_path))?;
            let records = match decode_records(&Bytes::from(raw)) {
                Ok(records) => records,
                // A compressed batch that does not inflate (readers refuse it with their own
                // error) answers with its start, which is never past a qualifying record.
                Err(_) if header.compression() != Compression::None => {
                    return Ok(Some((
                        header.base_offset.max(log_start),
                        header.max_timestamp,
                    )));
                }
                Err(err) => {
                    return Err(StorageError::Corrupt {
                        file: segment.log_path.clone(),
                        position,
                        offset: Some(header.base_offset),
                        reason: CorruptReason::Batch(err),
                    });
                }
            };
            if let Some(first) = records
                .iter()
                .find(|r| r.record.timestamp >= timestamp && r.offset >= log_start)
            {
                return Ok(Some((first.offset, first.record.timestamp)));
            }
        }
        position += header.total_len as u64;
    }
    Ok(None)
}

fn slice(segment: &Segment, position: u64, len: u64) -> Result<FileSlice, StorageError> {
    Ok(FileSlice {
        file: segment.file()?,
        position,
        len: len as usize,
    })
}

/// The start of the batch holding `offset`, or `visible` if it is not in this segment.
fn locate(segment: &Segment, offset: i64, visible: u64) -> Result<u64, StorageError> {
    let (_, position) = segment.offset_index.read().lookup(offset);
    scan_to(segment, offset, position, visible)
}

/// Walks batch headers from `position` to the batch whose last offset is `>= offset`; returns
/// `visible` when no batch below it holds the offset.
fn scan_to(
    segment: &Segment,
    offset: i64,
    mut position: u64,
    visible: u64,
) -> Result<u64, StorageError> {
    while position < visible {
        let header = segment.read_header(position)?;
        if header.last_offset() >= offset {
            return Ok(position);
        }
        position += header.total_len as u64;
    }
    Ok(visible)
}

/// The end of the last whole batch that starts at or after `start` and ends at or before
/// `limit`; `start` itself when not even the first batch fits.
fn last_boundary_within(
    segment: &Segment,
    start: u64,
    limit: u64,
    visible: u64,
) -> Result<u64, StorageError> {
    let (_, indexed) = segment.offset_index.read().lookup_position(limit);
    let mut position = indexed.max(start);
    while position < visible {
        let header = segment.read_header(position)?;
        let end = position + header.total_len as u64;
        if end > limit {
            break;
        }
        position = end;
    }
    Ok(position.min(visible))
}
