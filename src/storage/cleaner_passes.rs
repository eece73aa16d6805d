//! The `cleaner-passes` file of a compacted partition: when each cleaner pass ran and up to
//! which offset it cleaned, and when the earliest kept tombstone or marker may go. A record is
//! first cleaned by the first pass whose end is past its offset; tombstones and transaction
//! markers are removed `delete.retention.ms` after that (their delete horizon). The file is
//! replaced durably after each pass; an unreadable line is skipped (losing a pass only delays
//! a removal, never brings one forward).

use std::path::Path;

use super::error::StorageError;
use super::fs::replace_file_durable;

/// When each pass ran and how far it cleaned (see the module docs).
pub(crate) const PASSES_FILE: &str = "cleaner-passes";
/// Passes remembered; forgetting the oldest only delays tombstone removal.
pub(super) const MAX_PASSES: usize = 64;

/// The `cleaner-passes` file: `due <ms>` (when a kept tombstone or marker may go; 0 for none) and one
/// `<end offset> <time ms>` line per pass, ends and times ascending.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Passes {
    pub(super) tombstones_due_ms: i64,
    pub(super) passes: Vec<(i64, i64)>,
}

impl Passes {
    pub(super) fn load(fs: &dyn super::fs::Fs, dir: &Path) -> Self {
        let Ok(bytes) = fs.read(&dir.join(PASSES_FILE)) else {
            return Self::default();
        };
        let mut out = Self::default();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("due"), Some(due)) => out.tombstones_due_ms = due.parse().unwrap_or(0),
                (Some(end), Some(time)) => {
                    if let (Ok(end), Ok(time)) = (end.parse(), time.parse()) {
                        out.passes.push((end, time));
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub(super) fn store(&self, fs: &dyn super::fs::Fs, dir: &Path) -> Result<(), StorageError> {
        let mut text = format!("due {}\n", self.tombstones_due_ms);
        for (end, time) in &self.passes {
            text.push_str(&format!("{end} {time}\n"));
        }
        let path = dir.join(PASSES_FILE);
        replace_file_durable(fs, &path, text.as_bytes()).map_err(StorageError::io(path))
    }

    /// Where the last pass stopped: offsets at or above it are dirty.
    pub(super) fn clean_point(&self) -> i64 {
        self.passes.last().map_or(0, |(end, _)| *end)
    }

    /// When the pass that first cleaned `offset` ran, if one did.
    pub(super) fn first_cleaned(&self, offset: i64) -> Option<i64> {
        self.passes
            .iter()
            .find(|(end, _)| *end > offset)
            .map(|(_, time)| *time)
    }
}
