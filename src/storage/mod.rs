//! The log engine: topics of partitions, each a directory of segments of Kafka RecordBatch v2.
//! Synchronous (std threads and `parking_lot` locks); no tokio, no protocol types.
//!
//! # On-disk format
//!
//! ```text
//! <root>/.lock                               flock'd by the one process that owns the directory
//! <root>/<topic dir>/topic-name              the topic's real name (UTF-8)
//! <root>/<topic dir>/<partition>/            partition number in decimal
//!     <20-digit base offset>.log             whole RecordBatch v2 batches, back to back
//!     <20-digit base offset>.index           sparse offset index (u32 rel. offset, u32 position)
//!     <20-digit base offset>.timeindex       time index (i64 timestamp, u32 rel. offset)
//!     log-start-offset                       decimal; replaced by write-temp + fsync + rename
//!     recovery-point                         decimal; everything below was verified at open
//!     clean-shutdown                         decimal next offset; exists only after `close`
//!     cleaner-passes                         compacted topics: `due <ms>` + `<end> <time>` lines
//!     <base>.log.clean.tmp                   a cleaned segment before its rename (removed at open)
//! ```
//!
//! Topic directory names percent-encode every byte outside `[A-Za-z0-9._-]` (and a leading
//! `.`); long names are shortened with a hash suffix (see `naming`). Index entry layouts and
//! their invariants are described in `index`; both index files are memory-mapped, preallocated
//! for the active segment and trimmed when a segment is sealed. A `.log` file is written only
//! with positional writes at its end and read only with positional reads, never mapped.
//!
//! # Invariants
//!
//! - Offsets are dense: every batch's base offset is the previous batch's last offset + 1, and
//!   a segment's file name is the base offset of its first batch. On append only bytes 0..8 of a
//!   batch (the base offset, outside the CRC) are changed by the engine, except on a
//!   `LogAppendTime` topic (max timestamp, timestamp-type bit and CRC). The log cleaner
//!   (`cleaner`) removes records from sealed batches of compacted topics but keeps every batch's
//!   offset range, so records may skip offsets while batches stay dense.
//! - The high watermark only advances after a batch is fully written (and, under
//!   `Durability::Always`, fsync'd), so readers never see a torn or unacknowledged batch.
//!   Concurrent `Always` appenders share fsyncs (group commit, see `partition`).
//! - A failed write or fsync poisons the partition: every later append fails with `Poisoned`.
//! - Unsynced data lives only in segments listed for the next fsync round (the active segment and
//!   rolled segments not yet synced).
//! - Recovery verifies the CRC of every batch that may have been written since the last verified
//!   point; a damaged tail with nothing valid after it is truncated (logged), any other damage
//!   refuses to open with [`StorageError::Corrupt`] naming the file and byte position.
//! - Retention and `delete_before` delete only a prefix of sealed segments; the active segment
//!   is never deleted; the log start only moves forward and is persisted before files go.
//! - Every file operation goes through the [`fs::Fs`] seam. A directory entry an
//!   acknowledgement depends on is made durable before it: topic and partition directories, the
//!   `topic-name` file and a partition's first segment at open, a rolled segment's entry in the
//!   next fsync round (before the high watermark passes into it under `always`).
//! - At most `max_open_files` segment log files are held open (see `open_files`); index files
//!   are mapped and keep no descriptor.

pub mod check;
mod checkpoint;
mod cleaner;
mod cleaner_passes;
mod cleaner_txn;
mod config;
mod error;
pub mod fs;
mod index;
mod naming;
mod open_files;
mod partition;
mod read;
mod recovery;
mod retention;
mod segment;
mod sim_fs;
mod store;

pub use cleaner::{CleanReport, CleanerLimits, MAX_KEY_BYTES};
pub use config::LogConfig;
pub use error::{CorruptReason, StorageError};
pub use open_files::{MIN_OPEN_FILES, default_max_open_files};
pub use partition::{AppendInfo, Durable, Partition};
pub use read::{FileSlice, ReadResult};
pub use retention::RetentionReport;
pub use sim_fs::{SimDisk, SimFs};
pub use store::{RecoveryReport, Storage, StorageOptions};

#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod tests;
