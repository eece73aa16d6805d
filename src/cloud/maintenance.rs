//! Background maintenance of the cloud log, every `maintenance_interval`: retention on the
//! partitions this broker leads, and the merging of small objects ([`super::merge`]) and object
//! garbage collection on the one live broker that holds the maintenance role (rendezvous
//! hashing of a fixed key over the live brokers, so exactly one does it while views agree, and
//! another takes it over within a lease when it dies).
//!
//! Retention works per batch, not per segment: a partition's log start moves past the batches
//! wholly expired by `retention.ms` (every batch before the first whose newest record is younger
//! than the cutoff) and past the oldest batches beyond `retention.bytes` (the newest batches
//! that fit are kept). The move is DeleteRecords' own transaction ([`CloudLog::move_log_start`]):
//! the log start in `partitions`, the coordinate rows below it deleted, other brokers notified.
//!
//! Object GC: an object whose batches are all gone (retention, DeleteRecords, a deleted topic)
//! is first marked (`objects.orphaned_ms`), and deleted from the store, then from `objects`,
//! only `object_gc_grace` later, so a reader that looked its coordinates up just before can
//! still GET it.
//!
//! Uncommitted objects: a flush PUTs its object before its transaction, so a failed commit (or
//! a broker dying in between) leaves an object without a row in `objects`, which the marking
//! above never sees. The GC broker also lists each broker's log directory and deletes objects
//! whose name (it embeds the creation time) is older than `object_gc_grace` and that have no
//! row; the sweep resumes after the last name it checked, so each object is listed about once.
//! A flush never commits an object named more than half the grace ago (see `flush`), so an
//! object still being committed is never taken for an orphan, as long as clocks of brokers
//! agree to within a quarter of the grace and a COMMIT is not in flight for longer.
//!
//! Invariants:
//! - an object is deleted only when no coordinate row refers to it (checked in the statement
//!   that marks it; rows are never added to an existing object, so the mark stays true), and
//!   its row goes only after the store deleted it, so a failed delete is retried next pass;
//! - retention never moves a log start past the high watermark, nor backwards;
//! - maintenance failures are logged and counted, never fatal: the next pass retries.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_api::TopicPartition;

use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use super::state::PartitionState;
use crate::broker::topics::{effective, now_ms};

/// The rendezvous key of the maintenance role (object GC).
const MAINTENANCE_KEY: &[u8] = b"maintenance";

/// Objects deleted per statement round trip.
const DELETE_CHUNK: i64 = 500;

/// Objects listed per log directory and pass by the sweep for uncommitted objects (the rest
/// waits for the next pass).
const SWEEP_LIMIT: usize = 10_000;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenancePass {
    /// Partitions whose log start retention moved.
    pub trimmed_partitions: u64,
    /// Objects deleted from the store.
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    /// Of `deleted_objects`: objects no commit recorded (a flush whose transaction failed, or
    /// a broker that died between its PUT and its commit).
    pub deleted_uncommitted: u64,
    /// Small objects merged ([`super::merge`]).
    pub merge: super::merge::MergePass,
}

