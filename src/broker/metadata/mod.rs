//! The metadata store: one redb database, `<data_dir>/metadata.redb`, holding every durable
//! definition and position the engine keeps outside the log.
//!
//! Tables (keys are redb tuples, compared element by element; values use the versioned binary
//! layouts documented in `metadata/codec.rs`):
//!
//! | table            | key                          | value                              |
//! |------------------|------------------------------|------------------------------------|
//! | `meta`           | `&str` name                  | raw bytes (see below)              |
//! | `topics`         | topic name                   | topic record v1                    |
//! | `queues`         | queue name                   | queue record v1                    |
//! | `records`        | `(namespace, key)`           | opaque bytes the frontend owns     |
//! | `offsets`        | `(group, topic, partition)`  | committed offset v1                |
//! | `schedule`       | `(due_ms, id)`               | scheduled append v1                |
//! | `schedule_by_id` | `id`                         | `due_ms` (index for `cancel`)      |
//!
//! `meta` holds `schema_version` (u32 BE, currently [`SCHEMA_VERSION`]), `cluster_id` (16 bytes,
//! drawn once from the operating system's random source via `getrandom` when the file is
//! created) and `next_schedule_id` (u64 BE, the next id a scheduled append gets).
//!
//! Invariants: every write is one redb write transaction committed with redb's default
//! durability (fsync on commit), so a method that returns `Ok` is on disk; multi-row changes
//! (a group's commit, a topic delete with its offsets) are one transaction. All methods are
//! synchronous and may block on I/O: async callers go through `run_blocking`.

mod codec;
mod kv;
#[cfg(test)]
mod power_loss;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::storage::fs::{Fs, FsFile, OpenMode, RealFs, create_dir_durable};
use tributary_api::{Durability, EngineError, EngineResult, TopicSettings};

pub use kv::ScheduledEntry;

/// Version of the table layout; bumped when a table or value layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
pub(crate) const TOPICS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("topics");
pub(crate) const QUEUES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("queues");
pub(crate) const RECORDS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("records");
pub(crate) const OFFSETS: TableDefinition<'_, (&str, &str, u32), &[u8]> =
    TableDefinition::new("offsets");
pub(crate) const SCHEDULE: TableDefinition<'_, (i64, u64), &[u8]> =
    TableDefinition::new("schedule");
pub(crate) const SCHEDULE_BY_ID: TableDefinition<'_, u64, i64> =
    TableDefinition::new("schedule_by_id");

const SCHEMA_VERSION_KEY: &str = "schema_version";
const CLUSTER_ID_KEY: &str = "cluster_id";
pub(crate) const NEXT_SCHEDULE_ID_KEY: &str = "next_schedule_id";

/// A topic as the metadata store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    /// 16 random bytes, never all zero (Kafka reads the zero UUID as "no id").
    pub id: [u8; 16],
    pub partitions: u32,
    /// Explicit overrides only; `None` follows the broker default.
    pub settings: TopicSettings,
    pub internal: bool,
    pub created_ms: i64,
    /// Who needs the partition count fixed (an AMQP stream); growth is refused while set.
    pub fixed_by: Option<String>,
}

/// A queue as the metadata store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub name: String,
    pub durable: bool,
    pub durability: Option<Durability>,
    pub created_ms: i64,
    /// A priority queue's highest priority.
    pub max_priority: Option<u8>,
    /// Whether the queue counts the bytes of its ready messages.
    pub count_bytes: bool,
}

/// The engine's metadata database.
pub struct MetaStore {
    db: Database,
    path: PathBuf,
    cluster_id: [u8; 16],
}

impl fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaStore")
            .field("path", &self.path)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// Maps a redb (or other displayable) failure to the engine's metadata error.
pub(crate) fn db_error<E: fmt::Display>(context: &'static str) -> impl FnOnce(E) -> EngineError {
    move |err| EngineError::Metadata {
        context,
        message: err.to_string(),
    }
}

/// 16 bytes from the operating system's random source, never all zero.
pub fn random_id() -> EngineResult<[u8; 16]> {
    loop {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(db_error("draw a random id"))?;
        if id != [0u8; 16] {
            return Ok(id);
        }
    }
}

/// redb storage on an [`FsFile`] (used for file systems redb cannot open by path).
#[derive(Debug)]
struct FsBackend(Arc<dyn FsFile>);

impl redb::StorageBackend for FsBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}

/// Runs blocking metadata work on tokio's blocking pool.
pub(crate) async fn run_blocking<T, F>(context: &'static str, work: F) -> EngineResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> EngineResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(db_error(context))?
}

