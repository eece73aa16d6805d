//! Time and delayed delivery (RocketMQ delay levels, AMQP TTL expiry and delayed retries).
//! A scheduled append is durable once `schedule_append` returns and is carried out at or after
//! its due time, also across a restart.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::EngineResult;
use crate::types::TopicPartition;

/// Where a scheduled batch goes when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleTarget {
    Partition(TopicPartition),
    Queue(String),
}

#[async_trait]
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch, by the broker's clock.
    fn now_ms(&self) -> i64;

    /// Appends `batch` to `target` at or after `due_ms`; returns an id for `cancel`.
    async fn schedule_append(
        &self,
        due_ms: i64,
        target: ScheduleTarget,
        batch: Bytes,
    ) -> EngineResult<u64>;

    /// Cancels a pending scheduled append; returns whether it was still pending.
    async fn cancel(&self, id: u64) -> EngineResult<bool>;
}
