//! Small per-partition files holding one decimal offset, replaced atomically
//! (write `<name>.tmp`, fsync, rename over `<name>`, fsync the directory).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::error::StorageError;

/// The log start offset moved by `delete_before` and retention.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
/// All batches below this offset were verified (at the last open) or cleanly closed.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Present only between a clean `close` and the next open.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// Atomically replaces `dir/name` with `value`.
pub(crate) fn write_offset(dir: &Path, name: &str, value: i64) -> Result<(), StorageError> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(format!("{value}\n").as_bytes())?;
        file.sync_data()?;
        std::fs::rename(&temp, &path)?;
        sync_dir(dir)
    };
    write().map_err(StorageError::io(path.clone()))
}

/// The offset stored in `dir/name`, or `None` when the file is missing or unreadable.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    text.trim().parse().ok()
}

/// fsyncs a directory so a rename or new file in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
