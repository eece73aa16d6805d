//! The scheduler's delayed appends in PostgreSQL (`scheduled`), shared by every broker: the
//! [`ScheduleStore`] the broker's scheduler loop (`broker::scheduler`, the same loop, error,
//! drop and backoff rules as the local engine) runs over on the cloud engine.
//!
//! Who fires an entry: the broker that leads its target, a partition's leader (having taken
//! the partition over) or, for `Queue(name)`, the leader of `queue:<name>`/0. An entry thus
//! moves with leadership: a broker that dies with its data directory loses none, and its
//! entries fire on the brokers that take its partitions over, at their due time or as soon as
//! the take-over happened.
//!
//! Invariants:
//! - `schedule_append` returns after the row committed (one statement, its own transaction);
//! - the row's NOTIFY on [`SCHEDULE_CHANNEL`] (payload: its target) is delivered with that
//!   commit and wakes the scheduler of the broker that fires it ([`super::wake`]), which
//!   re-plans; a reconnect of the LISTEN connection, a membership change and a partition
//!   take-over wake it too, so no entry waits for a wake-up it missed;
//! - delivery is at least once: the row is deleted after its append, so a broker dying in
//!   between, or two brokers that both believe they lead for a moment, may append it twice;
//! - any broker may cancel any entry (a DELETE by id); a cancel racing the append may be late.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tributary_api::{EngineResult, ScheduleTarget, TopicPartition};

use super::error::CloudError;
use super::leadership::Cluster;
use super::log::CloudLog;
use super::pool::PgPool;
use super::stats::Stats;
use crate::broker::metadata::ScheduledEntry;
use crate::broker::scheduler::ScheduleStore;

/// The channel a scheduled entry is announced on (empty payload).
pub const SCHEDULE_CHANNEL: &str = "tributary_schedule";

/// `scheduled.kind` of a partition target.
const KIND_PARTITION: i16 = 0;
/// `scheduled.kind` of a queue target (`topic` holds the queue's name).
const KIND_QUEUE: i16 = 1;

/// The delayed appends of the cluster, as this broker sees and fires them.
#[derive(Debug)]
pub struct CloudSchedule {
    pub(super) pool: PgPool,
    pub(super) cluster: Arc<Cluster>,
    pub(super) stats: Arc<Stats>,
    /// Wakes this broker's scheduler loop (shared with it and the LISTEN connection).
    pub(super) wake: Arc<Notify>,
}

/// A target as its three columns.
fn columns(target: &ScheduleTarget) -> (i16, &str, i32) {
    match target {
        ScheduleTarget::Partition(tp) => (KIND_PARTITION, tp.topic.as_str(), tp.partition as i32),
        ScheduleTarget::Queue(name) => (KIND_QUEUE, name.as_str(), 0),
    }
}

fn target(kind: i16, topic: String, partition: i32) -> ScheduleTarget {
    if kind == KIND_QUEUE {
        ScheduleTarget::Queue(topic)
    } else {
        ScheduleTarget::Partition(TopicPartition::new(topic, partition as u32))
    }
}

/// The NOTIFY payload naming a target: `[kind, topic, partition]`.
fn payload(target: &ScheduleTarget) -> String {
    serde_json::to_string(&columns(target)).unwrap_or_default()
}

impl CloudLog {
    /// Whether this broker fires entries of `target` now: it leads the partition and has taken
    /// it over, or leads `queue:<name>`/0.
    pub(super) fn fires_scheduled(&self, target: &ScheduleTarget) -> bool {
        match target {
            ScheduleTarget::Partition(tp) => {
                self.members.leads(tp)
                    && self
                        .partitions
                        .read()
                        .get(tp)
                        .is_some_and(|state| state.led.load(Ordering::Acquire))
            }
            ScheduleTarget::Queue(name) => self
                .members
                .leads(&TopicPartition::new(format!("queue:{name}"), 0)),
        }
    }

    /// Whether a schedule notification concerns this broker (an unreadable one does).
    pub(super) fn fires_notified(&self, payload: &str) -> bool {
        serde_json::from_str::<(i16, String, i32)>(payload).map_or(true, |(kind, topic, p)| {
            self.fires_scheduled(&target(kind, topic, p))
        })
    }
}

