//! Delayed appends (`tributary_api::Scheduler`): RocketMQ delay levels, AMQP TTL expiry and
//! delayed retries.
//!
//! Entries live in a [`ScheduleStore`]. On the local engine ([`LocalSchedule`]) an entry is a
//! row of the metadata store's `schedule` table keyed `(due_ms, id)`, with the target and the
//! batch as its value (layout in `broker::metadata::codec`); ids come from the persisted
//! `next_schedule_id` counter, so they are never reused across restarts. On the cloud engine
//! they are rows in PostgreSQL shared by every broker, each broker firing the entries whose
//! target it leads (`cloud::schedule`). Either way an entry is durable once `schedule_append`
//! returns.
//!
//! One tokio task ([`SchedulerService::spawn`]) sleeps until the earliest due time of the
//! entries this broker fires. A `tokio::sync::Notify` wakes it early when an entry is scheduled
//! or cancelled (a notification sent while the task is busy is kept as a permit, so none is
//! lost), and on the cloud engine when another broker scheduled one or leadership moved; there
//! is no polling loop. When entries are due it appends each batch to its target and then
//! deletes the entry.
//!
//! Delivery is at least once: a crash after the append and before the delete appends the batch
//! again after the restart. An append that fails because the target is gone (unknown topic,
//! partition or queue) or because the batch can never be accepted (corrupt, too large) is
//! logged, counted in `tributary_scheduled_messages_dropped_total{reason}` and dropped; any other failure moves the entry's due time forward by an exponential
//! backoff (100 ms doubling up to 30 s), so one failing target does not hold up the others.
//! A `cancel` that races with the append of the same entry may come too late to stop it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_api::{
    EngineError, EngineResult, LogService, QueueService, ScheduleTarget, Scheduler,
};

use crate::broker::metadata::{MetaStore, ScheduledEntry, run_blocking};
use crate::telemetry::names;

/// Entries handled per pass before the earliest due time is looked up again.
const DUE_BATCH: usize = 64;
/// First retry delay after a failed append; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where scheduled entries are kept, and which of them this broker fires.
#[async_trait]
pub trait ScheduleStore: Send + Sync + std::fmt::Debug {
    /// Stores an entry (durably, before returning) and returns its id.
    async fn insert(
        &self,
        due_ms: i64,
        target: &ScheduleTarget,
        batch: &Bytes,
    ) -> EngineResult<u64>;
    /// Removes an entry (cancelled, or dropped as never appendable); whether it was stored.
    async fn remove(&self, id: u64) -> EngineResult<bool>;
    /// Removes an entry whose batch was appended.
    async fn delivered(&self, id: u64) -> EngineResult<()> {
        self.remove(id).await.map(drop)
    }
    /// Moves an entry to a new due time (a retry after a failed append).
    async fn reschedule(&self, id: u64, due_ms: i64) -> EngineResult<()>;
    /// The earliest due time of the entries this broker fires.
    async fn next_due_ms(&self) -> EngineResult<Option<i64>>;
    /// Up to `limit` entries this broker fires, due at or before `now_ms`, earliest first.
    async fn due_entries(&self, now_ms: i64, limit: usize) -> EngineResult<Vec<ScheduledEntry>>;
}

/// The local engine's entries, in the metadata store; this broker fires all of them.
#[derive(Debug)]
pub struct LocalSchedule {
    meta: Arc<MetaStore>,
}

#[async_trait]
impl ScheduleStore for LocalSchedule {
    async fn insert(
        &self,
        due_ms: i64,
        target: &ScheduleTarget,
        batch: &Bytes,
    ) -> EngineResult<u64> {
        let (meta, target, batch) = (self.meta.clone(), target.clone(), batch.clone());
        run_blocking("schedule append", move || {
            meta.insert_scheduled(due_ms, &target, &batch)
        })
        .await
    }

    async fn remove(&self, id: u64) -> EngineResult<bool> {
        let meta = self.meta.clone();
        run_blocking("remove scheduled append", move || meta.remove_scheduled(id)).await
    }

    async fn reschedule(&self, id: u64, due_ms: i64) -> EngineResult<()> {
        let meta = self.meta.clone();
        run_blocking("reschedule append", move || meta.reschedule(id, due_ms))
            .await
            .map(drop)
    }

    async fn next_due_ms(&self) -> EngineResult<Option<i64>> {
        let meta = self.meta.clone();
        run_blocking("find next scheduled append", move || meta.next_due_ms()).await
    }

    async fn due_entries(&self, now_ms: i64, limit: usize) -> EngineResult<Vec<ScheduledEntry>> {
        let meta = self.meta.clone();
        run_blocking("read due scheduled appends", move || {
            meta.due_entries(now_ms, limit)
        })
        .await
    }
}

/// Durable delayed appends and the task that carries them out.
#[derive(Debug)]
pub struct SchedulerService {
    store: Arc<dyn ScheduleStore>,
    /// Wakes the task: an entry scheduled or cancelled here, or (shared with the store's
    /// owner) one scheduled elsewhere or leadership moved.
    wake: Arc<Notify>,
}

/// Milliseconds since the Unix epoch by the system clock (0 if the clock is before 1970).
fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn retry_delay(attempt: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(RETRY_MAX)
}

/// Whether a failed append can never succeed, so retrying would only repeat it.
fn is_permanent(err: &EngineError) -> bool {
    matches!(
        err,
        EngineError::UnknownTopic(_)
            | EngineError::UnknownPartition { .. }
            | EngineError::UnknownQueue(_)
            | EngineError::InvalidName(_)
            | EngineError::CorruptBatch(_)
            | EngineError::BatchTooLarge { .. }
    )
}

