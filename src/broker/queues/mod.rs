//! Queues on the log (`tributary_api::QueueService`): AMQP classic queues and RocketMQ retry
//! and dead-letter queues.
//!
//! On disk, per queue `<name>`:
//! - its messages: a one-partition storage topic named `queue:<name>` (`:` cannot occur in a
//!   Kafka topic name, so it never clashes with a topic), stored as uncompressed RecordBatch v2;
//!   the log keeps everything (no time or size retention) and its start only moves up to the
//!   ack floor;
//! - its ack journal: `<journal_dir>/<encoded name>.acks` (format in `queues/journal.rs`);
//! - its definition: a row of the metadata store's `queues` table.
//!
//! In memory: a delivery cursor, the requeued and unacked offsets and the settled set (see
//! `queues/state.rs`), and for priority or byte-counting queues an index of the ready messages
//! (`queues/ready.rs`), rebuilt from the log at open. Delivery ids are log offsets.
//!
//! Journal durability follows the queue's policy: `always` fsyncs the journal before `ack`,
//! `purge` or `requeue` returns (concurrent acks share one fsync); `interval:<ms>` fsyncs on an ack that
//! comes at least that long after the last fsync; `never` leaves it to [`Queues::flush`]. The
//! DeliveredUpTo entry written by `take` is never waited for: losing it only loses the
//! `redelivered` flag of messages handed out just before a crash.
//!
//! Threads: what never fsyncs runs on the caller's task (a take, an enqueue's write, the
//! settles of a `never` queue: page-cache I/O, cheaper than a hand-off); fsync waits, and the
//! journal compaction and segment deletion those inline settles leave due, run on the
//! blocking pool. The log start moves only when a whole segment can go (see
//! `QueueHandle::trim_to`).
//!
//! Invariants worth naming:
//! - A message is never lost by the queue: the log start only moves to the ack floor (the
//!   lowest unsettled offset), and a lost journal entry only causes a redelivery.
//! - After a restart, every message not settled is ready again; those handed out before the
//!   restart (below the journaled DeliveredUpTo) are flagged `redelivered`, and each keeps its
//!   journaled requeue count (`Delivery::returns`).
//! - Transient (non-durable) queues are removed with their logs and journals at open.
//! - The metadata store is the authority: a `queue:` log or journal with no queue row (left by
//!   a crash during delete) is removed at open.

mod handle;
pub(crate) use handle::decode_all;
pub(crate) mod journal;
#[cfg(test)]
mod journal_power_loss;
pub(crate) mod ready;
pub(crate) mod settled;
pub(crate) mod state;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use tributary_api::{
    AppendOutcome, Delivery, Durability, EngineError, EngineResult, HeadFilter, HeadTake,
    QueueDepth, QueueOptions, QueueService, validate_name,
};

use crate::broker::metadata::{MetaStore, QueueRecord, run_blocking};
use crate::storage::{LogConfig, Storage};
use handle::{Enqueued, QueueHandle, Settled};
use journal::{AckJournal, journal_file_name};
use ready::ReadyIndex;
use state::QueueState;

/// Prefix of the storage topic behind a queue.
pub const QUEUE_LOG_PREFIX: &str = "queue:";

/// The storage topic that holds a queue's messages.
pub fn queue_log_topic(queue: &str) -> String {
    format!("{QUEUE_LOG_PREFIX}{queue}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn io_error(context: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    move |source| EngineError::Io { context, source }
}

/// Every queue of the broker.
pub struct Queues {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<Storage>,
    meta: Arc<MetaStore>,
    journal_dir: PathBuf,
    defaults: LogConfig,
    queues: RwLock<BTreeMap<String, Arc<QueueHandle>>>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("journal_dir", &self.inner.journal_dir)
            .field("queues", &self.inner.queues.read().len())
            .finish_non_exhaustive()
    }
}

