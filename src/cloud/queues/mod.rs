//! Queues across brokers (`tributary_api::QueueService` on the cloud engine).
//!
//! Owner: queue `Q` is run by the broker that leads the cloud-log partition `queue:Q`/0
//! (rendezvous over the live brokers, [`super::leadership`]), so the lease and the append
//! fencing of partitions apply to queues too. The owner keeps the local engine's delivery
//! state ([`owned`]) over that partition (the messages, shared through object storage) and
//! commits settles to PostgreSQL ([`acks`]). Every other broker forwards each call to the
//! owner over the internal RPC ([`super::rpc`]); a forwarded call that arrives at a broker
//! that does not own the queue (views disagree for a moment) is refused as retriable, never
//! forwarded again.
//!
//! Take-over: a broker that finds itself owner (lazily, at the first call for the queue after
//! it took the partition over) bumps the queue's epoch in PostgreSQL and replays its settle
//! rows: every unsettled message is ready again, those handed out before flagged
//! redelivered. The bumped epoch fences the previous owner's later settles. Delivery ids are
//! log offsets, so an ack sent to the new owner for a message the old owner handed out
//! settles it (ready again there, or already settled: a no-op; see
//! `QueueState::ack_carried_over`), sparing a redelivery.
//!
//! A broker that goes away takes its consumers with it: the owner remembers, per calling
//! connection (one per broker), the deliveries it lent and puts back those still unsettled
//! when the connection closes, so they reach other consumers at once rather than at the next
//! take-over.
//!
//! Retries: a frontend's call is retried for [`RETRY_FOR`] while the owner is unreachable or
//! the brokers' views disagree (except purge and delete, which are not idempotent), so a
//! moment of disagreement is not a client-visible error.
//!
//! Sync views: `depth` and `queues` are async in the contract and answered by the owner
//! and by PostgreSQL; `local_depths` (metrics) reports the queues this broker runs.
//!
//! Not here: transient (non-durable) queues are kept like durable ones (the frontend deletes
//! exclusive and auto-delete queues; those of a broker that died stay until deleted).

mod acks;
mod owned;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tributary_api::{
    AppendOutcome, ClusterView, Delivery, EngineError, EngineResult, HeadFilter, HeadTake,
    LogService, QueueDepth, QueueOptions, QueueService, TopicPartition, validate_name,
};

use super::error::CloudError;
use super::leadership::Cluster;
use super::log::CloudLog;
use super::pool::PgPool;
use super::rpc::{Handler, Peers, Reply, Request, WireError};
use crate::broker::queues::queue_log_topic;
use acks::AckWriter;
use owned::OwnedQueue;

/// How long a forwarded call may take beyond its own wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call is retried while the owner is unreachable or views disagree (a broker
/// joining, a take-over under way) before the error reaches the frontend.
const RETRY_FOR: Duration = Duration::from_secs(2);

/// The queue service of a broker on the cloud engine.
#[derive(Debug)]
pub struct CloudQueues {
    pool: PgPool,
    log: Arc<CloudLog>,
    cluster: Arc<Cluster>,
    peers: Arc<Peers>,
    writer: AckWriter,
    owned: Mutex<HashMap<String, Arc<OwnedQueue>>>,
    /// Per calling connection (one per broker forwarding here), the deliveries it took and
    /// has not settled, by queue: put back when the connection closes, since the consumers
    /// they went to went with their broker (see [`Handler::closed`]).
    lent: Mutex<HashMap<u64, HashMap<String, BTreeSet<u64>>>>,
    /// Serialises take-overs (one replay per queue at a time).
    opening: tokio::sync::Mutex<()>,
}

fn partition(queue: &str) -> TopicPartition {
    TopicPartition::new(queue_log_topic(queue), 0)
}

fn unavailable(what: String) -> EngineError {
    CloudError::NotLeader(what).into()
}

