//! A queue's ack journal: `<journal_dir>/<encoded queue name>.acks`.
//!
//! The file is a sequence of fixed-size 13-byte entries, appended with one `write` per call:
//!
//! ```text
//! [op u8][offset i64 BE][crc32c u32 BE of the 9 bytes before]
//! op 1 Ack            offset is settled
//! op 2 AckRangeFrom   first offset of a settled range; always followed by
//! op 3 AckRangeTo     the range's end (exclusive); the pair is written by one `write`
//! op 4 DeliveredUpTo  the highest offset ever handed to a consumer
//! op 5 ReturnsOf      an offset requeued again; always followed by
//! op 6 ReturnsCount   how often it has been requeued in all (in the offset field); the pair
//!                     is written by one `write`, and the last pair of an offset counts
//! ```
//!
//! Replay stops at the first entry that is short, fails its CRC, has an unknown op or is an
//! unpaired range half. Such an entry can only be the torn tail of a write cut short by a crash
//! (or damage); it is logged, the file is cut back to the last good entry and appending goes on.
//! Dropping it is safe: a lost ack only means a redelivery, never a lost message.
//!
//! Compaction: once the file holds more than [`COMPACT_MIN_ENTRIES`] entries and four times
//! what a snapshot needs, it is rewritten as a snapshot (one range pair per settled range,
//! DeliveredUpTo, then one returns pair per unsettled requeued offset) into `<file>.tmp`, which is fsynced and renamed over the journal; the
//! directory is fsynced after the rename.
//!
//! Durability: [`AckJournal::sync_to`] is a group commit: callers pass the sequence number of
//! their write, the first to take the sync lock fsyncs everything written so far, and the ones
//! waiting behind it find their write already covered and return without another fsync.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::storage::fs::{Fs, FsFile, OpenMode, RealFs};

use super::settled::SettledSet;

/// Size of one entry.
pub(crate) const ENTRY_LEN: usize = 13;
/// A journal smaller than this is never compacted.
pub(crate) const COMPACT_MIN_ENTRIES: u64 = 4096;

const OP_ACK: u8 = 1;
const OP_RANGE_FROM: u8 = 2;
const OP_RANGE_TO: u8 = 3;
const OP_DELIVERED_UP_TO: u8 = 4;
const OP_RETURNS_OF: u8 = 5;
const OP_RETURNS_COUNT: u8 = 6;

/// One journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JournalOp {
    Ack(i64),
    /// Settles `[from, to)`; encoded as two entries.
    AckRange {
        from: i64,
        to: i64,
    },
    DeliveredUpTo(i64),
    /// `offset` has been requeued `count` times; encoded as two entries.
    Returns {
        offset: i64,
        count: u32,
    },
}

fn encode_entry(out: &mut Vec<u8>, op: u8, offset: i64) {
    let start = out.len();
    out.push(op);
    out.extend_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

pub(crate) fn encode_ops(ops: &[JournalOp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 2 * ENTRY_LEN);
    for op in ops {
        match *op {
            JournalOp::Ack(offset) => encode_entry(&mut out, OP_ACK, offset),
            JournalOp::AckRange { from, to } => {
                encode_entry(&mut out, OP_RANGE_FROM, from);
                encode_entry(&mut out, OP_RANGE_TO, to);
            }
            JournalOp::DeliveredUpTo(offset) => encode_entry(&mut out, OP_DELIVERED_UP_TO, offset),
            JournalOp::Returns { offset, count } => {
                encode_entry(&mut out, OP_RETURNS_OF, offset);
                encode_entry(&mut out, OP_RETURNS_COUNT, i64::from(count));
            }
        }
    }
    out
}

/// Decodes one entry; `None` for a bad CRC.
fn decode_entry(entry: &[u8]) -> Option<(u8, i64)> {
    let (body, crc) = entry.split_at(9);
    let stored = u32::from_be_bytes(crc.try_into().ok()?);
    if crc32c::crc32c(body) != stored {
        return None;
    }
    let offset = i64::from_be_bytes(body[1..9].try_into().ok()?);
    Some((body[0], offset))
}

/// What replay recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    pub(crate) settled: SettledSet,
    /// Highest offset ever handed out; -1 if none.
    pub(crate) delivered_up_to: i64,
    /// How often each unsettled offset was requeued (settled ones left out).
    pub(crate) returns: HashMap<i64, u32>,
    /// Good entries in the file.
    pub(crate) entries: u64,
    /// Bytes cut from a torn or damaged tail.
    pub(crate) dropped_bytes: u64,
}

