//! The descriptor budget: segment log files are opened lazily and at most `cap` of them stay
//! open, the least recently used being closed first (as Kafka and RocketMQ keep only active
//! files open). Index files keep no descriptor at all (see `index`).
//!
//! Invariants:
//! - A [`LogFile`] is in the registry exactly while it holds an evictable open handle; the
//!   registry's size is the number of such handles and is brought back to 90% of `cap` whenever
//!   an open pushes it over `cap`.
//! - Closing a handle never loses data: unsynced bytes stay in the page cache and a later fsync
//!   through a new descriptor writes them (Linux fsync works on the inode, and a writeback error
//!   not yet seen by anyone is reported to the next opener).
//! - A deleted segment's handle is pinned (kept open, never evicted) so readers that took the
//!   segment before the deletion keep reading it, as they did when every file was held open.
//! - Lock order: the registry lock may take a file's handle lock (eviction); a file's handle lock
//!   is never held while taking the registry lock.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::fs::{Fs, FsFile, OpenMode};

/// The smallest budget, whatever the descriptor limit.
pub const MIN_OPEN_FILES: usize = 64;

/// The default budget: half the soft RLIMIT_NOFILE (the rest is for sockets, the metadata
/// store, journals and the runtime), at least [`MIN_OPEN_FILES`].
pub fn default_max_open_files() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(soft / 2)
        .unwrap_or(usize::MAX)
        .max(MIN_OPEN_FILES)
}

/// The open segment files of one storage.
pub(crate) struct OpenFiles {
    fs: Arc<dyn Fs>,
    cap: usize,
    /// Advances at every open; a file's `last_used` is the clock at its latest use.
    clock: AtomicU64,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Weak<LogFile>>>,
}

impl std::fmt::Debug for OpenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFiles")
            .field("cap", &self.cap)
            .field("open", &self.open.lock().len())
            .finish_non_exhaustive()
    }
}

impl OpenFiles {
    pub(crate) fn new(fs: Arc<dyn Fs>, cap: usize) -> Arc<OpenFiles> {
        Arc::new(OpenFiles {
            fs,
            cap: cap.max(1),
            clock: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Evictable handles open now.
    pub(crate) fn open_count(&self) -> usize {
        self.open.lock().len()
    }

    /// A lazily opened file at `path` (opened for reading and appending).
    pub(crate) fn file(self: &Arc<Self>, path: PathBuf) -> Arc<LogFile> {
        Arc::new(LogFile {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            path,
            handle: Mutex::new(None),
            pinned: AtomicBool::new(false),
            last_used: AtomicU64::new(self.clock.load(Ordering::Relaxed)),
            files: Arc::clone(self),
        })
    }

    /// A file with a handle already open (a new or just recovered segment).
    pub(crate) fn file_with(
        self: &Arc<Self>,
        path: PathBuf,
        handle: Arc<dyn FsFile>,
    ) -> Arc<LogFile> {
        let file = self.file(path);
        *file.handle.lock() = Some(handle);
        self.register(&file);
        file
    }

    fn register(&self, file: &Arc<LogFile>) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        file.last_used.store(now, Ordering::Relaxed);
        let mut open = self.open.lock();
        open.insert(file.id, Arc::downgrade(file));
        if open.len() <= self.cap {
            return;
        }
        let keep = (self.cap * 9 / 10).max(1);
        let mut candidates: Vec<(u64, u64)> = open
            .iter()
            .filter(|(id, _)| **id != file.id)
            .filter_map(|(id, weak)| {
                weak.upgrade()
                    .map(|f| (f.last_used.load(Ordering::Relaxed), *id))
            })
            .collect();
        candidates.sort_unstable();
        let excess = open.len().saturating_sub(keep);
        for (_, id) in candidates.into_iter().take(excess) {
            if let Some(victim) = open.remove(&id).and_then(|weak| weak.upgrade())
                && !victim.pinned.load(Ordering::Acquire)
            {
                victim.handle.lock().take();
            }
        }
        // Entries whose file is gone (dropped without deregistering) are stale.
        open.retain(|_, weak| weak.strong_count() > 0);
    }

    fn deregister(&self, id: u64) {
        self.open.lock().remove(&id);
    }
}

/// A segment's log file, open or not (see the module doc).
pub(crate) struct LogFile {
    id: u64,
    path: PathBuf,
    handle: Mutex<Option<Arc<dyn FsFile>>>,
    pinned: AtomicBool,
    last_used: AtomicU64,
    files: Arc<OpenFiles>,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .field("open", &self.handle.lock().is_some())
            .finish_non_exhaustive()
    }
}

impl LogFile {
    /// The open handle, opening the file if it was closed.
    pub(crate) fn get(self: &Arc<Self>) -> io::Result<Arc<dyn FsFile>> {
        self.last_used
            .store(self.files.clock.load(Ordering::Relaxed), Ordering::Relaxed);
        let opened = {
            let mut handle = self.handle.lock();
            if let Some(file) = &*handle {
                return Ok(Arc::clone(file));
            }
            let file = self.files.fs.open(&self.path, OpenMode::Append)?;
            *handle = Some(Arc::clone(&file));
            file
        };
        if !self.pinned.load(Ordering::Acquire) {
            self.files.register(self);
        }
        Ok(opened)
    }

    /// Keeps the file open for the rest of this value's life (before its directory entry is
    /// removed); a file that cannot be opened any more is left closed.
    pub(crate) fn pin(self: &Arc<Self>) {
        self.pinned.store(true, Ordering::Release);
        self.files.deregister(self.id);
        let _ = self.get();
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.files.deregister(self.id);
    }
}
