//! What the cloud log does as leadership moves between brokers: it learns topics other brokers
//! created, and a partition this broker starts to lead starts from PostgreSQL's high watermark
//! and log start (another broker may have written it meanwhile).
//!
//! Invariants:
//! - a partition is taken over (offsets reloaded, generation bumped) only while no batch of it
//!   is buffered or being flushed here (the flush lock is held and the buffer checked), so no
//!   numbering of an older term is reset under a batch that still waits for its commit; one
//!   that is busy is taken over at the next renewal;
//! - until taken over, a partition counts as not led here ([`PartitionState::led`]), and the
//!   frontend refuses writes to it; should views disagree for a moment, the flush's fencing
//!   update refuses the stale writer;
//! - topics follow PostgreSQL at every renewal and at once on a topics notification
//!   ([`super::wake`]): a topic deleted through another broker is dropped here too (its buffered
//!   batches refused, never acknowledged), one made again under the same name is a new topic.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tributary_api::{BrokerAddress, ClusterView, TopicPartition};

use super::admin;
use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use super::members::Membership;

impl CloudLog {
    /// Brings the topics to what PostgreSQL has: adds topics and partitions other brokers
    /// created, takes their setting changes, and drops topics they deleted (or deleted and made
    /// again: another id), refusing this broker's buffered batches of those.
    pub(super) async fn learn_topics(&self) -> CloudResult<()> {
        // Under the admin lock, so a topic this broker is creating or deleting right now is not
        // mistaken for one another broker deleted or created.
        let _admin = self.admin.lock().await;
        let (table, partitions) = admin::load(&self.pool).await?;
        let gone: Vec<String> = self
            .table
            .read()
            .iter()
            .filter(|(name, held)| table.get(*name).is_none_or(|record| record.id != held.id))
            .map(|(name, _)| name.clone())
            .collect();
        if !gone.is_empty() {
            let _no_flush = self.flushing.lock().await;
            for name in &gone {
                self.drop_pending_topic(name);
                self.table.write().remove(name);
                let mut known = self.partitions.write();
                for (tp, state) in known.iter() {
                    if &tp.topic == name {
                        // Readers waiting on it look again and find it gone.
                        state.led.store(false, Ordering::Release);
                        state.appended.notify(usize::MAX);
                    }
                }
                known.retain(|tp, _| &tp.topic != name);
                tracing::info!(topic = %name, "topic deleted through another broker");
            }
        }
        {
            let mut known = self.table.write();
            for (name, record) in table {
                let changed = known.get(&name).is_none_or(|held| {
                    held.id == record.id && held.partitions <= record.partitions && *held != record
                });
                if changed {
                    known.insert(name, record);
                }
            }
        }
        let table = self.table.read();
        let mut known = self.partitions.write();
        for (tp, state) in partitions {
            if table.contains_key(&tp.topic) && !known.contains_key(&tp) {
                known.insert(tp, state);
            }
        }
        Ok(())
    }

    /// Takes over the partitions `members` says this broker leads now and did not before, and
    /// lets go of the others.
    pub(super) async fn follow_leadership(&self, members: &Membership) -> CloudResult<()> {
        let mut gained: Vec<TopicPartition> = Vec::new();
        for (tp, state) in self.partitions.read().iter() {
            let leads = members.leads(tp);
            if !leads {
                state.led.store(false, Ordering::Release);
            } else if !state.led.load(Ordering::Acquire) {
                gained.push(tp.clone());
            }
        }
        if gained.is_empty() {
            return Ok(());
        }
        // No flush in progress and none starts while the offsets are replaced.
        let _one_flush = self.flushing.lock().await;
        let busy: HashSet<TopicPartition> = self.pending_partitions();
        gained.retain(|tp| !busy.contains(tp));
        let topics: Vec<&str> = gained.iter().map(|tp| tp.topic.as_str()).collect();
        let numbers: Vec<i32> = gained.iter().map(|tp| tp.partition as i32).collect();
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT p.topic, p.partition, p.log_start, p.high_watermark
                 FROM partitions AS p
                 JOIN unnest($1::text[], $2::int[]) AS u(topic, partition)
                   ON p.topic = u.topic AND p.partition = u.partition",
                &[&topics, &numbers],
            )
            .await
            .map_err(CloudError::pg(
                "reading the offsets of partitions taken over",
            ))?;
        let partitions = self.partitions.read();
        for row in rows {
            let tp = TopicPartition::new(row.get::<_, String>(0), row.get::<_, i32>(1) as u32);
            let Some(state) = partitions.get(&tp) else {
                continue;
            };
            let (log_start, high_watermark): (i64, i64) = (row.get(2), row.get(3));
            {
                let mut offsets = state.offsets.lock();
                offsets.log_start = log_start;
                offsets.high_watermark = high_watermark;
                offsets.next_offset = high_watermark;
            }
            state.forget_below(log_start);
            state.generation.fetch_add(1, Ordering::AcqRel);
            state.led.store(true, Ordering::Release);
            // Readers waiting on the old term's high watermark look again.
            state.appended.notify(usize::MAX);
            tracing::info!(partition = %tp, high_watermark, "took over partition leadership");
        }
        // Delayed appends to the partitions taken over are this broker's to fire now.
        self.schedule_wake.notify_one();
        Ok(())
    }

    /// Renews the lease, learns new topics and follows leadership, every renewal, until `stop`.
    pub(super) async fn run_membership(
        self: Arc<Self>,
        members: Arc<Membership>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let view = |members: &Membership| (members.holds_lease(), members.live_ids());
        loop {
            let before = view(&members);
            let round = async {
                members.renew().await?;
                self.learn_topics().await?;
                self.follow_leadership(&members).await
            };
            if let Err(error) = round.await {
                self.stats.failed_lease_renewals.inc();
                tracing::warn!(%error, holds_lease = members.holds_lease(), "membership round failed");
                if !members.holds_lease() {
                    for state in self.partitions.read().values() {
                        state.led.store(false, Ordering::Release);
                    }
                }
            }
            if view(&members) != before {
                // Queue targets' delayed appends follow the membership, not a take-over.
                self.schedule_wake.notify_one();
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = members.wait_renewal() => {}
            }
        }
        members.leave().await;
    }
}

/// The cluster as the frontends see it: the membership's view, except that a partition this
/// broker should lead but has not taken over yet has no leader for the moment.
#[derive(Debug)]
pub struct Cluster {
    pub(super) members: Arc<Membership>,
    pub(super) log: Arc<CloudLog>,
}

impl Cluster {
    /// The membership underneath (lease state, the Kafka port to advertise).
    pub fn members(&self) -> &Arc<Membership> {
        &self.members
    }
}

impl ClusterView for Cluster {
    fn local_id(&self) -> i32 {
        self.members.broker_id() as i32
    }

    fn live(&self) -> Vec<BrokerAddress> {
        self.members.live()
    }

    fn leader(&self, partition: &TopicPartition) -> Option<i32> {
        let leader = self.members.leader(partition)?;
        if leader != self.local_id() {
            return Some(leader);
        }
        let taken_over = self
            .log
            .partitions
            .read()
            .get(partition)
            .is_some_and(|state| state.led.load(Ordering::Acquire));
        taken_over.then_some(leader)
    }

    fn coordinator(&self, key: &str) -> Option<i32> {
        self.members.coordinator(key)
    }

    fn holds_lease(&self) -> bool {
        self.members.holds_lease()
    }
}