/// Reads entries until the first bad one; returns the state and the good length in bytes.
pub(crate) fn replay_bytes(data: &[u8]) -> (Replayed, usize) {
    let mut replayed = Replayed {
        delivered_up_to: -1,
        ..Replayed::default()
    };
    let mut pos = 0usize;
    while let Some(entry) = data.get(pos..pos + ENTRY_LEN) {
        match decode_entry(entry) {
            Some((OP_ACK, offset)) => replayed.settled.insert(offset),
            Some((OP_DELIVERED_UP_TO, offset)) => {
                replayed.delivered_up_to = replayed.delivered_up_to.max(offset);
            }
            Some((OP_RETURNS_OF, offset)) => {
                let next = data.get(pos + ENTRY_LEN..pos + 2 * ENTRY_LEN);
                match next.and_then(decode_entry) {
                    Some((OP_RETURNS_COUNT, count)) => {
                        let count = u32::try_from(count).unwrap_or(u32::MAX);
                        replayed.returns.insert(offset, count);
                        replayed.entries += 1;
                        pos += ENTRY_LEN;
                    }
                    _ => break,
                }
            }
            Some((OP_RANGE_FROM, from)) => {
                let next = data.get(pos + ENTRY_LEN..pos + 2 * ENTRY_LEN);
                match next.and_then(decode_entry) {
                    Some((OP_RANGE_TO, to)) => {
                        replayed.settled.insert_range(from, to);
                        replayed.entries += 1;
                        pos += ENTRY_LEN;
                    }
                    _ => break,
                }
            }
            _ => break,
        }
        replayed.entries += 1;
        pos += ENTRY_LEN;
    }
    let settled = &replayed.settled;
    replayed
        .returns
        .retain(|offset, _| !settled.contains(*offset));
    replayed.dropped_bytes = (data.len() - pos) as u64;
    (replayed, pos)
}

struct JournalFile {
    file: Arc<dyn FsFile>,
    /// Entries in the file (for the compaction bound).
    entries: u64,
    /// Bytes ever written through this handle, compaction included: a monotonic sequence.
    written_seq: u64,
}

/// An open ack journal.
pub(crate) struct AckJournal {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    file: Mutex<JournalFile>,
    /// Highest `written_seq` known durable.
    synced_seq: Mutex<u64>,
}

impl std::fmt::Debug for AckJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sync_dir(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => fs.sync_dir(dir),
        None => Ok(()),
    }
}

impl AckJournal {
    /// Opens (creating if missing) and replays the journal, cutting a bad tail off.
    pub(crate) fn open(path: &Path) -> io::Result<(AckJournal, Replayed)> {
        Self::open_in(RealFs::shared(), path)
    }

