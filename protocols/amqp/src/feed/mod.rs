//! Topic feeds (docs/interop.md, "Topics seen from AMQP"): a queue bound to the exchange of
//! topic `T` receives every record appended to `T` after the bind, by any protocol and into
//! any partition, whose key matches the binding's topic pattern (`#` matches every record, a
//! record without a key matches only `#`). Records are enqueued unchanged (key, value,
//! timestamp, headers) through the path publishes take, so TTL, max-length, DLX and priorities
//! apply; AMQP consumers read them through [`crate::message`].
//!
//! One task per topic whose exchange has bindings, started with the frontend (for bindings
//! restored from the metadata store) or on the first bind, runs one task per partition (new
//! partitions are picked up). Each partition task waits on the log (`wait_for`), reads whole
//! batches from its durable [`cursor`] and feeds them chunk by chunk.
//!
//! Invariants:
//! - a record reaches a bound queue only at or after the binding's start offset of its
//!   partition ([`crate::topology::TopicStart`]) and only while the binding exists;
//! - a partition's cursor moves past a record only after it was enqueued into every queue it
//!   matched (or a queue's `reject-publish` overflow refused it: counted and logged); a batch
//!   that cannot be decoded stops the partition before it (logged, counted in
//!   `tributary_interop_undeliverable_batches_total{protocol="amqp_feed"}`, retried later);
//! - records of a Kafka transaction are fed only once it committed: a partition stops at its
//!   last stable offset and passes over markers and aborted transactions
//!   (`tributary_api::transactions`);
//! - at-least-once: a durable pending marker precedes each chunk's enqueues, so after a crash
//!   (or a failed enqueue) the chunk is fed again and counted in
//!   `tributary_amqp_topic_feed_refed_total`;
//! - on a cluster (several brokers over one log, [`TopicFeeds::join_cluster`]) a partition is
//!   fed only by the broker that leads it, so two brokers never enqueue one record twice while
//!   their views agree; a broker that starts to lead it reads the durable cursor again and goes
//!   on from there. What the previous leader enqueued but had not moved the cursor past when
//!   leadership moved (at most one chunk, [`partition`]) is fed again, as after a crash; so are
//!   records both fed while their membership views disagreed (at most a lease renewal);
//! - a topic task ends when its exchange has no binding left (decided under the registry
//!   lock, so a bind racing the end starts a new task), when the topic is deleted (its
//!   bindings and cursors are dropped) or at shutdown.

pub mod cursor;
mod partition;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tributary_api::{BackgroundContext, ClusterView, TopicPartition};

use crate::Shared;

/// How often a topic task looks for new partitions, a deleted topic or unbound queues.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The running feeds of one vhost (only `/` has topics as exchanges).
#[derive(Debug, Default)]
pub struct TopicFeeds {
    background: OnceLock<BackgroundContext>,
    /// Running topic tasks by topic, with the token that stops each.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// The membership when several brokers serve one log; unset: this broker feeds everything.
    cluster: OnceLock<Arc<dyn ClusterView>>,
}

impl TopicFeeds {
    /// Feeds only the partitions this broker leads in `cluster`. Call before the feeds start;
    /// the first call wins.
    pub fn join_cluster(&self, cluster: Arc<dyn ClusterView>) {
        let _ = self.cluster.set(cluster);
    }

    /// Whether this broker feeds `partition` now: always without a cluster, else while it
    /// leads the partition (and holds its lease).
    pub(crate) fn leads(&self, partition: &TopicPartition) -> bool {
        self.cluster
            .get()
            .is_none_or(|cluster| cluster.leader(partition) == Some(cluster.local_id()))
    }
}

/// Starts the feeds of every topic exchange with bindings; later feeds run under `background`.
pub fn start(shared: &Arc<Shared>, background: BackgroundContext) {
    if shared.feeds.background.set(background).is_err() {
        return;
    }
    let topics = shared.topology.fed_topics();
    tracing::info!(
        topics = topics.len(),
        "starting the topic feeds of stored bindings"
    );
    for topic in topics {
        ensure(shared, &topic);
    }
}

