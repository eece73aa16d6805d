//! Queues on the log (AMQP classic queues, RocketMQ retry and dead-letter queues).
//!
//! A queue is a one-partition log plus a delivery cursor, the set of delivered-but-unacked
//! offsets and the offsets put back for redelivery. Acks and requeues (with each message's
//! requeue count) go to a journal, so after a restart every unacked message is ready again,
//! flagged redelivered, with the count it had. Delivery ids are the record offsets in the
//! queue's log; frontends map their own tags (per channel) onto them.
//! Records in a queue log are stored in uncompressed batches.
//!
//! A queue declared with `max_priority` delivers its ready messages highest priority first
//! (FIFO within a priority; a requeued message goes back to its place): a record's priority is
//! the one byte of its [`PRIORITY_HEADER`] (absent = 0, above `max_priority` = `max_priority`).
//! Such queues, and those declared with `count_bytes`, index their ready messages in memory
//! (rebuilt from the log at start) and report `ready_bytes`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::batch::Record;
use crate::error::EngineResult;
use crate::types::{AppendOutcome, Durability};

/// Record header holding a message's priority (one byte) in a priority queue.
pub const PRIORITY_HEADER: &[u8] = b"queue.priority";

/// How a queue is declared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueOptions {
    /// A durable queue and its messages survive a restart; a transient one is removed at start.
    pub durable: bool,
    /// `None`: the broker default for a durable queue, `never` for a transient one (its log is
    /// removed at the next start, so syncing it would protect nothing).
    pub durability: Option<Durability>,
    /// Makes a priority queue with priorities `0..=max_priority`.
    pub max_priority: Option<u8>,
    /// Count the value bytes of ready messages (`QueueDepth::ready_bytes`).
    pub count_bytes: bool,
}

/// Counts a queue's users watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Ready to be delivered.
    pub ready: u64,
    /// Delivered and awaiting ack.
    pub unacked: u64,
    /// Value (body) bytes of the ready messages; 0 unless the queue counts bytes or has
    /// priorities.
    pub ready_bytes: u64,
}

/// One message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The record's offset in the queue log; the id to ack or requeue.
    pub id: u64,
    pub record: Record,
    /// Delivered before (requeued, or unacked at a restart).
    pub redelivered: bool,
    /// How often it was requeued before this delivery (journaled: kept across a restart; a
    /// delivery cut short by the restart itself is not counted).
    pub returns: u32,
}

/// Decides whether `take_head_while` takes a ready message at the head of a queue.
///
/// Declarative rather than a closure: on the cloud engine the queue may run on another broker,
/// so the rule travels over the wire and is evaluated where the queue is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadFilter {
    /// Takes every message.
    All,
    /// Takes a message whose header `header` holds an 8-byte big-endian integer at most
    /// `at_most` (AMQP expiry: the expiry header at or before now); a message without it, or
    /// with a value of another size, is refused.
    HeaderAtMost { header: Bytes, at_most: i64 },
}

impl HeadFilter {
    /// Whether the rule takes `record`.
    pub fn accepts(&self, record: &Record) -> bool {
        match self {
            HeadFilter::All => true,
            HeadFilter::HeaderAtMost { header, at_most } => record
                .headers
                .iter()
                .find(|(key, _)| key == header)
                .and_then(|(_, value)| <[u8; 8]>::try_from(value.as_deref()?).ok())
                .is_some_and(|bytes| i64::from_be_bytes(bytes) <= *at_most),
        }
    }
}

/// What `take_head_while` took, and a copy of the ready message it stopped at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadTake {
    pub taken: Vec<Delivery>,
    /// The first ready message `accept` refused (left ready); `None` when none is left, or
    /// when `max` was reached first.
    pub head: Option<Record>,
}

#[async_trait]
pub trait QueueService: Send + Sync + std::fmt::Debug {
    /// Creates the queue or returns the existing one's depth; idempotent.
    async fn declare_queue(&self, name: &str, options: QueueOptions) -> EngineResult<QueueDepth>;

    /// Deletes the queue and its log; returns how many messages it held.
    async fn delete_queue(&self, name: &str) -> EngineResult<u64>;

    /// Drops every ready message; returns how many.
    async fn purge_queue(&self, name: &str) -> EngineResult<u64>;

    /// Appends a batch of messages (uncompressed RecordBatch v2) to the queue.
    async fn enqueue(&self, name: &str, batch: Bytes) -> EngineResult<AppendOutcome>;

    /// Takes up to `max` ready messages (requeued ones first) and marks them unacked.
    async fn take(&self, name: &str, max: usize) -> EngineResult<Vec<Delivery>>;

    /// Like `take`, but only while `accept` holds for the next ready message (in delivery
    /// order): expiry sweeps take what is due at the head and learn the next deadline from
    /// the message they stopped at, without handing it out or flagging it redelivered.
    async fn take_head_while(
        &self,
        name: &str,
        max: usize,
        accept: HeadFilter,
    ) -> EngineResult<HeadTake>;

    /// Waits until the queue has a ready message or `timeout` elapses; returns whether one is
    /// ready. Dropping the future cancels the wait.
    async fn wait_ready(&self, name: &str, timeout: Duration) -> EngineResult<bool>;

    /// Settles deliveries as done.
    async fn ack(&self, name: &str, ids: &[u64]) -> EngineResult<()>;

    /// Puts deliveries back to be delivered again (to the front of the queue).
    async fn requeue(&self, name: &str, ids: &[u64]) -> EngineResult<()>;

    /// Async: on the cloud engine it may ask the broker that runs the queue.
    async fn depth(&self, name: &str) -> EngineResult<QueueDepth>;

    /// Names of all declared queues. Async: on the cloud engine they are read from the
    /// cluster-wide table.
    async fn queues(&self) -> Vec<String>;

    /// The depth of every queue this broker runs, without asking any other (sync, for a
    /// metrics scrape): on the local engine every queue, on the cloud engine the queues whose
    /// owner this broker is, so a cluster's brokers report each queue once between them.
    fn local_depths(&self) -> Vec<(String, QueueDepth)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &[u8]) -> Record {
        Record {
            key: None,
            value: None,
            timestamp: 0,
            headers: vec![(
                Bytes::from_static(b"h"),
                Some(Bytes::copy_from_slice(value)),
            )],
        }
    }

    #[test]
    fn header_at_most_compares_the_big_endian_value_and_refuses_malformed_ones() {
        let filter = HeadFilter::HeaderAtMost {
            header: Bytes::from_static(b"h"),
            at_most: 10,
        };
        assert!(filter.accepts(&with_header(&10i64.to_be_bytes())));
        assert!(!filter.accepts(&with_header(&11i64.to_be_bytes())));
        assert!(!filter.accepts(&with_header(b"short")));
        assert!(!filter.accepts(&Record::default()));
        assert!(HeadFilter::All.accepts(&Record::default()));
    }
}
