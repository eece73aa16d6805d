//! The two memory-mapped sparse indexes of a segment.
//!
//! - `.index`: entries of 8 bytes, big-endian `relative offset u32` + `file position u32`, one for
//!   the first batch after every `index_interval_bytes` of log (never for position 0, which is
//!   implied). Offsets and positions strictly increase.
//! - `.timeindex`: entries of 12 bytes, big-endian `timestamp i64` + `relative offset u32`, one
//!   for each batch whose max timestamp exceeds every earlier batch's in the segment; the offset is
//!   that batch's base offset. Timestamps and offsets strictly increase, so the first entry with
//!   `timestamp >= t` names exactly the first batch whose max timestamp is `>= t`.
//!
//! The active segment's files are preallocated (zero tail) and grown by doubling; sealed ones
//! are trimmed to their entries. On a real disk the files are mapped and no descriptor is kept
//! (resizing reopens the file); on a simulated one they are copied into memory and written
//! through. Invariant for the `unsafe` mapping: only this process touches
//! the files (the data directory is locked), and a file is never shortened while it is mapped
//! (every resize drops the mapping first).
#![allow(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapMut;

use super::fs::{Fs, FsFile, OpenMode};

pub(crate) const OFFSET_ENTRY_LEN: usize = 8;
pub(crate) const TIME_ENTRY_LEN: usize = 12;

/// Where the entries live in memory.
enum Backing {
    /// A shared mapping of a real file; no descriptor is kept (the file is reopened to resize).
    /// `None` while the file is empty: a zero-length file cannot be mapped.
    Mapped(Option<MmapMut>),
    /// A file that cannot be mapped (simulated disk): a copy in memory, written through.
    Buffered {
        bytes: Vec<u8>,
        file: Arc<dyn FsFile>,
    },
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::Mapped(map) => write!(f, "Mapped({})", map.is_some()),
            Backing::Buffered { bytes, .. } => write!(f, "Buffered({})", bytes.len()),
        }
    }
}

/// A file of fixed-width entries held in memory; entries `0..len` are in use.
#[derive(Debug)]
struct MappedEntries {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    backing: Backing,
    entry_len: usize,
    len: usize,
    capacity: usize,
}

impl MappedEntries {
    fn with_file(
        fs: &Arc<dyn Fs>,
        path: &Path,
        file: Arc<dyn FsFile>,
        entry_len: usize,
    ) -> io::Result<Self> {
        let backing = match file.as_std() {
            Some(_) => Backing::Mapped(None),
            None => {
                let mut bytes = vec![0u8; file.len()? as usize];
                file.read_exact_at(&mut bytes, 0)?;
                Backing::Buffered { bytes, file }
            }
        };
        Ok(Self {
            fs: Arc::clone(fs),
            path: path.to_path_buf(),
            backing,
            entry_len,
            len: 0,
            capacity: 0,
        })
    }

    /// Creates (or empties) the file with room for `capacity` entries.
    fn create(
        fs: &Arc<dyn Fs>,
        path: &Path,
        entry_len: usize,
        capacity: usize,
    ) -> io::Result<Self> {
        let file = fs.open(path, OpenMode::CreateTruncate)?;
        let mut entries = Self::with_file(fs, path, Arc::clone(&file), entry_len)?;
        entries.resize_with(&*file, capacity.max(1))?;
        Ok(entries)
    }