impl SchedulerService {
    /// The local engine's scheduler, over the metadata store.
    pub fn new(meta: Arc<MetaStore>) -> Arc<Self> {
        Self::with_store(Arc::new(LocalSchedule { meta }), Arc::new(Notify::new()))
    }

    /// A scheduler over `store`, woken also by whoever else holds `wake`.
    pub fn with_store(store: Arc<dyn ScheduleStore>, wake: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self { store, wake })
    }

    /// Starts the delivery task on `tracker`; it stops when `shutdown` is cancelled.
    pub fn spawn(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
        log: Arc<dyn LogService>,
        queues: Arc<dyn QueueService>,
    ) {
        let scheduler = self.clone();
        tracker.spawn(async move { scheduler.run(shutdown, log, queues).await });
    }

    async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        log: Arc<dyn LogService>,
        queues: Arc<dyn QueueService>,
    ) {
        let mut attempts: HashMap<u64, u32> = HashMap::new();
        let mut store_failures = 0u32;
        loop {
            let next_due = self.store.next_due_ms().await;
            let pause = match next_due {
                Ok(None) => None,
                Ok(Some(due_ms)) => {
                    let wait = due_ms.saturating_sub(self.now_ms());
                    if wait <= 0 {
                        match self
                            .deliver_due(&shutdown, &*log, &*queues, &mut attempts)
                            .await
                        {
                            Ok(()) => store_failures = 0,
                            Err(err) => {
                                tracing::error!(error = %err, "scheduler: metadata store failed");
                                store_failures += 1;
                                self.pause(&shutdown, retry_delay(store_failures)).await;
                            }
                        }
                        if shutdown.is_cancelled() {
                            return;
                        }
                        continue;
                    }
                    Some(Duration::from_millis(
                        u64::try_from(wait).unwrap_or(u64::MAX),
                    ))
                }
                Err(err) => {
                    tracing::error!(error = %err, "scheduler: cannot read the schedule");
                    store_failures += 1;
                    Some(retry_delay(store_failures))
                }
            };
            let sleep = async {
                match pause {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = sleep => {}
            }
        }
    }

    /// Sleeps unless shutdown comes first.
    async fn pause(&self, shutdown: &CancellationToken, pause: Duration) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }

    /// Appends every entry due now; errors only for metadata store failures.
    async fn deliver_due(
        &self,
        shutdown: &CancellationToken,
        log: &dyn LogService,
        queues: &dyn QueueService,
        attempts: &mut HashMap<u64, u32>,
    ) -> EngineResult<()> {
        let due = self.store.due_entries(self.now_ms(), DUE_BATCH).await?;
        for entry in due {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let ScheduledEntry {
                id, target, batch, ..
            } = entry;
            let outcome = append(log, queues, &target, batch).await;
            match outcome {
                Ok(()) => {
                    attempts.remove(&id);
                    self.store.delivered(id).await?;
                }
                Err(err) if is_permanent(&err) => {
                    let reason = match err {
                        EngineError::CorruptBatch(_) | EngineError::BatchTooLarge { .. } => {
                            "refused"
                        }
                        _ => "unknown_target",
                    };
                    metrics::counter!(names::SCHEDULED_DROPPED, "reason" => reason).increment(1);
                    tracing::warn!(id, ?target, error = %err, reason, "scheduled append dropped: it can never be appended");
                    attempts.remove(&id);
                    self.store.remove(id).await?;
                }
                Err(err) => {
                    let attempt = attempts.entry(id).or_insert(0);
                    let delay = retry_delay(*attempt);
                    *attempt += 1;
                    tracing::warn!(id, ?target, error = %err, retry_in = ?delay, "scheduled append failed");
                    let retry_at = self
                        .now_ms()
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    self.store.reschedule(id, retry_at).await?;
                }
            }
        }
        Ok(())
    }
}

async fn append(
    log: &dyn LogService,
    queues: &dyn QueueService,
    target: &ScheduleTarget,
    batch: Bytes,
) -> EngineResult<()> {
    match target {
        ScheduleTarget::Partition(partition) => log.append(partition, batch).await.map(drop),
        ScheduleTarget::Queue(name) => queues.enqueue(name, batch).await.map(drop),
    }
}

#[async_trait]
impl Scheduler for SchedulerService {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }

    /// Checks the batch now, so a corrupt one is refused to the caller instead of dropped later.
    async fn schedule_append(
        &self,
        due_ms: i64,
        target: ScheduleTarget,
        batch: Bytes,
    ) -> EngineResult<u64> {
        tributary_api::batch::verify_batch(&batch)?;
        let id = self.store.insert(due_ms, &target, &batch).await?;
        self.wake.notify_one();
        Ok(id)
    }

    async fn cancel(&self, id: u64) -> EngineResult<bool> {
        let existed = self.store.remove(id).await?;
        self.wake.notify_one();
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(retry_delay(0), Duration::from_millis(100));
        assert_eq!(retry_delay(1), Duration::from_millis(200));
        assert_eq!(retry_delay(3), Duration::from_millis(800));
        assert_eq!(retry_delay(40), RETRY_MAX);
    }

    #[test]
    fn only_unfixable_failures_are_permanent() {
        assert!(is_permanent(&EngineError::UnknownQueue("q".into())));
        assert!(is_permanent(&EngineError::UnknownTopic("t".into())));
        assert!(!is_permanent(&EngineError::ShuttingDown));
        assert!(!is_permanent(&EngineError::Poisoned("t-0".into())));
    }
}