impl Queues {
    /// Loads every queue the metadata store lists: removes transient ones, recovers durable
    /// ones (their logs and journals) and sweeps leftovers of queues that no longer exist.
    pub fn open(
        storage: Arc<Storage>,
        meta: Arc<MetaStore>,
        journal_dir: PathBuf,
        defaults: LogConfig,
    ) -> EngineResult<Arc<Queues>> {
        // Durably: the journals in it hold acks that must survive a power loss.
        crate::storage::fs::create_dir_durable(&crate::storage::fs::RealFs, &journal_dir)
            .map_err(io_error("create the queue journal directory"))?;
        let inner = Inner {
            storage,
            meta,
            journal_dir,
            defaults,
            queues: RwLock::new(BTreeMap::new()),
        };
        let mut opened = BTreeMap::new();
        for record in inner.meta.queues()? {
            if record.durable {
                let handle = inner.open_queue(&record, false)?;
                opened.insert(record.name.clone(), Arc::new(handle));
            } else {
                tracing::info!(queue = %record.name, "removing transient queue at start");
                inner.meta.delete_queue(&record.name)?;
                inner.discard_log(&queue_log_topic(&record.name))?;
                inner.remove_journal(&record.name)?;
            }
        }
        inner.sweep_leftovers(&opened)?;
        *inner.queues.write() = opened;
        Ok(Arc::new(Queues {
            inner: Arc::new(inner),
        }))
    }

    /// fsyncs every journal and lets storage drop fully acked segments (called at shutdown).
    pub fn flush(&self) -> EngineResult<()> {
        let handles: Vec<_> = self.inner.queues.read().values().cloned().collect();
        for handle in handles {
            handle.flush()?;
        }
        Ok(())
    }

    /// Segments in a queue's log.
    pub fn segment_count(&self, name: &str) -> EngineResult<usize> {
        Ok(self.inner.handle(name)?.segment_count())
    }
}