/// Makes sure the feeds of every topic with bindings run, once feeds run here at all (after
/// another broker of a shared metadata store bound a queue to a topic's exchange).
pub fn ensure_all(shared: &Arc<Shared>) {
    if shared.feeds.background.get().is_none() {
        return;
    }
    for topic in shared.topology.fed_topics() {
        ensure(shared, &topic);
    }
}

/// Makes sure topic `topic`'s feed runs (after a queue was bound to its exchange).
pub fn ensure(shared: &Arc<Shared>, topic: &str) {
    let mut running = shared.feeds.running.lock();
    if running.contains_key(topic) {
        return;
    }
    let task = {
        let shared = shared.clone();
        let topic = topic.to_owned();
        let stop = match shared.feeds.background.get() {
            Some(background) => background.shutdown.child_token(),
            // Not started by a broker shell (an embedding without one): runs until unbound.
            None => CancellationToken::new(),
        };
        running.insert(topic.clone(), stop.clone());
        async move { run_topic(shared, topic, stop).await }
    };
    match shared.feeds.background.get() {
        Some(background) => drop(background.tracker.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

/// Ends topic `topic`'s task unless its exchange has bindings again; true when it ended.
fn finish(shared: &Shared, topic: &str) -> bool {
    let mut running = shared.feeds.running.lock();
    if !shared.topology.topic_bindings(topic).is_empty() {
        return false;
    }
    running.remove(topic);
    true
}

/// One topic's feed: partition tasks for the topic as it is now, until it has no binding,
/// is deleted or the broker stops.
async fn run_topic(shared: Arc<Shared>, topic: String, stop: CancellationToken) {
    let mut current: Option<([u8; 16], CancellationToken)> = None;
    let mut partitions = JoinSet::new();
    let mut started = 0u32;
    loop {
        let described = shared.topology.exchange_topic(&topic);
        if let Some((id, generation)) = &current
            && described.as_ref().is_none_or(|d| d.id != *id)
        {
            // Deleted (or deleted and created again): stop, then drop its bindings and state.
            generation.cancel();
            while partitions.join_next().await.is_some() {}
            if let Err(error) = forget(&shared, &topic, *id).await {
                tracing::warn!(topic, %error, "cannot drop a deleted topic's feed state yet");
            }
            current = None;
            started = 0;
        }
        drop_stale_bindings(&shared, &topic).await;
        if finish(&shared, &topic) {
            break;
        }
        if let Some(description) = described {
            let (id, generation) =
                current.get_or_insert_with(|| (description.id, stop.child_token()));
            if *id == description.id {
                if started < description.partitions {
                    tracing::info!(
                        topic,
                        partitions = description.partitions,
                        "topic feed running"
                    );
                }
                for partition in started..description.partitions {
                    let feed = partition::PartitionFeed::new(
                        shared.clone(),
                        topic.clone(),
                        *id,
                        partition,
                        generation.clone(),
                    );
                    partitions.spawn(feed.run());
                }
                started = started.max(description.partitions);
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
    // Unbound (the registry entry is gone) or shutting down (the entry stays, so nothing
    // starts again): either way the partition tasks stop first.
    stop.cancel();
    while partitions.join_next().await.is_some() {}
}

/// Drops bindings made to a topic of this name that is gone (deleted before a feed ran).
async fn drop_stale_bindings(shared: &Shared, topic: &str) {
    let mut ids: Vec<[u8; 16]> = Vec::new();
    for binding in shared.topology.topic_bindings(topic) {
        if let Some(start) = binding.topic_start
            && !ids.contains(&start.topic_id)
        {
            ids.push(start.topic_id);
        }
    }
    // Described after the bindings were read: a binding is only made to an existing topic.
    let live = shared.topology.exchange_topic(topic).map(|t| t.id);
    for id in ids.into_iter().filter(|id| Some(*id) != live) {
        if let Err(error) = shared.topology.drop_topic_exchange(topic, id).await {
            tracing::warn!(topic, %error, "cannot drop the bindings of a deleted topic yet");
        }
    }
}

/// Drops the bindings and cursors of deleted topic `topic` (id `id`).
async fn forget(shared: &Shared, topic: &str, id: [u8; 16]) -> Result<(), crate::error::AmqpError> {
    shared.topology.drop_topic_exchange(topic, id).await?;
    cursor::forget(shared.engine.metadata.as_ref(), topic).await?;
    Ok(())
}
