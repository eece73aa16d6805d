//! Small per-partition files holding one decimal offset, replaced atomically
//! (write `<name>.tmp`, fsync, rename over `<name>`, fsync the directory).

use std::path::Path;

use super::error::StorageError;
use super::fs::{Fs, replace_file_durable};

/// The log start offset moved by `delete_before` and retention.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
/// All batches below this offset were verified (at the last open) or cleanly closed.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Present only between a clean `close` and the next open.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// Atomically and durably replaces `dir/name` with `value`.
pub(crate) fn write_offset(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    value: i64,
) -> Result<(), StorageError> {
    let path = dir.join(name);
    replace_file_durable(fs, &path, format!("{value}\n").as_bytes())
        .map_err(StorageError::io(path.clone()))
}

/// The offset stored in `dir/name`, or `None` when the file is missing or unreadable.
pub(crate) fn read_offset(fs: &dyn Fs, dir: &Path, name: &str) -> Option<i64> {
    let bytes = fs.read(&dir.join(name)).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// Durably removes `dir/name` (missing is fine).
pub(crate) fn remove_durable(fs: &dyn Fs, dir: &Path, name: &str) -> Result<(), StorageError> {
    let path = dir.join(name);
    match fs.remove_file(&path) {
        Ok(()) => fs.sync_dir(dir).map_err(StorageError::io(dir)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StorageError::io(path)(err)),
    }
}