    /// [`AckJournal::open`] on the given file system.
    pub(crate) fn open_in(fs: Arc<dyn Fs>, path: &Path) -> io::Result<(AckJournal, Replayed)> {
        let data = match fs.read(path) {
            Ok(data) => data,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        let (replayed, good_len) = replay_bytes(&data);
        let existed = fs.exists(path);
        let file = fs.open(path, OpenMode::CreateAppend)?;
        if !existed {
            // A journal created here must not vanish with the acks synced into it.
            sync_dir(&*fs, path)?;
        }
        if good_len < data.len() {
            tracing::warn!(
                journal = %path.display(),
                position = good_len,
                dropped_bytes = data.len() - good_len,
                "ack journal has a torn or damaged tail; ignoring it (those acks will be redelivered)"
            );
            file.set_len(good_len as u64)?;
            file.sync_data()?;
        }
        let journal = AckJournal {
            fs,
            path: path.to_owned(),
            file: Mutex::new(JournalFile {
                file,
                entries: replayed.entries,
                written_seq: good_len as u64,
            }),
            synced_seq: Mutex::new(good_len as u64),
        };
        Ok((journal, replayed))
    }

    /// Creates an empty journal, replacing any stale file of the same name.
    pub(crate) fn create(path: &Path) -> io::Result<AckJournal> {
        Self::create_in(RealFs::shared(), path)
    }

    /// [`AckJournal::create`] on the given file system.
    pub(crate) fn create_in(fs: Arc<dyn Fs>, path: &Path) -> io::Result<AckJournal> {
        fs.open(path, OpenMode::CreateTruncate)?.sync_data()?;
        sync_dir(&*fs, path)?;
        Ok(Self::open_in(fs, path)?.0)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends entries (not yet fsynced); returns the sequence to pass to [`Self::sync_to`].
    pub(crate) fn append(&self, ops: &[JournalOp]) -> io::Result<u64> {
        let bytes = encode_ops(ops);
        let mut inner = self.file.lock();
        if bytes.is_empty() {
            return Ok(inner.written_seq);
        }
        inner.file.append(&bytes)?;
        inner.entries += (bytes.len() / ENTRY_LEN) as u64;
        inner.written_seq += bytes.len() as u64;
        Ok(inner.written_seq)
    }

    /// Returns once everything up to `seq` is fsynced (group commit, see the module doc).
    pub(crate) fn sync_to(&self, seq: u64) -> io::Result<()> {
        let mut synced = self.synced_seq.lock();
        if *synced >= seq {
            return Ok(());
        }
        let (file, target) = {
            let inner = self.file.lock();
            (inner.file.clone(), inner.written_seq)
        };
        file.sync_data()?;
        *synced = (*synced).max(target);
        Ok(())
    }

    /// fsyncs everything written so far.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let seq = self.file.lock().written_seq;
        self.sync_to(seq)
    }

    /// Whether the file has grown well past what a snapshot of `settled` and `returned`
    /// requeued offsets would need.
    pub(crate) fn wants_compaction(&self, settled: &SettledSet, returned: usize) -> bool {
        let snapshot_entries = (settled.range_count() + returned) as u64 * 2 + 1;
        let entries = self.file.lock().entries;
        entries > COMPACT_MIN_ENTRIES && entries > snapshot_entries.saturating_mul(4)
    }

    /// Rewrites the journal as a snapshot of the given state (temp file, fsync, rename).
    /// The caller holds the queue's state lock, so no entry is appended meanwhile that the
    /// snapshot would miss.
    pub(crate) fn compact(
        &self,
        settled: &SettledSet,
        delivered_up_to: i64,
        returns: &HashMap<i64, u32>,
    ) -> io::Result<()> {
        let mut ops: Vec<JournalOp> = settled
            .ranges()
            .map(|(from, to)| JournalOp::AckRange { from, to })
            .collect();
        if delivered_up_to >= 0 {
            ops.push(JournalOp::DeliveredUpTo(delivered_up_to));
        }
        ops.extend(
            returns
                .iter()
                .map(|(&offset, &count)| JournalOp::Returns { offset, count }),
        );
        let bytes = encode_ops(&ops);
        let mut inner = self.file.lock();
        let temp = self.path.with_extension("acks.tmp");
        {
            let file = self.fs.open(&temp, OpenMode::CreateTruncate)?;
            file.write_all_at(&bytes, 0)?;
            file.sync_data()?;
        }
        self.fs.rename(&temp, &self.path)?;
        sync_dir(&*self.fs, &self.path)?;
        let before = inner.entries;
        inner.file = self.fs.open(&self.path, OpenMode::CreateAppend)?;
        inner.entries = (bytes.len() / ENTRY_LEN) as u64;
        // The snapshot is durable and covers everything written before it.
        inner.written_seq += 1;
        let (seq, after) = (inner.written_seq, inner.entries);
        // `sync_to` takes the sync lock before the file lock; never hold both the other way.
        drop(inner);
        let mut synced = self.synced_seq.lock();
        *synced = (*synced).max(seq);
        tracing::debug!(journal = %self.path.display(), before, after, "ack journal compacted");
        Ok(())
    }

    /// Number of entries in the file.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.file.lock().entries
    }
}

