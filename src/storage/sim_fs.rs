//! A simulated disk for power-loss tests: an in-memory tree of directories and files that keeps,
//! per file, the bytes written and the bytes made durable by the last `sync_data`, and per
//! directory, the live entries and the entries made durable by the last `sync_dir`.
//!
//! [`SimDisk::crash`] models a power loss: every directory's entries fall back to its durable
//! ones and every file's contents to its durable contents (optionally keeping a random prefix of
//! bytes appended since, as a disk that wrote back some pages would). The [`SimFs`] views and
//! files handed out before the crash fail every later operation with an I/O error, so the engine
//! that was running cannot touch the disk any more (its `Drop` cannot write a clean-shutdown
//! marker); a new view from [`SimDisk::fs`] sees what survived. [`SimDisk::crash_after`] crashes
//! in the middle of whatever the engine does: the n-th mutating operation from now fails and
//! crashes the disk.
//!
//! Invariants: inode numbers are never reused; a removed or renamed-away inode stays in the
//! table so a durable entry that comes back after a crash still finds its durable contents.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Component, Path};
use std::sync::Arc;

use parking_lot::Mutex;

use super::fs::{DirEntry, Fs, FsFile, OpenMode};

const ROOT: u64 = 0;

#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
    },
    Dir {
        live: BTreeMap<String, u64>,
        durable: BTreeMap<String, u64>,
    },
}

#[derive(Debug)]
struct Disk {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Bumped by every crash; handles and views of an older generation are dead.
    generation: u64,
    /// Mutating operations left before the disk crashes by itself.
    crash_countdown: Option<u64>,
    /// Keep a random prefix of unsynced appended bytes at a crash.
    keep_torn_tails: bool,
    rng: u64,
    mutations: u64,
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: the disk is gone")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn names(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(
                name.to_str()
                    .ok_or_else(|| io::Error::other("non-UTF-8 name"))?
                    .to_owned(),
            ),
            _ => return Err(io::Error::other("unsupported path component")),
        }
    }
    Ok(out)
}

impl Disk {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn check(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(dead())
        }
    }

    /// Counts a mutating operation; the one that reaches the countdown crashes the disk.
    fn mutate(&mut self, generation: u64) -> io::Result<()> {
        self.check(generation)?;
        self.mutations += 1;
        if let Some(left) = self.crash_countdown.as_mut() {
            if *left == 0 {
                self.crash_countdown = None;
                self.crash();
                return Err(dead());
            }
            *left -= 1;
        }
        Ok(())
    }

    fn crash(&mut self) {
        self.generation += 1;
        let keep = self.keep_torn_tails;
        // Sorted, so the random draws (torn tails) are the same in every run of a seed.
        let mut inodes: Vec<u64> = self.nodes.keys().copied().collect();
        inodes.sort_unstable();
        for ino in inodes {
            let random = if keep { self.next_random() } else { 0 };
            match self.nodes.get_mut(&ino) {
                Some(Node::Dir { live, durable }) => *live = durable.clone(),
                Some(Node::File { data, durable }) => {
                    let mut survived = durable.clone();
                    if keep && data.len() > durable.len() && data.starts_with(durable) {
                        let extra = data.len() - durable.len();
                        let kept = (random % (extra as u64 + 1)) as usize;
                        survived.extend_from_slice(&data[durable.len()..durable.len() + kept]);
                        // What survived is now on the platter.
                        *durable = survived.clone();
                    }
                    *data = survived;
                }
                None => {}
            }
        }
    }

    fn dir_entries(&self, ino: u64) -> io::Result<&BTreeMap<String, u64>> {
        match self.nodes.get(&ino) {
            Some(Node::Dir { live, .. }) => Ok(live),
            _ => Err(io::Error::other("not a directory")),
        }
    }

    fn dir_entries_mut(&mut self, ino: u64) -> io::Result<&mut BTreeMap<String, u64>> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir { live, .. }) => Ok(live),
            _ => Err(io::Error::other("not a directory")),
        }
    }

    fn resolve(&self, path: &Path) -> io::Result<u64> {
        let mut ino = ROOT;
        for name in names(path)? {
            ino = *self
                .dir_entries(ino)?
                .get(&name)
                .ok_or_else(|| not_found(path))?;
        }
        Ok(ino)
    }

    /// The directory holding `path` and the last name.
    fn parent_of(&self, path: &Path) -> io::Result<(u64, String)> {
        let mut parts = names(path)?;
        let name = parts
            .pop()
            .ok_or_else(|| io::Error::other("the root has no parent"))?;
        let mut ino = ROOT;
        for part in parts {
            ino = *self
                .dir_entries(ino)?
                .get(&part)
                .ok_or_else(|| not_found(path))?;
        }
        Ok((ino, name))
    }

    fn add(&mut self, node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn file_mut(&mut self, ino: u64) -> io::Result<(&mut Vec<u8>, &mut Vec<u8>)> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File { data, durable }) => Ok((data, durable)),
            _ => Err(io::Error::other("not a file")),
        }
    }
}