impl MetaStore {
    /// Opens the database at `path`, creating it (and its tables, schema version and cluster
    /// id) on first use. Refuses a file written by a newer schema.
    pub fn open(path: &Path) -> EngineResult<Arc<MetaStore>> {
        Self::open_with(&RealFs::shared(), path)
    }

    /// Whether another process (a running broker) holds the store at `path` open; false when
    /// there is no store there. Opens and closes it at once when nobody holds it.
    pub fn held_by_another_process(path: &Path) -> bool {
        path.exists()
            && matches!(
                Database::create(path),
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
            )
    }

    /// [`MetaStore::open`] on the given file system (a simulated disk in power-loss tests).
    pub fn open_with(fs: &Arc<dyn Fs>, path: &Path) -> EngineResult<Arc<MetaStore>> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            create_dir_durable(&**fs, parent).map_err(|source| EngineError::Io {
                context: "create the metadata directory",
                source,
            })?;
        }
        let existed = fs.exists(path);
        let opened = if fs.is_native() {
            // redb's own file backend: it also locks the file against a second process.
            Database::create(path)
        } else {
            let file =
                fs.open(path, OpenMode::CreateReadWrite)
                    .map_err(|source| EngineError::Io {
                        context: "open metadata.redb",
                        source,
                    })?;
            redb::Builder::new().create_with_backend(FsBackend(file))
        };
        let db = opened.map_err(|error| match error {
            // redb holds an exclusive file lock while open: another process has it.
            redb::DatabaseError::DatabaseAlreadyOpen => EngineError::Metadata {
                context: "open metadata.redb",
                message: format!(
                    "{} is locked by another process (is a broker running on this data directory?)",
                    path.display()
                ),
            },
            other => db_error("open metadata.redb")(other),
        })?;
        if !existed && let Some(parent) = parent {
            // redb fsyncs the file, not the directory entry that names it.
            fs.sync_dir(parent).map_err(|source| EngineError::Io {
                context: "sync the metadata directory",
                source,
            })?;
        }
        let cluster_id = Self::initialise(&db)?;
        Ok(Arc::new(MetaStore {
            db,
            path: path.to_owned(),
            cluster_id,
        }))
    }

    /// Creates missing tables and the `meta` rows; returns the cluster id.
    fn initialise(db: &Database) -> EngineResult<[u8; 16]> {
        let context = "initialise metadata.redb";
        let txn = db.begin_write().map_err(db_error(context))?;
        let cluster_id = {
            for table in [TOPICS, QUEUES] {
                txn.open_table(table).map_err(db_error(context))?;
            }
            txn.open_table(RECORDS).map_err(db_error(context))?;
            txn.open_table(OFFSETS).map_err(db_error(context))?;
            txn.open_table(SCHEDULE).map_err(db_error(context))?;
            txn.open_table(SCHEDULE_BY_ID).map_err(db_error(context))?;
            let mut meta = txn.open_table(META).map_err(db_error(context))?;
            let stored_version = meta
                .get(SCHEMA_VERSION_KEY)
                .map_err(db_error(context))?
                .map(|v| <[u8; 4]>::try_from(v.value()).map(u32::from_be_bytes));
            match stored_version {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
                        .map_err(db_error(context))?;
                }
                Some(Ok(SCHEMA_VERSION)) => {}
                Some(Ok(other)) => {
                    return Err(EngineError::Metadata {
                        context,
                        message: format!(
                            "schema version {other} is not supported (this build reads {SCHEMA_VERSION})"
                        ),
                    });
                }
                Some(Err(_)) => return Err(corrupt_meta(context, SCHEMA_VERSION_KEY)),
            }
            let stored_id = meta
                .get(CLUSTER_ID_KEY)
                .map_err(db_error(context))?
                .map(|v| <[u8; 16]>::try_from(v.value()));
            match stored_id {
                Some(Ok(id)) => id,
                Some(Err(_)) => return Err(corrupt_meta(context, CLUSTER_ID_KEY)),
                None => {
                    let id = random_id()?;
                    meta.insert(CLUSTER_ID_KEY, &id[..])
                        .map_err(db_error(context))?;
                    id
                }
            }
        };
        txn.commit().map_err(db_error(context))?;
        Ok(cluster_id)
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Made once when the database was created; stable across restarts.
    pub fn cluster_id(&self) -> [u8; 16] {
        self.cluster_id
    }

    /// Inserts or replaces a topic.
    pub fn put_topic(&self, topic: &TopicRecord) -> EngineResult<()> {
        self.put_named(
            TOPICS,
            "put topic",
            &topic.name,
            &codec::encode_topic(topic),
        )
    }

    /// Deletes the topic row and every committed offset of its partitions, in one transaction.
    /// Offsets are keyed by group first, so this walks the offsets table once.
    pub fn delete_topic(&self, name: &str) -> EngineResult<bool> {
        let context = "delete topic";
        let txn = self.db.begin_write().map_err(db_error(context))?;
        let existed = {
            let mut topics = txn.open_table(TOPICS).map_err(db_error(context))?;
            let existed = topics.remove(name).map_err(db_error(context))?.is_some();
            let mut offsets = txn.open_table(OFFSETS).map_err(db_error(context))?;
            offsets
                .retain(|(_, topic, _), _| topic != name)
                .map_err(db_error(context))?;
            existed
        };
        txn.commit().map_err(db_error(context))?;
        Ok(existed)
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> EngineResult<Vec<TopicRecord>> {
        self.list_named(TOPICS, "list topics", codec::decode_topic)
    }

    /// Inserts or replaces a queue.
    pub fn put_queue(&self, queue: &QueueRecord) -> EngineResult<()> {
        self.put_named(
            QUEUES,
            "put queue",
            &queue.name,
            &codec::encode_queue(queue),
        )
    }

    pub fn delete_queue(&self, name: &str) -> EngineResult<bool> {
        let context = "delete queue";
        let txn = self.db.begin_write().map_err(db_error(context))?;
        let existed = {
            let mut queues = txn.open_table(QUEUES).map_err(db_error(context))?;
            queues.remove(name).map_err(db_error(context))?.is_some()
        };
        txn.commit().map_err(db_error(context))?;
        Ok(existed)
    }

    /// Every queue, in name order.
    pub fn queues(&self) -> EngineResult<Vec<QueueRecord>> {
        self.list_named(QUEUES, "list queues", codec::decode_queue)
    }

    fn put_named(
        &self,
        table: TableDefinition<'_, &str, &[u8]>,
        context: &'static str,
        name: &str,
        value: &[u8],
    ) -> EngineResult<()> {
        let txn = self.db.begin_write().map_err(db_error(context))?;
        {
            let mut table = txn.open_table(table).map_err(db_error(context))?;
            table.insert(name, value).map_err(db_error(context))?;
        }
        txn.commit().map_err(db_error(context))
    }

    fn list_named<T>(
        &self,
        table: TableDefinition<'_, &str, &[u8]>,
        context: &'static str,
        decode: fn(&str, &[u8]) -> EngineResult<T>,
    ) -> EngineResult<Vec<T>> {
        let txn = self.db.begin_read().map_err(db_error(context))?;
        let table = txn.open_table(table).map_err(db_error(context))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_error(context))? {
            let (name, value) = row.map_err(db_error(context))?;
            out.push(decode(name.value(), value.value())?);
        }
        Ok(out)
    }
}