/// The journal file name of a queue: bytes outside `[A-Za-z0-9._-]` percent-encoded; a long
/// result is cut and suffixed with `~` and a 64-bit FNV-1a hash of the full name, so the name
/// stays under the filesystem's 255-byte limit and distinct names stay distinct.
pub(crate) fn journal_file_name(queue: &str) -> String {
    const LONGEST_STEM: usize = 200;
    const KEPT_PREFIX: usize = 160;
    let mut stem = String::with_capacity(queue.len());
    for byte in queue.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            stem.push(char::from(byte));
        } else {
            stem.push_str(&format!("%{byte:02X}"));
        }
    }
    // A lone "." or ".." must not name the directory itself.
    if stem == "." || stem == ".." {
        stem = stem.replace('.', "%2E");
    }
    if stem.len() > LONGEST_STEM {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in queue.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        stem.truncate(KEPT_PREFIX);
        stem.push_str(&format!("~{hash:016x}"));
    }
    stem + ".acks"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    #[test]
    fn replays_acks_ranges_and_delivered_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.acks");
        let journal = AckJournal::create(&path).unwrap();
        let seq = journal
            .append(&[
                JournalOp::Ack(3),
                JournalOp::AckRange { from: 10, to: 20 },
                JournalOp::DeliveredUpTo(25),
                JournalOp::Ack(0),
            ])
            .unwrap();
        journal.sync_to(seq).unwrap();
        drop(journal);
        let (journal, replayed) = AckJournal::open(&path).unwrap();
        assert_eq!(replayed.entries, 5);
        assert_eq!(replayed.delivered_up_to, 25);
        let ranges: Vec<_> = replayed.settled.ranges().collect();
        assert_eq!(ranges, vec![(0, 1), (3, 4), (10, 20)]);
        assert_eq!(journal.entries(), 5);
    }

    #[test]
    fn requeue_counts_replay_to_the_last_pair_of_unsettled_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.acks");
        let journal = AckJournal::create(&path).unwrap();
        journal
            .append(&[
                JournalOp::Returns {
                    offset: 4,
                    count: 1,
                },
                JournalOp::Returns {
                    offset: 7,
                    count: 1,
                },
                JournalOp::Returns {
                    offset: 4,
                    count: 2,
                },
                JournalOp::Ack(7),
            ])
            .unwrap();
        drop(journal);
        let (journal, replayed) = AckJournal::open(&path).unwrap();
        assert_eq!(replayed.returns, HashMap::from([(4, 2)]));
        assert_eq!(replayed.entries, 7);
        drop(journal);
        // Half a returns pair is a torn tail like half a range pair.
        let mut tail = Vec::new();
        encode_entry(&mut tail, OP_RETURNS_OF, 4);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&tail).unwrap();
        drop(file);
        let (_, replayed) = AckJournal::open(&path).unwrap();
        assert_eq!(replayed.returns, HashMap::from([(4, 2)]));
        assert_eq!(replayed.dropped_bytes, ENTRY_LEN as u64);
    }

    #[test]
    fn a_torn_tail_and_an_unpaired_range_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.acks");
        let journal = AckJournal::create(&path).unwrap();
        journal
            .append(&[JournalOp::Ack(1), JournalOp::Ack(2)])
            .unwrap();
        drop(journal);
        // Half of a range pair plus 5 bytes of a further entry: a write cut short.
        let mut tail = Vec::new();
        encode_entry(&mut tail, OP_RANGE_FROM, 5);
        tail.extend_from_slice(&[OP_ACK, 0, 0, 0, 0]);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&tail).unwrap();
        drop(file);

        let (journal, replayed) = AckJournal::open(&path).unwrap();
        assert_eq!(replayed.entries, 2);
        assert_eq!(replayed.dropped_bytes, tail.len() as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * ENTRY_LEN as u64);
        journal.append(&[JournalOp::Ack(9)]).unwrap();
        drop(journal);
        let (_, replayed) = AckJournal::open(&path).unwrap();
        assert!(
            replayed.settled.contains(9),
            "appends after a cut tail are aligned"
        );
        assert_eq!(replayed.entries, 3);
    }

    #[test]
    fn a_flipped_crc_byte_stops_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.acks");
        let journal = AckJournal::create(&path).unwrap();
        journal
            .append(&[JournalOp::Ack(1), JournalOp::Ack(2)])
            .unwrap();
        drop(journal);
        let mut data = fs::read(&path).unwrap();
        data[ENTRY_LEN + 4] ^= 0xFF;
        fs::write(&path, &data).unwrap();
        let (_, replayed) = AckJournal::open(&path).unwrap();
        assert!(replayed.settled.contains(1));
        assert!(!replayed.settled.contains(2));
    }

    #[test]
    fn compaction_keeps_state_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.acks");
        let journal = AckJournal::create(&path).unwrap();
        let mut settled = SettledSet::default();
        let acks: Vec<JournalOp> = (0..5000)
            .filter(|o| o % 1000 != 999)
            .map(JournalOp::Ack)
            .collect();
        for op in &acks {
            if let JournalOp::Ack(offset) = op {
                settled.insert(*offset);
            }
        }
        journal.append(&acks).unwrap();
        assert!(journal.wants_compaction(&settled, 1));
        let returns = HashMap::from([(999, 3)]);
        journal.compact(&settled, 4999, &returns).unwrap();
        assert_eq!(journal.entries(), 5 * 2 + 1 + 2);
        journal.append(&[JournalOp::Ack(999)]).unwrap();
        journal.sync().unwrap();
        drop(journal);
        let (_, replayed) = AckJournal::open(&path).unwrap();
        settled.insert(999);
        assert_eq!(replayed.settled, settled);
        assert_eq!(replayed.delivered_up_to, 4999);
        assert!(
            replayed.returns.is_empty(),
            "999 was acked after the snapshot"
        );
        assert!(!path.with_extension("acks.tmp").exists());
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(journal_file_name("orders.v1"), "orders.v1.acks");
        assert_eq!(journal_file_name("a/b c"), "a%2Fb%20c.acks");
        assert_eq!(journal_file_name(".."), "%2E%2E.acks");
        let long_a = "é".repeat(120);
        let long_b = format!("{}x", "é".repeat(119));
        let (a, b) = (journal_file_name(&long_a), journal_file_name(&long_b));
        assert!(a.len() < 255 && b.len() < 255);
        assert_ne!(a, b);
    }
}
