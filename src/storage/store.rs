//! `Storage`: the topics of one data directory, their partitions, and the interval flusher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use tributary_api::Durability;

use super::LogConfig;
use super::cleaner::{CleanReport, CleanerLimits};
use super::error::StorageError;
use super::fs::{Fs, RealFs, create_dir_durable, replace_file_durable};
use super::naming::{TOPIC_NAME_FILE, decode_topic_dir, encode_topic_dir, is_valid_topic_name};
use super::open_files::{OpenFiles, default_max_open_files};
use super::partition::Partition;
use super::recovery::open_partition;
use super::retention::RetentionReport;
use crate::telemetry::names;

/// Guards the data directory against a second process.
const LOCK_FILE: &str = ".lock";
/// Prefix of topic directories being deleted (removed again at open if a crash interrupted).
const DELETING_PREFIX: &str = ".deleting-";
/// Longest and shortest wait of the interval flusher between checks.
const FLUSHER_MAX_TICK: Duration = Duration::from_secs(1);
const FLUSHER_MIN_TICK: Duration = Duration::from_millis(1);

/// What opening a topic's partitions found and repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub partitions: u32,
    pub truncated_bytes: u64,
    pub rebuilt_indexes: u32,
    pub duration: Duration,
}

/// How to open a [`Storage`].
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// The file system (the real one unless a test simulates a disk).
    pub fs: Arc<dyn Fs>,
    /// Segment log files kept open at once (the descriptor budget); others are reopened on use.
    pub max_open_files: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            fs: RealFs::shared(),
            max_open_files: default_max_open_files(),
        }
    }
}

#[derive(Debug)]
struct Topic {
    dir: PathBuf,
    partitions: Vec<Arc<Partition>>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    files: Arc<OpenFiles>,
    topics: RwLock<HashMap<String, Topic>>,
    closed: AtomicBool,
    stop_flusher: Mutex<bool>,
    wake_flusher: Condvar,
    /// Held (locked) for the life of the storage.
    _lock: Box<dyn std::fmt::Debug + Send + Sync>,
}

/// The log engine of one data directory: `<root>/<encoded topic>/<partition>/`.
#[derive(Debug)]
pub struct Storage {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl Storage {
    /// Opens (creating) the data directory and starts the interval flusher; opens no topics.
    pub fn open(root: &Path) -> Result<Storage, StorageError> {
        Self::open_with(root, StorageOptions::default())
    }