    /// Opens an existing file of whole entries, with `len` still 0 (the caller validates).
    fn open(fs: &Arc<dyn Fs>, path: &Path, entry_len: usize) -> io::Result<Self> {
        let file = fs.open(path, OpenMode::ReadWrite)?;
        let bytes = file.len()? as usize;
        if !bytes.is_multiple_of(entry_len) {
            // A torn or foreign file: the caller rebuilds it from the log.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "index length is not a whole number of entries",
            ));
        }
        let capacity = bytes / entry_len;
        let mut entries = Self::with_file(fs, path, Arc::clone(&file), entry_len)?;
        entries.resize_with(&*file, capacity)?;
        Ok(entries)
    }

    fn resize(&mut self, capacity: usize) -> io::Result<()> {
        let file = match &self.backing {
            Backing::Mapped(_) => self.fs.open(&self.path, OpenMode::ReadWrite)?,
            Backing::Buffered { file, .. } => Arc::clone(file),
        };
        self.resize_with(&*file, capacity)
    }

    fn resize_with(&mut self, file: &dyn FsFile, capacity: usize) -> io::Result<()> {
        let bytes_len = capacity * self.entry_len;
        match &mut self.backing {
            Backing::Mapped(map) => {
                *map = None;
                file.set_len(bytes_len as u64)?;
                if capacity > 0
                    && let Some(std_file) = file.as_std()
                {
                    // SAFETY: this process holds the data-directory lock so no other process
                    // resizes the file, and we only shrink it after dropping the mapping (above),
                    // so the mapping never covers bytes past the end of the file.
                    *map = Some(unsafe { MmapMut::map_mut(std_file)? });
                }
            }
            Backing::Buffered { bytes, .. } => {
                file.set_len(bytes_len as u64)?;
                bytes.resize(bytes_len, 0);
            }
        }
        self.capacity = capacity;
        self.len = self.len.min(capacity);
        Ok(())
    }

    fn entry(&self, i: usize) -> &[u8] {
        if i >= self.capacity {
            return &[];
        }
        let range = i * self.entry_len..(i + 1) * self.entry_len;
        match &self.backing {
            Backing::Mapped(Some(map)) => &map[range],
            Backing::Mapped(None) => &[],
            Backing::Buffered { bytes, .. } => &bytes[range],
        }
    }

    fn push(&mut self, raw: &[u8]) -> io::Result<()> {
        if self.len == self.capacity {
            self.resize((self.capacity * 2).max(16))?;
        }
        let start = self.len * self.entry_len;
        match &mut self.backing {
            Backing::Mapped(Some(map)) => {
                map[start..start + self.entry_len].copy_from_slice(raw);
            }
            Backing::Mapped(None) => {}
            Backing::Buffered { bytes, file } => {
                file.write_all_at(raw, start as u64)?;
                bytes[start..start + self.entry_len].copy_from_slice(raw);
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Shrinks the file to the entries in use (sealing a segment).
    fn trim(&mut self) -> io::Result<()> {
        if self.capacity != self.len {
            let len = self.len;
            self.resize(len)?;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        match &self.backing {
            Backing::Mapped(Some(map)) => map.flush(),
            Backing::Mapped(None) => Ok(()),
            Backing::Buffered { file, .. } => file.sync_data(),
        }
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(raw)
}

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(raw)
}

/// Index of the largest element for which `is_at_or_before` holds, if any; the predicate must be
/// true for a prefix of `0..len` (entries are sorted).
fn last_where(len: usize, is_at_or_before: impl Fn(usize) -> bool) -> Option<usize> {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if is_at_or_before(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low.checked_sub(1)
}

/// The sparse offset -> file position index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    base_offset: i64,
    entries: MappedEntries,
}

impl OffsetIndex {
    pub(crate) fn create(
        fs: &Arc<dyn Fs>,
        path: &Path,
        base_offset: i64,
        capacity: usize,
    ) -> io::Result<Self> {
        Ok(Self {
            base_offset,
            entries: MappedEntries::create(fs, path, OFFSET_ENTRY_LEN, capacity)?,
        })
    }

    /// Opens an existing index and keeps it only if its entries equal `expected` (the entries
    /// rebuilt from the log) or, when `expected` is `None`, if they are well-formed for a log of
    /// `log_size` bytes. Returns `None` when the file is missing or does not pass.
    pub(crate) fn open_checked(
        fs: &Arc<dyn Fs>,
        path: &Path,
        base_offset: i64,
        log_size: u64,
        expected: Option<&[(i64, u64)]>,
    ) -> Option<Self> {
        let entries = MappedEntries::open(fs, path, OFFSET_ENTRY_LEN).ok()?;
        let mut index = Self {
            base_offset,
            entries,
        };
        let mut previous: Option<(i64, u64)> = None;
        let mut used = 0;
        for i in 0..index.entries.capacity {
            let (offset, position) = index.entry(i);
            if position == 0 {
                break; // zero tail of a preallocated file
            }
            if previous.is_some_and(|(o, p)| offset <= o || position <= p) || position >= log_size {
                return None;
            }
            previous = Some((offset, position));
            used += 1;
        }
        if tail(&index.entries, used).any(|b| *b != 0) {
            return None;
        }
        index.entries.len = used;
        if let Some(expected) = expected {
            let actual: Vec<(i64, u64)> = (0..used).map(|i| index.entry(i)).collect();
            if actual != expected {
                return None;
            }
        }
        Some(index)
    }

    fn entry(&self, i: usize) -> (i64, u64) {
        let raw = self.entries.entry(i);
        (
            self.base_offset + i64::from(be_u32(raw, 0)),
            u64::from(be_u32(raw, 4)),
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len
    }

    /// Adds an entry; the caller guarantees `offset - base < 2^32` and `position < 2^32`.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> io::Result<()> {
        let mut raw = [0u8; OFFSET_ENTRY_LEN];
        raw[..4].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        raw[4..].copy_from_slice(&(position as u32).to_be_bytes());
        self.entries.push(&raw)
    }

    /// The last entry with offset <= `offset`, else the segment start `(base, 0)`.
    pub(crate) fn lookup(&self, offset: i64) -> (i64, u64) {
        last_where(self.len(), |i| self.entry(i).0 <= offset)
            .map_or((self.base_offset, 0), |i| self.entry(i))
    }

    /// The last entry with position <= `position`, else the segment start `(base, 0)`.
    pub(crate) fn lookup_position(&self, position: u64) -> (i64, u64) {
        last_where(self.len(), |i| self.entry(i).1 <= position)
            .map_or((self.base_offset, 0), |i| self.entry(i))
    }

    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.entries.trim()
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        self.entries.flush()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.entries.path
    }
}

fn tail(entries: &MappedEntries, used: usize) -> impl Iterator<Item = &u8> {
    (used..entries.capacity).flat_map(move |i| entries.entry(i).iter())
}

/// The sparse timestamp -> offset index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    entries: MappedEntries,
}

impl TimeIndex {
    pub(crate) fn create(
        fs: &Arc<dyn Fs>,
        path: &Path,
        base_offset: i64,
        capacity: usize,
    ) -> io::Result<Self> {
        Ok(Self {
            base_offset,
            entries: MappedEntries::create(fs, path, TIME_ENTRY_LEN, capacity)?,
        })
    }

    /// Like [`OffsetIndex::open_checked`]: keeps the file only if it holds exactly `expected`
    /// (when given) or is well-formed with offsets below `next_offset`.
    pub(crate) fn open_checked(
        fs: &Arc<dyn Fs>,
        path: &Path,
        base_offset: i64,
        next_offset: i64,
        expected: Option<&[(i64, i64)]>,
    ) -> Option<Self> {
        let entries = MappedEntries::open(fs, path, TIME_ENTRY_LEN).ok()?;
        let mut index = Self {
            base_offset,
            entries,
        };
        // Without a log scan the in-use count is unknown; a sealed segment's file is trimmed.
        let used = expected.map_or(index.entries.capacity, <[_]>::len);
        if used > index.entries.capacity {
            return None;
        }
        let mut previous: Option<(i64, i64)> = None;
        for i in 0..used {
            let (timestamp, offset) = index.entry(i);
            if previous.is_some_and(|(t, o)| timestamp <= t || offset <= o) || offset >= next_offset
            {
                return None;
            }
            previous = Some((timestamp, offset));
        }
        if tail(&index.entries, used).any(|b| *b != 0) {
            return None;
        }
        index.entries.len = used;
        if let Some(expected) = expected {
            let actual: Vec<(i64, i64)> = (0..used).map(|i| index.entry(i)).collect();
            if actual != expected {
                return None;
            }
        }
        Some(index)
    }

    fn entry(&self, i: usize) -> (i64, i64) {
        let raw = self.entries.entry(i);
        (be_i64(raw, 0), self.base_offset + i64::from(be_u32(raw, 8)))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len
    }

    pub(crate) fn append(&mut self, timestamp: i64, offset: i64) -> io::Result<()> {
        let mut raw = [0u8; TIME_ENTRY_LEN];
        raw[..8].copy_from_slice(&timestamp.to_be_bytes());
        raw[8..].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        self.entries.push(&raw)
    }

    /// The first entry with timestamp >= `timestamp`: `(timestamp, batch base offset)`.
    pub(crate) fn first_at_or_after(&self, timestamp: i64) -> Option<(i64, i64)> {
        let before = last_where(self.len(), |i| self.entry(i).0 < timestamp).map_or(0, |i| i + 1);
        (before < self.len()).then(|| self.entry(before))
    }

    /// The last entry: the segment's max timestamp and the batch that holds it.
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.entries.trim()
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        self.entries.flush()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.entries.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::RealFs;

    #[test]
    fn offset_lookup_finds_the_entry_at_or_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&RealFs::shared(), &path, 1000, 2).expect("create");
        assert_eq!(index.lookup(1500), (1000, 0));
        // Grows past the preallocated two entries.
        for i in 1..=10i64 {
            index
                .append(1000 + i * 10, (i * 4096) as u64)
                .expect("append");
        }
        assert_eq!(index.lookup(999), (1000, 0));
        assert_eq!(index.lookup(1005), (1000, 0));
        assert_eq!(index.lookup(1010), (1010, 4096));
        assert_eq!(index.lookup(1059), (1050, 5 * 4096));
        assert_eq!(index.lookup(9999), (1100, 10 * 4096));
        assert_eq!(index.lookup_position(4095), (1000, 0));
        assert_eq!(index.lookup_position(3 * 4096 + 1), (1030, 3 * 4096));
        // Every entry agrees with a linear scan.
        for target in 990..1120 {
            let linear = (1..=10i64)
                .map(|i| (1000 + i * 10, (i * 4096) as u64))
                .rfind(|(o, _)| *o <= target)
                .unwrap_or((1000, 0));
            assert_eq!(index.lookup(target), linear, "target {target}");
        }
        index.flush().expect("flush");
        let expected: Vec<(i64, u64)> = (1..=10i64)
            .map(|i| (1000 + i * 10, (i * 4096) as u64))
            .collect();
        drop(index);
        let reopened =
            OffsetIndex::open_checked(&RealFs::shared(), &path, 1000, 1 << 20, Some(&expected))
                .expect("valid");
        assert_eq!(reopened.len(), 10);
        assert!(
            OffsetIndex::open_checked(
                &RealFs::shared(),
                &path,
                1000,
                1 << 20,
                Some(&expected[..9])
            )
            .is_none()
        );
        // A log shorter than the indexed positions makes the index invalid.
        assert!(OffsetIndex::open_checked(&RealFs::shared(), &path, 1000, 4096, None).is_none());
    }

    #[test]
    fn trimmed_index_reopens_with_its_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&RealFs::shared(), &path, 0, 64).expect("create");
        for i in 1..=5u64 {
            index.append(i as i64 * 3, i * 100).expect("append");
        }
        assert_eq!(index.len(), 5);
        index.trim().expect("trim");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 40);
        drop(index);
        let reopened =
            OffsetIndex::open_checked(&RealFs::shared(), &path, 0, 1000, None).expect("valid");
        assert_eq!(reopened.lookup(10), (9, 300));
    }

    #[test]
    fn time_lookup_names_the_first_batch_reaching_the_timestamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.timeindex");
        let mut index = TimeIndex::create(&RealFs::shared(), &path, 50, 1).expect("create");
        assert_eq!(index.first_at_or_after(0), None);
        for (ts, offset) in [(100, 50), (200, 53), (300, 60)] {
            index.append(ts, offset).expect("append");
        }
        assert_eq!(index.first_at_or_after(50), Some((100, 50)));
        assert_eq!(index.first_at_or_after(100), Some((100, 50)));
        assert_eq!(index.first_at_or_after(101), Some((200, 53)));
        assert_eq!(index.first_at_or_after(301), None);
        assert_eq!(index.last(), Some((300, 60)));
        index.trim().expect("trim");
        drop(index);
        assert!(TimeIndex::open_checked(&RealFs::shared(), &path, 50, 61, None).is_some());
        assert!(TimeIndex::open_checked(&RealFs::shared(), &path, 50, 60, None).is_none());
    }
}
