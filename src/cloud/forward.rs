//! The log as the AMQP and RocketMQ frontends see it on the cloud engine: an append to a
//! partition another broker leads is forwarded to that broker over the internal RPC
//! ([`super::rpc`]) instead of refused. The Kafka frontend keeps the plain [`CloudLog`]:
//! Kafka clients route themselves and expect NOT_LEADER_OR_FOLLOWER.
//!
//! Invariants: a forwarded append is acknowledged only after the leader answered, and the
//! leader answers only after the batch committed (`LogService::append`), so the durability
//! future handed back is already resolved; a partition this broker leads, or one that no
//! broker leads in its view, takes the local path (and its usual errors). An append that fails
//! because leadership is settling (a new topic, a take-over in progress) is tried again, at the
//! leader of the moment, for a few seconds ([`SETTLE_FOR`]) before its error is answered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tributary_api::batch::VerifiedBatch;
use tributary_api::{
    AppendOutcome, EngineError, EngineResult, LogService, OffsetQuery, PartitionOffsets,
    PendingDurability, ProducerBatch, ReadBatches, TimestampOffset, TopicPartition,
};

use super::error::CloudError;
use super::log::CloudLog;
use super::queues::forward_append;
use super::rpc::Peers;

/// [`CloudLog`] with appends to other brokers' partitions forwarded.
#[derive(Debug)]
pub struct ForwardingLog {
    pub(super) log: Arc<CloudLog>,
    pub(super) peers: Arc<Peers>,
}

impl ForwardingLog {
    /// The broker to forward an append of `tp` to, if not this one (counted).
    fn remote_leader(&self, tp: &TopicPartition) -> Option<i32> {
        let leader = self.log.members.leader(tp)?;
        let remote = (leader != self.log.members.broker_id() as i32).then_some(leader);
        if remote.is_some() {
            self.log.stats.forwarded_appends.inc();
        }
        remote
    }

    /// A forwarded append is committed once the leader answered: this broker's view of the
    /// partition moves up to it at once, so a read here right after the append finds the batch
    /// (read-your-writes) without waiting for the commit's notification.
    fn seen(&self, tp: &TopicPartition, outcome: AppendOutcome) -> AppendOutcome {
        if let Ok(state) = self.log.state(tp) {
            state.follow(outcome.log_start, outcome.last_offset + 1);
        }
        outcome
    }
}

/// How long an append waits for its partition's leadership to settle before the error
/// reaches the client: a topic just created that its leader has not learned yet, a leader
/// still taking the partition over, views of the membership that disagree for a moment.
const SETTLE_FOR: Duration = Duration::from_secs(5);
/// The pause between two tries while it settles.
const SETTLE_PAUSE: Duration = Duration::from_millis(50);

/// Whether an append failed only because leadership is settling (see [`SETTLE_FOR`]): the
/// batch was not appended, so trying again (at the leader of the moment) appends it once.
/// A lost answer from a leader is retried too, which may store the batch twice: the AMQP and
/// RocketMQ publishers that come through here are at-least-once, as their own retry would be.
fn settling(error: &EngineError) -> bool {
    match error {
        EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. } => true,
        EngineError::Storage(source) => matches!(
            source.downcast_ref::<CloudError>(),
            Some(CloudError::NotLeader(_) | CloudError::Rpc(_))
        ),
        _ => false,
    }
}

impl ForwardingLog {
    /// One append to `tp`'s leader of the moment, here or forwarded; the durability future of
    /// a forwarded one is already resolved.
    async fn append_once(
        &self,
        tp: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        match self.remote_leader(tp) {
            Some(leader) => {
                let batch = batch.into_parts().0;
                let outcome = forward_append(&self.peers, leader, tp, batch).await?;
                Ok((self.seen(tp, outcome), Box::pin(std::future::ready(Ok(())))))
            }
            None => self.log.append_verified(tp, batch).await,
        }
    }

    /// [`Self::append_once`], tried again while leadership settles (see [`settling`]).
    async fn append_settled(
        &self,
        tp: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        let deadline = tokio::time::Instant::now() + SETTLE_FOR;
        loop {
            match self.append_once(tp, batch.clone()).await {
                Err(error) if settling(&error) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(partition = %tp, %error, "append waits for leadership to settle");
                    tokio::time::sleep(SETTLE_PAUSE).await;
                }
                done => return done,
            }
        }
    }
}

#[async_trait]
impl LogService for ForwardingLog {
    async fn append(&self, tp: &TopicPartition, batch: Bytes) -> EngineResult<AppendOutcome> {
        let (outcome, durable) = self.append_pipelined(tp, batch).await?;
        durable.await?;
        Ok(outcome)
    }

    async fn append_pipelined(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        self.append_settled(tp, VerifiedBatch::verify(batch)?).await
    }

    async fn append_verified(
        &self,
        tp: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        self.append_settled(tp, batch).await
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max: usize,
    ) -> EngineResult<ReadBatches> {
        self.log.read(tp, offset, max).await
    }

    async fn wait_for(
        &self,
        tp: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> EngineResult<bool> {
        self.log.wait_for(tp, offset, timeout).await
    }

    fn offsets(&self, tp: &TopicPartition) -> EngineResult<PartitionOffsets> {
        self.log.offsets(tp)
    }

    async fn find_offset(
        &self,
        tp: &TopicPartition,
        query: OffsetQuery,
    ) -> EngineResult<Option<TimestampOffset>> {
        self.log.find_offset(tp, query).await
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> EngineResult<i64> {
        self.log.delete_records(tp, before).await
    }

    async fn producer_batches(
        &self,
        tp: &TopicPartition,
    ) -> EngineResult<Option<Vec<ProducerBatch>>> {
        self.log.producer_batches(tp).await
    }

    async fn allocate_producer_id(&self) -> EngineResult<Option<i64>> {
        self.log.allocate_producer_id().await
    }

    fn partition_generation(&self, tp: &TopicPartition) -> u64 {
        self.log.partition_generation(tp)
    }

    fn markers_removed(&self, tp: &TopicPartition) -> u64 {
        self.log.markers_removed(tp)
    }
}