impl Inner {
    fn handle(&self, name: &str) -> EngineResult<Arc<QueueHandle>> {
        self.queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownQueue(name.to_owned()))
    }

    fn journal_path(&self, name: &str) -> PathBuf {
        self.journal_dir.join(journal_file_name(name))
    }

    /// The queue's own policy if it names one; else the broker default for a durable queue and
    /// `never` for a transient one: its log is removed at the next start, so an fsync would
    /// protect nothing (RabbitMQ does not sync non-durable queues either).
    fn durability(&self, record: &QueueRecord) -> Durability {
        match record.durability {
            Some(durability) => durability,
            None if record.durable => self.defaults.durability,
            None => Durability::Never,
        }
    }

    fn log_config(&self, record: &QueueRecord) -> LogConfig {
        LogConfig {
            durability: self.durability(record),
            retention_ms: -1,
            retention_bytes: -1,
            ..self.defaults.clone()
        }
    }

    /// Opens (or, with `fresh`, creates) a queue's log and journal.
    fn open_queue(&self, record: &QueueRecord, fresh: bool) -> EngineResult<QueueHandle> {
        let log_topic = queue_log_topic(&record.name);
        let config = self.log_config(record);
        self.storage.open_topic(&log_topic, 1, config.clone())?;
        let mut log = self.storage.partition(&log_topic, 0)?;
        if fresh && log.high_watermark() > 0 {
            // A log left behind by a delete that failed half-way: it is not this queue's.
            tracing::warn!(queue = %record.name, "discarding a stale log under a new queue");
            self.storage.delete_topic(&log_topic)?;
            self.storage.open_topic(&log_topic, 1, config)?;
            log = self.storage.partition(&log_topic, 0)?;
        }
        let path = self.journal_path(&record.name);
        let (journal, replayed) = if fresh {
            let journal = AckJournal::create(&path).map_err(io_error("create an ack journal"))?;
            (journal, journal::Replayed::default())
        } else {
            AckJournal::open(&path).map_err(io_error("open an ack journal"))?
        };
        let delivered_up_to = if fresh { -1 } else { replayed.delivered_up_to };
        let mut state =
            QueueState::recovered(replayed.settled, delivered_up_to, log.log_start_offset());
        state.returns = replayed.returns;
        let indexed = record.max_priority.is_some() || record.count_bytes;
        if indexed {
            state.index = Some(ReadyIndex::new(record.max_priority.unwrap_or(0)));
        }
        let handle = QueueHandle::new(
            record.name.clone(),
            log_topic,
            log,
            self.durability(record),
            journal,
            state,
        );
        if indexed {
            handle.rebuild_index()?;
        }
        Ok(handle)
    }

    /// Deletes a storage topic whether or not this process has opened it.
    fn discard_log(&self, topic: &str) -> EngineResult<()> {
        if self.storage.delete_topic(topic).is_ok() {
            return Ok(());
        }
        self.storage.open_topic(topic, 1, self.defaults.clone())?;
        self.storage.delete_topic(topic)?;
        Ok(())
    }

    fn remove_journal(&self, name: &str) -> EngineResult<()> {
        match fs::remove_file(self.journal_path(name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error("remove an ack journal")(err))
            }
            _ => Ok(()),
        }
    }

    /// Removes `queue:` logs and journal files that belong to no queue.
    fn sweep_leftovers(&self, queues: &BTreeMap<String, Arc<QueueHandle>>) -> EngineResult<()> {
        for topic in self.storage.topics_on_disk()? {
            if let Some(name) = topic.strip_prefix(QUEUE_LOG_PREFIX)
                && !queues.contains_key(name)
            {
                tracing::warn!(queue = %name, "removing the log of a queue that no longer exists");
                self.discard_log(&topic)?;
            }
        }
        let known: HashSet<PathBuf> = queues
            .values()
            .map(|h| h.journal.path().to_owned())
            .collect();
        let entries = fs::read_dir(&self.journal_dir).map_err(io_error("list ack journals"))?;
        for entry in entries {
            let path = entry.map_err(io_error("list ack journals"))?.path();
            let is_journal = path
                .extension()
                .is_some_and(|ext| ext == "acks" || ext == "tmp");
            if is_journal && !known.contains(&path) {
                tracing::warn!(journal = %path.display(), "removing an ack journal of no queue");
                fs::remove_file(&path).map_err(io_error("remove an ack journal"))?;
            }
        }
        Ok(())
    }

    fn declare(&self, name: &str, options: QueueOptions) -> EngineResult<QueueDepth> {
        let mut queues = self.queues.write();
        if let Some(existing) = queues.get(name) {
            return existing.depth();
        }
        let record = QueueRecord {
            name: name.to_owned(),
            durable: options.durable,
            durability: options.durability,
            created_ms: now_ms(),
            max_priority: options.max_priority,
            count_bytes: options.count_bytes,
        };
        self.meta.put_queue(&record)?;
        let handle = Arc::new(self.open_queue(&record, true)?);
        let depth = handle.depth()?;
        queues.insert(name.to_owned(), handle);
        Ok(depth)
    }

    /// Metadata first: a crash after it leaves only leftovers that the next open sweeps.
    fn delete(&self, name: &str) -> EngineResult<u64> {
        let handle = self
            .queues
            .write()
            .remove(name)
            .ok_or_else(|| EngineError::UnknownQueue(name.to_owned()))?;
        let held = handle.mark_deleted();
        self.meta.delete_queue(name)?;
        self.storage.delete_topic(&handle.log_topic)?;
        self.remove_journal(name)?;
        Ok(held)
    }
}

/// Runs queue work that does file I/O on the blocking pool.
async fn blocking<T, F>(inner: &Arc<Inner>, name: &str, work: F) -> EngineResult<T>
where
    T: Send + 'static,
    F: FnOnce(&QueueHandle) -> EngineResult<T> + Send + 'static,
{
    let handle = inner.handle(name)?;
    run_blocking("queue operation", move || work(&handle)).await
}

/// Runs a settle (`first_half`, then `QueueHandle::finish_settle`): for a queue that settles
/// unsynced, the first half on the caller's task and due maintenance queued to the blocking
/// pool; for any other, both halves on the blocking pool (the second one fsyncs).
async fn settle(
    inner: &Arc<Inner>,
    name: &str,
    ids: &[u64],
    first_half: fn(&QueueHandle, &[u64]) -> EngineResult<Settled>,
) -> EngineResult<()> {
    let handle = inner.handle(name)?;
    if handle.settles_unsynced() {
        if first_half(&handle, ids)?.maintenance_due {
            spawn_maintenance(handle);
        }
        return Ok(());
    }
    let ids = ids.to_vec();
    run_blocking("queue operation", move || {
        let settled = first_half(&handle, &ids)?;
        handle.finish_settle(settled)
    })
    .await
}