/// The simulated disk (see the module doc). Cloning shares the disk.
#[derive(Debug, Clone)]
pub struct SimDisk {
    disk: Arc<Mutex<Disk>>,
}

impl SimDisk {
    /// An empty disk; `seed` drives the torn tails kept at crashes.
    pub fn new(seed: u64) -> SimDisk {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node::Dir {
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        );
        SimDisk {
            disk: Arc::new(Mutex::new(Disk {
                nodes,
                next_ino: ROOT + 1,
                generation: 0,
                crash_countdown: None,
                keep_torn_tails: false,
                rng: seed | 1,
                mutations: 0,
            })),
        }
    }

    /// A file system view valid until the next crash.
    pub fn fs(&self) -> Arc<dyn Fs> {
        Arc::new(SimFs {
            disk: Arc::clone(&self.disk),
            generation: self.disk.lock().generation,
        })
    }

    /// At a crash, keep a random prefix of the bytes appended to each file since its last
    /// sync (as if some pages had been written back).
    pub fn keep_torn_tails(&self, keep: bool) {
        self.disk.lock().keep_torn_tails = keep;
    }

    /// Power loss now.
    pub fn crash(&self) {
        let mut disk = self.disk.lock();
        disk.crash_countdown = None;
        disk.crash();
    }

    /// Power loss at the `n`-th mutating operation from now (0 = the next one), which fails.
    pub fn crash_after(&self, n: u64) {
        self.disk.lock().crash_countdown = Some(n);
    }

    /// Whether a crash armed by [`SimDisk::crash_after`] is still to come.
    pub fn crash_pending(&self) -> bool {
        self.disk.lock().crash_countdown.is_some()
    }

    /// Cancels a crash armed by [`SimDisk::crash_after`].
    pub fn disarm(&self) {
        self.disk.lock().crash_countdown = None;
    }

    /// Power losses so far.
    pub fn crashes(&self) -> u64 {
        self.disk.lock().generation
    }

    /// Mutating operations so far (to pick crash points).
    pub fn mutations(&self) -> u64 {
        self.disk.lock().mutations
    }

    /// Every live path with its size (files) or `/` (directories), for failure messages.
    pub fn listing(&self) -> Vec<String> {
        let disk = self.disk.lock();
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((ino, prefix)) = stack.pop() {
            let Ok(entries) = disk.dir_entries(ino) else {
                continue;
            };
            for (name, child) in entries {
                let path = format!("{prefix}/{name}");
                match disk.nodes.get(child) {
                    Some(Node::File { data, durable }) => {
                        out.push(format!("{path} {} (durable {})", data.len(), durable.len()));
                    }
                    _ => {
                        out.push(format!("{path}/"));
                        stack.push((*child, path));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Current contents of a file (test assertions).
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.disk.lock();
        let ino = disk.resolve(path)?;
        match disk.nodes.get(&ino) {
            Some(Node::File { data, .. }) => Ok(data.clone()),
            _ => Err(io::Error::other("not a file")),
        }
    }
}

/// A view of a [`SimDisk`] (see the module doc).
#[derive(Debug)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
    generation: u64,
}

#[derive(Debug)]
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    generation: u64,
    ino: u64,
    writable: bool,
}

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "file not open for writing")
}