impl CloudSchedule {
    /// What wakes this broker's scheduler loop.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn fires(&self, target: &ScheduleTarget) -> bool {
        self.cluster.log.fires_scheduled(target)
    }

    /// Every target with entries due by `until` (all when `None`), with its earliest due time;
    /// records the number of entries pending in the cluster.
    async fn targets(&self, until: Option<i64>) -> EngineResult<Vec<(ScheduleTarget, i64)>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT kind, topic, partition, min(due_ms), count(*) FROM scheduled
                 WHERE $1::bigint IS NULL OR due_ms <= $1
                 GROUP BY kind, topic, partition",
                &[&until],
            )
            .await
            .map_err(CloudError::pg("reading scheduled targets"))?;
        if until.is_none() {
            let pending: i64 = rows.iter().map(|row| row.get::<_, i64>(4)).sum();
            self.stats.scheduled_pending.set(pending.max(0) as u64);
        }
        Ok(rows
            .into_iter()
            .map(|row| (target(row.get(0), row.get(1), row.get(2)), row.get(3)))
            .filter(|(target, _)| self.fires(target))
            .collect())
    }
}

#[async_trait]
impl ScheduleStore for CloudSchedule {
    async fn insert(
        &self,
        due_ms: i64,
        target: &ScheduleTarget,
        batch: &Bytes,
    ) -> EngineResult<u64> {
        let (kind, topic, partition) = columns(target);
        let client = self.pool.get().await?;
        // One statement, so the row and its NOTIFY commit together.
        let row = client
            .query_one(
                "WITH added AS (
                     INSERT INTO scheduled (due_ms, kind, topic, partition, batch)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id
                 )
                 SELECT id, pg_notify($6, $7) FROM added",
                &[
                    &due_ms,
                    &kind,
                    &topic,
                    &partition,
                    &batch.as_ref(),
                    &SCHEDULE_CHANNEL,
                    &payload(target),
                ],
            )
            .await
            .map_err(CloudError::pg("scheduling an append"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn remove(&self, id: u64) -> EngineResult<bool> {
        let client = self.pool.get().await?;
        let removed = client
            .execute("DELETE FROM scheduled WHERE id = $1", &[&(id as i64)])
            .await
            .map_err(CloudError::pg("removing a scheduled append"))?;
        Ok(removed > 0)
    }

    async fn delivered(&self, id: u64) -> EngineResult<()> {
        self.remove(id).await?;
        self.stats.scheduled_fired.inc();
        Ok(())
    }

    async fn reschedule(&self, id: u64, due_ms: i64) -> EngineResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE scheduled SET due_ms = $2 WHERE id = $1",
                &[&(id as i64), &due_ms],
            )
            .await
            .map_err(CloudError::pg("rescheduling an append"))?;
        Ok(())
    }

    async fn next_due_ms(&self) -> EngineResult<Option<i64>> {
        let targets = self.targets(None).await?;
        Ok(targets.into_iter().map(|(_, due)| due).min())
    }

    async fn due_entries(&self, now_ms: i64, limit: usize) -> EngineResult<Vec<ScheduledEntry>> {
        let targets = self.targets(Some(now_ms)).await?;
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut kinds = Vec::with_capacity(targets.len());
        let mut topics = Vec::with_capacity(targets.len());
        let mut partitions = Vec::with_capacity(targets.len());
        for (target, _) in &targets {
            let (kind, topic, partition) = columns(target);
            kinds.push(kind);
            topics.push(topic);
            partitions.push(partition);
        }
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.due_ms, s.kind, s.topic, s.partition, s.batch
                 FROM scheduled AS s
                 JOIN unnest($2::smallint[], $3::text[], $4::int[]) AS u(kind, topic, partition)
                   ON s.kind = u.kind AND s.topic = u.topic AND s.partition = u.partition
                 WHERE s.due_ms <= $1
                 ORDER BY s.due_ms, s.id
                 LIMIT $5",
                &[&now_ms, &kinds, &topics, &partitions, &(limit as i64)],
            )
            .await
            .map_err(CloudError::pg("reading due scheduled appends"))?;
        Ok(rows
            .into_iter()
            .map(|row| ScheduledEntry {
                id: row.get::<_, i64>(0) as u64,
                due_ms: row.get(1),
                target: target(row.get(2), row.get(3), row.get(4)),
                batch: Bytes::from(row.get::<_, Vec<u8>>(5)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_columns_and_the_notify_payload() {
        for original in [
            ScheduleTarget::Partition(TopicPartition::new("t\"x", 7)),
            ScheduleTarget::Queue("q:1".to_owned()),
        ] {
            let (kind, topic, partition) = columns(&original);
            assert_eq!(target(kind, topic.to_owned(), partition), original);
            let (kind, topic, partition): (i16, String, i32) =
                serde_json::from_str(&payload(&original)).expect("payload");
            assert_eq!(target(kind, topic, partition), original);
        }
    }
}
