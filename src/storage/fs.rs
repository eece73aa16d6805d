//! The file-operation seam of the storage engine, the metadata store and the queue journals.
//!
//! Every file and directory operation of those goes through [`Fs`] (paths) and [`FsFile`]
//! (an open file). [`RealFs`] is `std::fs` and the default; [`super::SimFs`] is a simulated disk
//! for power-loss tests. The seam costs one dynamic call per file operation, which is noise next
//! to the system call behind it; the `Fs` itself is only consulted when a file is opened.
//!
//! Durability contract (what the simulated disk enforces and what Linux promises): written file
//! bytes are durable only after [`FsFile::sync_data`] of that file; a created, renamed or
//! removed directory entry is durable only after [`Fs::sync_dir`] of its directory.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and positional writes; the file must exist.
    ReadWrite,
    /// Read and writes at the end; the file must exist.
    Append,
    /// Read and writes at the end; created when missing, kept otherwise.
    CreateAppend,
    /// Read and positional writes; created when missing, emptied otherwise.
    CreateTruncate,
    /// Read and positional writes; created when missing, kept otherwise.
    CreateReadWrite,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// An open file.
pub trait FsFile: Send + Sync + fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `position`.
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()>;
    /// Writes all of `buf` at `position`.
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()>;
    /// Writes `head` then `tail` at the end of a file opened for appending.
    fn append_two(&self, head: &[u8], tail: &[u8]) -> io::Result<()>;
    /// Writes all of `buf` at the end of a file opened for appending.
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.append_two(buf, &[])
    }
    /// Makes the file's contents durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The real file, for memory mapping and zero-copy sends; `None` on a simulated disk.
    fn as_std(&self) -> Option<&File>;
}

/// File and directory operations by path.
pub trait Fs: Send + Sync + fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// Creates the directory and its missing parents (not durable until [`Fs::sync_dir`] of
    /// each parent; see [`create_dir_durable`]).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Whether anything exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive lock that lasts as long as the returned guard.
    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn fmt::Debug + Send + Sync>>;
    /// True when paths name real files that other libraries may open themselves.
    fn is_native(&self) -> bool {
        false
    }

    /// The whole contents of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, OpenMode::Read)?;
        let mut out = vec![0u8; file.len()? as usize];
        file.read_exact_at(&mut out, 0)?;
        Ok(out)
    }
}

/// Creates `path` (and missing parents) so that it survives a crash: every directory that was
/// created is made durable by syncing its parent.
pub fn create_dir_durable(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(dir) = at {
        if fs.exists(dir) {
            break;
        }
        missing.push(dir);
        at = dir.parent().filter(|p| !p.as_os_str().is_empty());
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(path)?;
    for dir in missing.iter().rev() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: `<path>.tmp`, fsync, rename, fsync the
/// directory.
pub fn replace_file_durable(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = Path::new(&temp);
    let file = fs.open(temp, OpenMode::CreateTruncate)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()?;
    drop(file);
    fs.rename(temp, path)?;
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => fs.sync_dir(dir),
        None => Ok(()),
    }
}

/// The real file system (`std::fs`).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// The shared instance.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(RealFs)
    }
}

impl FsFile for File {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, position)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, position)
    }

    fn append_two(&self, head: &[u8], tail: &[u8]) -> io::Result<()> {
        let mut parts = [IoSlice::new(head), IoSlice::new(tail)];
        let mut remaining = &mut parts[..];
        while !remaining.is_empty() {
            match (&*self).write_vectored(remaining) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut remaining, written),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn as_std(&self) -> Option<&File> {
        Some(self)
    }
}

impl Fs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::Append => {
                options.append(true);
            }
            OpenMode::CreateAppend => {
                options.append(true).create(true);
            }
            OpenMode::CreateTruncate => {
                options.write(true).create(true).truncate(true);
            }
            OpenMode::CreateReadWrite => {
                options.write(true).create(true);
            }
        }
        Ok(Arc::new(options.open(path)?))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            // Names that are not UTF-8 are never the engine's own.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type()?.is_dir();
            out.push(DirEntry { name, is_dir });
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_native(&self) -> bool {
        true
    }

    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn fmt::Debug + Send + Sync>> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.try_lock()
            .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "locked by another process"))?;
        Ok(Box::new(file))
    }
}