impl CloudLog {
    /// Runs [`CloudLog::maintain`] every `interval` until `stop`.
    pub(super) async fn run_maintenance(
        self: Arc<Self>,
        interval: Duration,
        grace: Duration,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.maintain(grace).await {
                self.stats.failed_maintenance.inc();
                tracing::warn!(%error, "cloud log maintenance failed; retrying next pass");
            }
        }
    }

    /// One pass: retention on the partitions led here, then object GC if this broker holds
    /// the maintenance role.
    pub async fn maintain(&self, grace: Duration) -> CloudResult<MaintenancePass> {
        let mut pass = MaintenancePass::default();
        let led: Vec<(TopicPartition, Arc<PartitionState>)> = self
            .partitions
            .read()
            .iter()
            .filter(|(_, state)| state.led.load(Ordering::Acquire))
            .map(|(tp, state)| (tp.clone(), state.clone()))
            .collect();
        for (tp, state) in led {
            if self.apply_retention(&tp, &state).await? {
                pass.trimmed_partitions += 1;
            }
        }
        self.stats.retention_trims.add(pass.trimmed_partitions);
        if self.members.owner(MAINTENANCE_KEY) == Some(self.settings.broker_id as i32) {
            // Merging first: the objects it empties wait out the grace like any other.
            pass.merge = self.merge_small_objects().await?;
            let (objects, bytes) = self.collect_objects(grace).await?;
            pass.deleted_objects = objects;
            pass.deleted_bytes = bytes;
            pass.deleted_uncommitted = self.collect_uncommitted(grace).await?;
            pass.deleted_objects += pass.deleted_uncommitted;
        }
        Ok(pass)
    }

    /// Moves `tp`'s log start past what its retention settings remove; returns whether it moved.
    async fn apply_retention(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
    ) -> CloudResult<bool> {
        let Some(record) = self.table.read().get(&tp.topic).cloned() else {
            return Ok(false);
        };
        let settings = effective(&self.settings.defaults, &record.settings);
        let offsets = state.public_offsets();
        if offsets.log_start >= offsets.high_watermark {
            return Ok(false);
        }
        let mut target = offsets.log_start;
        let client = self.pool.get().await?;
        if settings.retention_ms >= 0 {
            let cutoff = now_ms().saturating_sub(settings.retention_ms);
            let row = client
                .query_one(
                    "SELECT MIN(base_offset) FROM batches
                     WHERE topic = $1 AND partition = $2 AND base_offset < $3
                       AND max_timestamp >= $4",
                    &[
                        &tp.topic,
                        &(tp.partition as i32),
                        &offsets.high_watermark,
                        &cutoff,
                    ],
                )
                .await
                .map_err(CloudError::pg("finding the batches retention.ms keeps"))?;
            let first_kept: Option<i64> = row.get(0);
            target = target.max(first_kept.unwrap_or(offsets.high_watermark));
        }
        if settings.retention_bytes >= 0 {
            // The newest batch that no longer fits: it and everything older go.
            let row = client
                .query_opt(
                    "SELECT last_offset FROM (
                         SELECT last_offset,
                                SUM(byte_length::bigint) OVER (ORDER BY base_offset DESC) AS newer
                         FROM batches
                         WHERE topic = $1 AND partition = $2 AND base_offset < $3
                     ) AS sized
                     WHERE newer > $4::bigint ORDER BY last_offset DESC LIMIT 1",
                    &[
                        &tp.topic,
                        &(tp.partition as i32),
                        &offsets.high_watermark,
                        &settings.retention_bytes,
                    ],
                )
                .await
                .map_err(CloudError::pg("finding the batches retention.bytes keeps"))?;
            if let Some(row) = row {
                target = target.max(row.get::<_, i64>(0) + 1);
            }
        }
        drop(client);
        if target <= offsets.log_start {
            return Ok(false);
        }
        let moved = self.move_log_start(tp, state, target).await?;
        tracing::debug!(partition = %tp, log_start = moved, "retention moved the log start");
        Ok(moved > offsets.log_start)
    }

    /// Deletes the objects named more than `grace` ago that have no row in `objects`: their
    /// flush PUT them and then failed to commit (or its broker died in between). Each log
    /// directory is swept from where the last pass stopped, so a pass lists only objects named
    /// since; returns the objects deleted.
    async fn collect_uncommitted(&self, grace: Duration) -> CloudResult<u64> {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(grace_ms);
        let mut deleted = 0u64;
        for dir in self.objects.log_dirs().await? {
            let after = self.swept.lock().get(&dir).cloned();
            let keys = self
                .objects
                .logs_named_before(&dir, after.as_deref(), cutoff, SWEEP_LIMIT)
                .await?;
            for chunk in keys.chunks(DELETE_CHUNK as usize) {
                let client = self.pool.get().await?;
                let rows = client
                    .query("SELECT key FROM objects WHERE key = ANY($1)", &[&chunk])
                    .await
                    .map_err(CloudError::pg("looking up listed objects"))?;
                drop(client);
                let known: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
                for key in chunk.iter().filter(|key| !known.contains(*key)) {
                    self.objects.delete(key).await?;
                    deleted += 1;
                    tracing::info!(object = key, "deleted a log object no commit recorded");
                }
                if let Some(last) = chunk.last() {
                    self.swept.lock().insert(dir.clone(), last.clone());
                }
            }
        }
        self.stats.deleted_objects.add(deleted);
        Ok(deleted)
    }

    /// Marks objects without batches, deletes those marked more than `grace` ago; returns the
    /// objects and bytes deleted.
    async fn collect_objects(&self, grace: Duration) -> CloudResult<(u64, u64)> {
        let now = now_ms();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE objects AS o SET orphaned_ms = $1
                 WHERE o.orphaned_ms IS NULL
                   AND NOT EXISTS (SELECT 1 FROM batches AS b WHERE b.object_key = o.key)",
                &[&now],
            )
            .await
            .map_err(CloudError::pg("marking unreferenced objects"))?;
        let mut deleted = (0u64, 0u64);
        loop {
            let rows = client
                .query(
                    "SELECT key, size_bytes FROM objects
                     WHERE orphaned_ms IS NOT NULL AND orphaned_ms <= $1
                     ORDER BY orphaned_ms LIMIT $2",
                    &[&now.saturating_sub(grace_ms), &DELETE_CHUNK],
                )
                .await
                .map_err(CloudError::pg("listing objects to delete"))?;
            if rows.is_empty() {
                break;
            }
            let mut keys: Vec<String> = Vec::with_capacity(rows.len());
            for row in &rows {
                let key: String = row.get(0);
                self.objects.delete(&key).await?;
                deleted.0 += 1;
                deleted.1 += row.get::<_, i64>(1).max(0) as u64;
                keys.push(key);
            }
            client
                .execute("DELETE FROM objects WHERE key = ANY($1)", &[&keys])
                .await
                .map_err(CloudError::pg("forgetting deleted objects"))?;
            self.stats.deleted_objects.add(keys.len() as u64);
            self.stats.deleted_object_bytes.add(
                rows.iter()
                    .map(|row| row.get::<_, i64>(1).max(0) as u64)
                    .sum(),
            );
            if (rows.len() as i64) < DELETE_CHUNK {
                break;
            }
        }
        if deleted.0 > 0 {
            tracing::info!(
                objects = deleted.0,
                bytes = deleted.1,
                "deleted unreferenced log objects"
            );
        }
        Ok(deleted)
    }
}