    /// [`Storage::open`] on a given file system and descriptor budget.
    pub fn open_with(root: &Path, options: StorageOptions) -> Result<Storage, StorageError> {
        let fs = options.fs;
        create_dir_durable(&*fs, root).map_err(StorageError::io(root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = match fs.lock_file(&lock_path) {
            Ok(lock) => lock,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(StorageError::Locked {
                    path: root.to_path_buf(),
                });
            }
            Err(err) => return Err(StorageError::io(&lock_path)(err)),
        };
        for entry in fs.list_dir(root).map_err(StorageError::io(root))? {
            if entry.name.starts_with(DELETING_PREFIX) {
                let path = root.join(&entry.name);
                fs.remove_dir_all(&path).map_err(StorageError::io(path))?;
            }
        }
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            files: OpenFiles::new(fs, options.max_open_files),
            topics: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
            stop_flusher: Mutex::new(false),
            wake_flusher: Condvar::new(),
            _lock: lock,
        });
        let flusher_inner = Arc::clone(&inner);
        let flusher = std::thread::Builder::new()
            .name("storage-flusher".into())
            .spawn(move || run_flusher(&flusher_inner))
            .map_err(StorageError::io(root))?;
        Ok(Storage {
            inner,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Opens (recovering from disk) or creates partitions `0..partitions` of a topic. Opening an
    /// open topic applies the config and adds missing partitions.
    pub fn open_topic(
        &self,
        topic: &str,
        partitions: u32,
        config: LogConfig,
    ) -> Result<RecoveryReport, StorageError> {
        self.check_open()?;
        if !is_valid_topic_name(topic) {
            return Err(StorageError::InvalidTopicName(topic.to_owned()));
        }
        let started = Instant::now();
        let mut topics = self.inner.topics.write();
        let mut report = RecoveryReport::default();
        let entry = match topics.get_mut(topic) {
            Some(entry) => {
                for partition in &entry.partitions {
                    partition.set_config(config.clone());
                }
                entry
            }
            None => {
                let fs = self.fs();
                let dir = self.inner.root.join(encode_topic_dir(topic));
                create_dir_durable(fs, &dir).map_err(StorageError::io(&dir))?;
                let name_file = dir.join(TOPIC_NAME_FILE);
                if !fs.exists(&name_file) {
                    replace_file_durable(fs, &name_file, topic.as_bytes())
                        .map_err(StorageError::io(&name_file))?;
                }
                topics.entry(topic.to_owned()).or_insert(Topic {
                    dir,
                    partitions: Vec::new(),
                })
            }
        };
        let current = entry.partitions.len() as u32;
        for id in current..partitions {
            let dir = entry.dir.join(id.to_string());
            let (partition, recovered) =
                open_partition(&self.inner.files, topic, id, &dir, config.clone())?;
            entry.partitions.push(Arc::new(partition));
            report.partitions += 1;
            report.truncated_bytes += recovered.truncated_bytes;
            report.rebuilt_indexes += recovered.rebuilt_indexes;
        }
        drop(topics);
        self.inner.wake_flusher.notify_all();
        report.duration = started.elapsed();
        metrics::gauge!(names::STORAGE_RECOVERY_SECONDS).set(report.duration.as_secs_f64());
        Ok(report)
    }

    /// Closes the topic's partitions and removes its directory (also for a topic only on disk).
    pub fn delete_topic(&self, topic: &str) -> Result<(), StorageError> {
        self.check_open()?;
        let removed = self.inner.topics.write().remove(topic);
        let dir = match &removed {
            Some(entry) => {
                for partition in &entry.partitions {
                    partition.mark_closed();
                }
                entry.dir.clone()
            }
            None => self.inner.root.join(encode_topic_dir(topic)),
        };
        let fs = self.fs();
        if !fs.exists(&dir) {
            return match removed {
                Some(_) => Ok(()),
                None => Err(StorageError::UnknownTopic(topic.to_owned())),
            };
        }
        // Rename first so a crash mid-removal never leaves a half topic under its real name.
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let doomed = self.inner.root.join(format!("{DELETING_PREFIX}{unique}"));
        fs.rename(&dir, &doomed).map_err(StorageError::io(&dir))?;
        fs.remove_dir_all(&doomed)
            .map_err(StorageError::io(&doomed))
    }

    /// Grows a topic to `total` partitions (never shrinks).
    pub fn add_partitions(&self, topic: &str, total: u32) -> Result<(), StorageError> {
        self.check_open()?;
        let mut topics = self.inner.topics.write();
        let entry = topics
            .get_mut(topic)
            .ok_or_else(|| StorageError::UnknownTopic(topic.to_owned()))?;
        let current = entry.partitions.len() as u32;
        if total < current {
            return Err(StorageError::InvalidPartitionCount {
                topic: topic.to_owned(),
                current,
                requested: total,
            });
        }
        let config = entry
            .partitions
            .first()
            .map(|p| p.config())
            .unwrap_or_default();
        for id in current..total {
            let dir = entry.dir.join(id.to_string());
            let (partition, _) =
                open_partition(&self.inner.files, topic, id, &dir, config.clone())?;
            entry.partitions.push(Arc::new(partition));
        }
        Ok(())
    }

    /// Applies a new config to every partition of the topic (takes effect on the next append).
    pub fn set_config(&self, topic: &str, config: LogConfig) -> Result<(), StorageError> {
        let topics = self.inner.topics.read();
        let entry = topics
            .get(topic)
            .ok_or_else(|| StorageError::UnknownTopic(topic.to_owned()))?;
        for partition in &entry.partitions {
            partition.set_config(config.clone());
        }
        drop(topics);
        self.inner.wake_flusher.notify_all();
        Ok(())
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, StorageError> {
        let topics = self.inner.topics.read();
        let entry = topics
            .get(topic)
            .ok_or_else(|| StorageError::UnknownTopic(topic.to_owned()))?;
        entry
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| StorageError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// Number of open partitions of a topic.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        let topics = self.inner.topics.read();
        topics.get(topic).map(|t| t.partitions.len() as u32)
    }

    /// Topic names found on disk (open or not), decoded.
    pub fn topics_on_disk(&self) -> Result<Vec<String>, StorageError> {
        let root = &self.inner.root;
        let fs = self.fs();
        let mut names = Vec::new();
        for entry in fs.list_dir(root).map_err(StorageError::io(root))? {
            let dir_name = entry.name.as_str();
            if dir_name.starts_with('.') || !entry.is_dir {
                continue;
            }
            let stored = fs
                .read(&root.join(dir_name).join(TOPIC_NAME_FILE))
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some(name) = stored.or_else(|| decode_topic_dir(dir_name)) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.inner.topics.read();
        topics
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Retention by age and size, and rolling of old segments, on every partition. Every
    /// partition is tried; the first error is returned.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, StorageError> {
        self.check_open()?;
        let mut report = RetentionReport::default();
        let mut first_error = None;
        for partition in self.all_partitions() {
            match partition.enforce_retention(now_ms) {
                Ok(done) => report.add(done),
                Err(err) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.id(), error = %err, "retention failed");
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    /// One cleaner pass over every compacted partition, one at a time (see `cleaner`). Every
    /// partition is tried; the first error is returned. Stops early when the storage closes.
    pub fn clean_all(
        &self,
        now_ms: i64,
        limits: CleanerLimits,
    ) -> Result<CleanReport, StorageError> {
        self.check_open()?;
        let mut report = CleanReport::default();
        let mut first_error = None;
        for partition in self.all_partitions() {
            if self.inner.closed.load(Ordering::Acquire) {
                break;
            }
            match partition.clean(now_ms, limits) {
                Ok(done) => report.add(done),
                Err(err) => {
                    tracing::warn!(topic = partition.topic(), partition = partition.id(), error = %err, "cleaner pass failed");
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    /// fsyncs every partition with unsynced data. Poisoned partitions are skipped.
    pub fn flush_all(&self) -> Result<(), StorageError> {
        let mut first_error = None;
        for partition in self.all_partitions() {
            if partition.is_dirty()
                && let Err(err) = partition.sync_all_written()
            {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Flushes, writes clean-shutdown markers and stops the flusher; later appends fail with
    /// `Closed`. Idempotent.
    pub fn close(&self) -> Result<(), StorageError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *self.inner.stop_flusher.lock() = true;
        self.inner.wake_flusher.notify_all();
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
        let mut first_error = None;
        for partition in self.all_partitions() {
            if let Err(err) = partition.shutdown() {
                tracing::error!(topic = partition.topic(), partition = partition.id(), error = %err, "clean shutdown failed");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn fs(&self) -> &dyn Fs {
        &**self.inner.files.fs()
    }

    /// The descriptor budget for segment log files.
    pub fn max_open_files(&self) -> usize {
        self.inner.files.cap()
    }

    /// Segment log files open now within the budget (deleted segments still being read are
    /// not counted).
    pub fn open_log_files(&self) -> usize {
        self.inner.files.open_count()
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::error!(error = %err, "closing storage on drop failed");
        }
    }
}

/// The interval-durability thread: wakes at the shortest configured interval and fsyncs the
/// partitions whose interval has passed since their last fsync.
fn run_flusher(inner: &Inner) {
    loop {
        let interval_partitions: Vec<(Arc<Partition>, Duration)> = {
            let topics = inner.topics.read();
            topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .filter_map(|p| match p.config().durability {
                    Durability::Interval(every) => Some((Arc::clone(p), every)),
                    _ => None,
                })
                .collect()
        };
        let tick = interval_partitions
            .iter()
            .map(|(_, every)| *every)
            .min()
            .unwrap_or(FLUSHER_MAX_TICK)
            .clamp(FLUSHER_MIN_TICK, FLUSHER_MAX_TICK);
        {
            let mut stop = inner.stop_flusher.lock();
            if *stop {
                return;
            }
            inner.wake_flusher.wait_for(&mut stop, tick);
            if *stop {
                return;
            }
        }
        for (partition, every) in interval_partitions {
            if partition.is_dirty()
                && partition.since_last_sync() + tick >= every
                && let Err(err) = partition.sync_all_written()
            {
                tracing::error!(topic = partition.topic(), partition = partition.id(), error = %err, "interval fsync failed");
            }
        }
    }
}
