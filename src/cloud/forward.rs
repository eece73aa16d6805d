//! The log as the AMQP and RocketMQ frontends see it on the cloud engine: an append to a
//! partition another broker leads is forwarded to that broker over the internal RPC
//! ([`super::rpc`]) instead of refused. The Kafka frontend keeps the plain [`CloudLog`]:
//! Kafka clients route themselves and expect NOT_LEADER_OR_FOLLOWER.
//!
//! Invariants: a forwarded append is acknowledged only after the leader answered, and the
//! leader answers only after the batch committed (`LogService::append`), so the durability
//! future handed back is already resolved; a partition this broker leads, or one that no
//! broker leads in its view, takes the local path (and its usual errors).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tributary_api::batch::VerifiedBatch;
use tributary_api::{
    AppendOutcome, EngineResult, LogService, OffsetQuery, PartitionOffsets, PendingDurability,
    ProducerBatch, ReadBatches, TimestampOffset, TopicPartition,
};

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

#[async_trait]
impl LogService for ForwardingLog {
    async fn append(&self, tp: &TopicPartition, batch: Bytes) -> EngineResult<AppendOutcome> {
        match self.remote_leader(tp) {
            Some(leader) => {
                Ok(self.seen(tp, forward_append(&self.peers, leader, tp, batch).await?))
            }
            None => self.log.append(tp, batch).await,
        }
    }

    async fn append_pipelined(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        match self.remote_leader(tp) {
            Some(leader) => {
                let outcome = forward_append(&self.peers, leader, tp, batch).await?;
                Ok((self.seen(tp, outcome), Box::pin(std::future::ready(Ok(())))))
            }
            None => self.log.append_pipelined(tp, batch).await,
        }
    }

    async fn append_verified(
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
}