/// Most maintenance rounds one queued run makes (each round catches up with settles that came
/// while the last one ran).
const MAINTENANCE_ROUNDS: usize = 4;

/// Runs a queue's due maintenance (journal compaction, segment deletion) on the blocking pool
/// after a settle that ran inline; at most one is queued per queue.
fn spawn_maintenance(handle: Arc<QueueHandle>) {
    if !handle.claim_maintenance() {
        return;
    }
    // Settles that found the claim taken meanwhile did not queue their own run: look again.
    tokio::task::spawn_blocking(move || {
        for _ in 0..MAINTENANCE_ROUNDS {
            if let Err(error) = handle.maintain() {
                if !matches!(error, EngineError::UnknownQueue(_)) {
                    tracing::warn!(queue = %handle.name, %error, "queue maintenance failed");
                }
                return;
            }
            if !handle.maintenance_due_now() || !handle.claim_maintenance() {
                return;
            }
        }
    });
}

#[async_trait]
impl QueueService for Queues {
    async fn declare_queue(&self, name: &str, options: QueueOptions) -> EngineResult<QueueDepth> {
        validate_name(name)?;
        // The log topic's name carries the prefix and must itself be a valid name.
        validate_name(&queue_log_topic(name))
            .map_err(|_| EngineError::InvalidName(name.to_owned()))?;
        let (inner, name) = (self.inner.clone(), name.to_owned());
        run_blocking("declare queue", move || inner.declare(&name, options)).await
    }

    async fn delete_queue(&self, name: &str) -> EngineResult<u64> {
        let (inner, name) = (self.inner.clone(), name.to_owned());
        run_blocking("delete queue", move || inner.delete(&name)).await
    }

    async fn purge_queue(&self, name: &str) -> EngineResult<u64> {
        blocking(&self.inner, name, |queue| queue.purge()).await
    }

    async fn enqueue(&self, name: &str, batch: Bytes) -> EngineResult<AppendOutcome> {
        // The write goes to the page cache here; only an fsync wait goes to the blocking pool.
        let handle = self.inner.handle(name)?;
        match handle.enqueue_unsynced(&batch, now_ms())? {
            Enqueued::Done(outcome) => Ok(outcome),
            Enqueued::Pending(pending) => {
                run_blocking("queue operation", move || handle.finish_enqueue(pending)).await
            }
        }
    }

    /// Runs inline: a take reads the log (page cache) and writes one journal entry, never
    /// fsyncs, and a hand-off to the blocking pool would cost more than the work.
    async fn take(&self, name: &str, max: usize) -> EngineResult<Vec<Delivery>> {
        self.inner.handle(name)?.take(max)
    }

    async fn take_head_while(
        &self,
        name: &str,
        max: usize,
        accept: HeadFilter,
    ) -> EngineResult<HeadTake> {
        self.inner
            .handle(name)?
            .take_head_while(max, &|record| accept.accepts(record))
    }

    async fn wait_ready(&self, name: &str, timeout: Duration) -> EngineResult<bool> {
        self.inner.handle(name)?.wait_ready(timeout).await
    }

    async fn ack(&self, name: &str, ids: &[u64]) -> EngineResult<()> {
        settle(&self.inner, name, ids, QueueHandle::ack_unsynced).await
    }

    async fn requeue(&self, name: &str, ids: &[u64]) -> EngineResult<()> {
        settle(&self.inner, name, ids, QueueHandle::requeue_unsynced).await
    }

    async fn depth(&self, name: &str) -> EngineResult<QueueDepth> {
        self.inner.handle(name)?.depth()
    }

    fn local_depths(&self) -> Vec<(String, QueueDepth)> {
        let handles: Vec<_> = self.inner.queues.read().values().cloned().collect();
        handles
            .into_iter()
            .filter_map(|handle| Some((handle.name.clone(), handle.depth().ok()?)))
            .collect()
    }

    async fn queues(&self) -> Vec<String> {
        self.inner.queues.read().keys().cloned().collect()
    }
}

/// Where a journal for `name` lives under `journal_dir` (for tests that damage it on purpose).
pub fn journal_path(journal_dir: &Path, name: &str) -> PathBuf {
    journal_dir.join(journal_file_name(name))
}