impl CloudQueues {
    pub(crate) fn new(
        pool: PgPool,
        log: Arc<CloudLog>,
        cluster: Arc<Cluster>,
        peers: Arc<Peers>,
    ) -> Arc<Self> {
        Arc::new(Self {
            writer: AckWriter::start(pool.clone()),
            pool,
            log,
            cluster,
            peers,
            owned: Mutex::default(),
            lent: Mutex::default(),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// The broker that should run `queue` now, by this broker's view.
    fn owner(&self, queue: &str) -> EngineResult<i32> {
        self.cluster
            .members()
            .leader(&partition(queue))
            .ok_or_else(|| unavailable(format!("queue {queue}: this broker holds no lease")))
    }

    fn drop_owned(&self, queue: &str) {
        if let Some(stale) = self.owned.lock().remove(queue) {
            stale.mark_broken();
        }
    }

    fn current(&self, queue: &str) -> Option<Arc<OwnedQueue>> {
        let owned = self.owned.lock().get(queue).cloned()?;
        let fresh = !owned.broken.load(Ordering::Acquire)
            && self.log.partition_generation(&owned.tp) == owned.generation
            && self.partition_led(&owned.tp);
        fresh.then_some(owned)
    }

    fn partition_led(&self, tp: &TopicPartition) -> bool {
        self.log
            .partitions
            .read()
            .get(tp)
            .is_some_and(|state| state.led.load(Ordering::Acquire))
    }

    /// Takes the queue over from PostgreSQL (see the module doc).
    async fn open(&self, queue: &str) -> EngineResult<Arc<OwnedQueue>> {
        if let Some(owned) = self.current(queue) {
            return Ok(owned);
        }
        let _one = self.opening.lock().await;
        if let Some(owned) = self.current(queue) {
            return Ok(owned);
        }
        self.drop_owned(queue);
        let tp = partition(queue);
        if !self.partition_led(&tp) {
            // Learnt late (another broker made the log) or not taken over yet: catch up now
            // rather than at the next renewal.
            self.log.learn_topics().await?;
            self.log.follow_leadership(self.cluster.members()).await?;
            if !self.partition_led(&tp) {
                return match self.log.partitions.read().contains_key(&tp) {
                    true => Err(unavailable(format!("queue {queue}: not taken over yet"))),
                    false => Err(EngineError::UnknownQueue(queue.to_owned())),
                };
            }
        }
        let Some((definition, replayed)) = acks::take_over(&self.pool, queue).await? else {
            return Err(EngineError::UnknownQueue(queue.to_owned()));
        };
        let owned = Arc::new(
            OwnedQueue::open(
                queue.to_owned(),
                tp,
                definition,
                replayed,
                self.log.clone(),
                self.writer.clone(),
            )
            .await?,
        );
        tracing::info!(queue, "took the queue over");
        self.owned.lock().insert(queue.to_owned(), owned.clone());
        Ok(owned)
    }

    async fn forward(&self, owner: i32, request: Request, wait: Duration) -> EngineResult<Reply> {
        match self.peers.call(owner, request, CALL_TIMEOUT + wait).await? {
            Ok(reply) => Ok(reply),
            Err(error) => Err(from_wire(error)),
        }
    }

    async fn declare_here(&self, queue: &str, options: QueueOptions) -> EngineResult<QueueDepth> {
        acks::define(&self.pool, queue, &options).await?;
        self.log.create_queue_log(queue).await?;
        self.open(queue).await?.depth()
    }

    async fn delete_here(&self, queue: &str) -> EngineResult<u64> {
        let held = match self.open(queue).await {
            Ok(owned) => owned.held(),
            Err(EngineError::UnknownQueue(_)) => 0,
            Err(error) => return Err(error),
        };
        self.drop_owned(queue);
        let existed = acks::undefine(&self.pool, queue).await?;
        let log = queue_log_topic(queue);
        match tributary_api::TopicAdmin::delete_topic(self.log.as_ref(), &log).await {
            Ok(()) | Err(EngineError::UnknownTopic(_)) => {}
            Err(error) => return Err(error),
        }
        if !existed {
            return Err(EngineError::UnknownQueue(queue.to_owned()));
        }
        Ok(held)
    }

    /// [`CloudQueues::dispatch`] for a frontend's call, retried for [`RETRY_FOR`] on retriable
    /// failures (purge and delete are not). A retried call may have taken effect the first
    /// time (its answer lost): an enqueue is then stored twice (at-least-once, as a
    /// publisher's own retry would), a settle is harmless (settling a settled id is a no-op,
    /// see `ack_carried_over`), a take's deliveries stay lent to this broker's connection
    /// until it closes.
    async fn call(&self, request: Request) -> EngineResult<Reply> {
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        let idempotent = !matches!(request, Request::Purge { .. } | Request::Delete { .. });
        loop {
            match self.dispatch(request.clone(), false).await {
                Err(EngineError::Storage(error))
                    if idempotent && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%error, "queue call failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs `request` for a queue this broker owns, or forwards it (at most once).
    async fn dispatch(&self, request: Request, forwarded: bool) -> EngineResult<Reply> {
        let queue = match &request {
            Request::Append { .. } => {
                return Err(unavailable("append sent as a queue call".into()));
            }
            Request::Declare { queue, .. }
            | Request::Delete { queue }
            | Request::Purge { queue }
            | Request::Enqueue { queue, .. }
            | Request::Take { queue, .. }
            | Request::TakeHead { queue, .. }
            | Request::WaitReady { queue, .. }
            | Request::Ack { queue, .. }
            | Request::Requeue { queue, .. }
            | Request::Depth { queue } => queue.clone(),
        };
        // Declare and delete create or remove what routing depends on: run them at the owner
        // before any lookup of the queue.
        let owner = self.owner(&queue)?;
        if owner != self.cluster.local_id() {
            self.drop_owned(&queue);
            if forwarded {
                return Err(unavailable(format!(
                    "queue {queue}: broker {owner} owns it now"
                )));
            }
            let wait = match &request {
                Request::WaitReady { timeout, .. } => *timeout,
                _ => Duration::ZERO,
            };
            return self.forward(owner, request, wait).await;
        }
        match request {
            Request::Declare { options, .. } => {
                Ok(Reply::Depth(self.declare_here(&queue, options).await?))
            }
            Request::Delete { .. } => Ok(Reply::Count(self.delete_here(&queue).await?)),
            request => {
                let owned = self.open(&queue).await?;
                run_owned(&owned, request).await
            }
        }
    }
}

async fn run_owned(owned: &OwnedQueue, request: Request) -> EngineResult<Reply> {
    Ok(match request {
        Request::Purge { .. } => Reply::Count(owned.purge().await?),
        Request::Enqueue { batch, .. } => Reply::Appended(owned.enqueue(batch).await?),
        Request::Take { max, .. } => {
            Reply::Deliveries(owned.take(max as usize, &HeadFilter::All).await?.taken)
        }
        Request::TakeHead { max, filter, .. } => {
            Reply::HeadTake(owned.take(max as usize, &filter).await?)
        }
        Request::WaitReady { timeout, .. } => Reply::Ready(owned.wait_ready(timeout).await?),
        Request::Ack { ids, .. } => {
            owned.ack(&ids).await?;
            Reply::Done
        }
        Request::Requeue { ids, .. } => {
            owned.requeue(&ids).await?;
            Reply::Done
        }
        Request::Depth { .. } => Reply::Depth(owned.depth()?),
        Request::Declare { .. } | Request::Delete { .. } | Request::Append { .. } => {
            return Err(unavailable("not a call on a running queue".into()));
        }
    })
}

/// An engine error as the caller's broker should see it.
pub(crate) fn to_wire(error: EngineError) -> WireError {
    match error {
        EngineError::UnknownQueue(name) => WireError::UnknownQueue(name),
        EngineError::UnknownDelivery(id) => WireError::UnknownDelivery(id),
        EngineError::InvalidName(name) => WireError::InvalidName(name),
        EngineError::UnknownTopic(name) => WireError::UnknownTopic(name),
        EngineError::BatchTooLarge { size, limit } => WireError::BatchTooLarge {
            size: size as u64,
            limit: limit as u64,
        },
        EngineError::ShuttingDown => WireError::ShuttingDown,
        other => WireError::Unavailable(other.to_string()),
    }
}

pub(crate) fn from_wire(error: WireError) -> EngineError {
    match error {
        WireError::UnknownQueue(name) => EngineError::UnknownQueue(name),
        WireError::UnknownDelivery(id) => EngineError::UnknownDelivery(id),
        WireError::InvalidName(name) => EngineError::InvalidName(name),
        WireError::UnknownTopic(name) => EngineError::UnknownTopic(name),
        WireError::BatchTooLarge { size, limit } => EngineError::BatchTooLarge {
            size: size as usize,
            limit: limit as usize,
        },
        WireError::ShuttingDown => EngineError::ShuttingDown,
        WireError::Unavailable(reason) => CloudError::Rpc(reason).into(),
    }
}

fn unexpected(reply: Reply) -> EngineError {
    CloudError::Rpc(format!("unexpected answer {reply:?}")).into()
}

#[async_trait]
impl QueueService for CloudQueues {
    async fn declare_queue(&self, name: &str, options: QueueOptions) -> EngineResult<QueueDepth> {
        validate_name(name)?;
        validate_name(&queue_log_topic(name))
            .map_err(|_| EngineError::InvalidName(name.to_owned()))?;
        let request = Request::Declare {
            queue: name.to_owned(),
            options,
        };
        match self.call(request).await? {
            Reply::Depth(depth) => Ok(depth),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_queue(&self, name: &str) -> EngineResult<u64> {
        match self
            .call(Request::Delete {
                queue: name.to_owned(),
            })
            .await?
        {
            Reply::Count(count) => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    async fn purge_queue(&self, name: &str) -> EngineResult<u64> {
        match self
            .call(Request::Purge {
                queue: name.to_owned(),
            })
            .await?
        {
            Reply::Count(count) => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    async fn enqueue(&self, name: &str, batch: Bytes) -> EngineResult<AppendOutcome> {
        let request = Request::Enqueue {
            queue: name.to_owned(),
            batch,
        };
        match self.call(request).await? {
            Reply::Appended(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn take(&self, name: &str, max: usize) -> EngineResult<Vec<Delivery>> {
        let request = Request::Take {
            queue: name.to_owned(),
            max: u32::try_from(max).unwrap_or(u32::MAX),
        };
        match self.call(request).await? {
            Reply::Deliveries(deliveries) => Ok(deliveries),
            other => Err(unexpected(other)),
        }
    }

    async fn take_head_while(
        &self,
        name: &str,
        max: usize,
        accept: HeadFilter,
    ) -> EngineResult<HeadTake> {
        let request = Request::TakeHead {
            queue: name.to_owned(),
            max: u32::try_from(max).unwrap_or(u32::MAX),
            filter: accept,
        };
        match self.call(request).await? {
            Reply::HeadTake(take) => Ok(take),
            other => Err(unexpected(other)),
        }
    }

    async fn wait_ready(&self, name: &str, timeout: Duration) -> EngineResult<bool> {
        let request = Request::WaitReady {
            queue: name.to_owned(),
            timeout,
        };
        match self.call(request).await? {
            Reply::Ready(ready) => Ok(ready),
            other => Err(unexpected(other)),
        }
    }

    async fn ack(&self, name: &str, ids: &[u64]) -> EngineResult<()> {
        let request = Request::Ack {
            queue: name.to_owned(),
            ids: ids.to_vec(),
        };
        match self.call(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn requeue(&self, name: &str, ids: &[u64]) -> EngineResult<()> {
        let request = Request::Requeue {
            queue: name.to_owned(),
            ids: ids.to_vec(),
        };
        match self.call(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn depth(&self, name: &str) -> EngineResult<QueueDepth> {
        match self
            .call(Request::Depth {
                queue: name.to_owned(),
            })
            .await?
        {
            Reply::Depth(depth) => Ok(depth),
            other => Err(unexpected(other)),
        }
    }

    async fn queues(&self) -> Vec<String> {
        match acks::names(&self.pool).await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(%error, "cannot list the queues");
                Vec::new()
            }
        }
    }

    fn local_depths(&self) -> Vec<(String, QueueDepth)> {
        let owned: Vec<Arc<OwnedQueue>> = self.owned.lock().values().cloned().collect();
        owned
            .into_iter()
            .filter_map(|queue| Some((queue.name.clone(), queue.depth().ok()?)))
            .collect()
    }
}

/// The server side of the internal RPC: queue calls for queues this broker owns, and appends
/// to partitions it leads.
#[async_trait]
impl Handler for CloudQueues {
    async fn handle(&self, conn: u64, request: Request) -> Result<Reply, WireError> {
        let outcome = match request {
            Request::Append {
                topic,
                partition,
                batch,
            } => {
                let tp = TopicPartition::new(topic, partition);
                self.log.append(&tp, batch).await.map(Reply::Appended)
            }
            request => {
                let queue = match &request {
                    Request::Take { queue, .. }
                    | Request::TakeHead { queue, .. }
                    | Request::Ack { queue, .. }
                    | Request::Requeue { queue, .. } => Some(queue.clone()),
                    _ => None,
                };
                let settled = match &request {
                    Request::Ack { ids, .. } | Request::Requeue { ids, .. } => ids.clone(),
                    _ => Vec::new(),
                };
                let outcome = self.dispatch(request, true).await;
                if let Some(queue) = queue {
                    self.track(conn, &queue, &outcome, &settled);
                }
                outcome
            }
        };
        outcome.map_err(to_wire)
    }

    async fn closed(&self, conn: u64) {
        let Some(lent) = self.lent.lock().remove(&conn) else {
            return;
        };
        for (queue, ids) in lent {
            let Some(owned) = self.current(&queue) else {
                // Not run here any more: its new owner rebuilt it with these ready again.
                continue;
            };
            let ids: Vec<u64> = ids.into_iter().collect();
            match owned.requeue(&ids).await {
                Ok(()) => tracing::info!(
                    queue,
                    count = ids.len(),
                    "put back deliveries of a broker that went away"
                ),
                Err(error) => {
                    tracing::warn!(queue, %error, "cannot put back a gone broker's deliveries")
                }
            }
        }
    }
}

impl CloudQueues {
    /// Records what a forwarded take lent to connection `conn`, and forgets what it settled.
    fn track(&self, conn: u64, queue: &str, outcome: &EngineResult<Reply>, settled: &[u64]) {
        let taken: Vec<u64> = match outcome {
            Ok(Reply::Deliveries(deliveries)) => deliveries.iter().map(|d| d.id).collect(),
            Ok(Reply::HeadTake(take)) => take.taken.iter().map(|d| d.id).collect(),
            _ => Vec::new(),
        };
        let mut lent = self.lent.lock();
        let queues = lent.entry(conn).or_default();
        let ids = queues.entry(queue.to_owned()).or_default();
        ids.extend(taken);
        for id in settled {
            ids.remove(id);
        }
        if ids.is_empty() {
            queues.remove(queue);
        }
    }
}

/// Sends an append to `leader` (the AMQP and RocketMQ frontends' path to a partition another
/// broker leads; see [`super::forward`]).
pub(crate) async fn forward_append(
    peers: &Peers,
    leader: i32,
    tp: &TopicPartition,
    batch: Bytes,
) -> EngineResult<AppendOutcome> {
    let request = Request::Append {
        topic: tp.topic.clone(),
        partition: tp.partition,
        batch,
    };
    match peers.call(leader, request, CALL_TIMEOUT).await? {
        Ok(Reply::Appended(outcome)) => Ok(outcome),
        Ok(other) => Err(unexpected(other)),
        Err(error) => Err(from_wire(error)),
    }
}