impl FsFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.check(self.generation)?;
        let (data, _) = disk.file_mut(self.ino)?;
        let start = usize::try_from(position).map_err(io::Error::other)?;
        let end = start.checked_add(buf.len()).ok_or_else(dead)?;
        if end > data.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let (data, _) = disk.file_mut(self.ino)?;
        let start = usize::try_from(position).map_err(io::Error::other)?;
        if data.len() < start + buf.len() {
            data.resize(start + buf.len(), 0);
        }
        data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn append_two(&self, head: &[u8], tail: &[u8]) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let (data, _) = disk.file_mut(self.ino)?;
        data.extend_from_slice(head);
        data.extend_from_slice(tail);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let (data, durable) = disk.file_mut(self.ino)?;
        durable.clone_from(data);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut disk = self.disk.lock();
        disk.check(self.generation)?;
        Ok(disk.file_mut(self.ino)?.0.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only());
        }
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let (data, _) = disk.file_mut(self.ino)?;
        data.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        Ok(())
    }

    fn as_std(&self) -> Option<&File> {
        None
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut disk = self.disk.lock();
        disk.check(self.generation)?;
        let existing = disk.resolve(path).ok();
        let ino = match (existing, mode) {
            (Some(ino), OpenMode::CreateTruncate) => {
                disk.mutate(self.generation)?;
                disk.file_mut(ino)?.0.clear();
                ino
            }
            (Some(ino), _) => {
                disk.file_mut(ino)?;
                ino
            }
            (
                None,
                OpenMode::CreateAppend | OpenMode::CreateTruncate | OpenMode::CreateReadWrite,
            ) => {
                disk.mutate(self.generation)?;
                let (parent, name) = disk.parent_of(path)?;
                disk.dir_entries(parent)?;
                let ino = disk.add(Node::File {
                    data: Vec::new(),
                    durable: Vec::new(),
                });
                disk.dir_entries_mut(parent)?.insert(name, ino);
                ino
            }
            (None, _) => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            disk: Arc::clone(&self.disk),
            generation: self.generation,
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.check(self.generation)?;
        let mut ino = ROOT;
        for name in names(path)? {
            ino = match disk.dir_entries(ino)?.get(&name) {
                Some(child) => *child,
                None => {
                    disk.mutate(self.generation)?;
                    let child = disk.add(Node::Dir {
                        live: BTreeMap::new(),
                        durable: BTreeMap::new(),
                    });
                    disk.dir_entries_mut(ino)?.insert(name, child);
                    child
                }
            };
        }
        disk.dir_entries(ino).map(|_| ())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let ino = disk.resolve(path)?;
        match disk.nodes.get_mut(&ino) {
            Some(Node::Dir { live, durable }) => {
                durable.clone_from(live);
                Ok(())
            }
            _ => Err(io::Error::other("not a directory")),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let (from_dir, from_name) = disk.parent_of(from)?;
        let (to_dir, to_name) = disk.parent_of(to)?;
        let ino = disk
            .dir_entries_mut(from_dir)?
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        disk.dir_entries_mut(to_dir)?.insert(to_name, ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.mutate(self.generation)?;
        let (dir, name) = disk.parent_of(path)?;
        disk.dir_entries_mut(dir)?
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        // The subtree stays in the table; only the entry goes (see `crash`).
        self.remove_file(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let disk = self.disk.lock();
        disk.check(self.generation)?;
        let ino = disk.resolve(path)?;
        Ok(disk
            .dir_entries(ino)?
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                is_dir: matches!(disk.nodes.get(child), Some(Node::Dir { .. })),
            })
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let disk = self.disk.lock();
        disk.check(self.generation).is_ok() && disk.resolve(path).is_ok()
    }

    fn lock_file(&self, path: &Path) -> io::Result<Box<dyn fmt::Debug + Send + Sync>> {
        // One engine per view: the lock only has to exist.
        self.open(path, OpenMode::CreateAppend)?;
        Ok(Box::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_bytes_and_entries_survive_a_crash() {
        let disk = SimDisk::new(1);
        let fs = disk.fs();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let a = fs.open(Path::new("/d/a"), OpenMode::CreateAppend).unwrap();
        a.append(b"hello").unwrap();
        a.sync_data().unwrap();
        a.append(b" world").unwrap();
        let b = fs.open(Path::new("/d/b"), OpenMode::CreateAppend).unwrap();
        b.append(b"lost").unwrap();
        b.sync_data().unwrap();
        // `a` is made durable in /d, `b` is not.
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.rename(Path::new("/d/a"), Path::new("/d/c")).unwrap();
        let b2 = fs.open(Path::new("/d/b2"), OpenMode::CreateAppend).unwrap();
        drop(b2);
        disk.crash();
        assert!(a.append(b"x").is_err(), "old handles are dead");
        assert!(!fs.exists(Path::new("/d")), "old views are dead");
        let fs = disk.fs();
        let names: Vec<String> = fs
            .list_dir(Path::new("/d"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(fs.read(Path::new("/d/a")).unwrap(), b"hello");
        assert_eq!(fs.read(Path::new("/d/b")).unwrap(), b"lost");
    }

    #[test]
    fn crash_after_fails_the_nth_mutation() {
        let disk = SimDisk::new(1);
        let fs = disk.fs();
        fs.create_dir_all(Path::new("/d")).unwrap();
        disk.crash_after(1);
        fs.sync_dir(Path::new("/")).unwrap();
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        assert!(!disk.crash_pending());
        assert!(disk.fs().exists(Path::new("/d")));
    }
}