fn corrupt_meta(context: &'static str, key: &str) -> EngineError {
    EngineError::Metadata {
        context,
        message: format!("the `{key}` row has the wrong length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: name.to_owned(),
            id: random_id().unwrap(),
            partitions: 3,
            settings: TopicSettings {
                retention_ms: Some(60_000),
                ..TopicSettings::default()
            },
            internal: false,
            created_ms: 42,
            fixed_by: None,
        }
    }

    #[test]
    fn topics_and_queues_survive_reopen_and_cluster_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        let store = MetaStore::open(&path).unwrap();
        let cluster_id = store.cluster_id();
        assert_ne!(cluster_id, [0u8; 16]);
        let (a, b) = (topic("a"), topic("b"));
        store.put_topic(&b).unwrap();
        store.put_topic(&a).unwrap();
        let queue = QueueRecord {
            name: "jobs".to_owned(),
            durable: true,
            durability: Some(Durability::Always),
            created_ms: 7,
            max_priority: None,
            count_bytes: false,
        };
        store.put_queue(&queue).unwrap();
        drop(store);

        let store = MetaStore::open(&path).unwrap();
        assert_eq!(store.cluster_id(), cluster_id);
        assert_eq!(store.topics().unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(store.queues().unwrap(), vec![queue]);
        assert!(store.delete_topic("a").unwrap());
        assert!(!store.delete_topic("a").unwrap());
        assert!(store.delete_queue("jobs").unwrap());
        assert!(!store.delete_queue("jobs").unwrap());
        assert_eq!(store.topics().unwrap(), vec![b]);
        assert!(store.queues().unwrap().is_empty());
    }

    #[test]
    fn put_topic_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("m.redb")).unwrap();
        let mut t = topic("t");
        store.put_topic(&t).unwrap();
        t.partitions = 9;
        store.put_topic(&t).unwrap();
        assert_eq!(store.topics().unwrap(), vec![t]);
    }
}
