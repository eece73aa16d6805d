//! Offsets that consumers piggyback on PULL_MESSAGE (FLAG_COMMIT_OFFSET), coalesced and stored
//! in the background, as RocketMQ's broker keeps them in memory and persists them periodically:
//! a pull never waits for an offset-store transaction (each of which is an fsync'd commit).
//!
//! Invariants: the newest offset recorded per (group, queue) is the one stored; a flush takes
//! the whole pending map at once and stores it group by group; QUERY_CONSUMER_OFFSET reads a
//! pending offset before the store, so a client sees what it committed. An explicit
//! UPDATE_CONSUMER_OFFSET is stored at once and drops a pending pull commit of that queue; flushes
//! and explicit commits hold [`PullCommits::storing`] while they store, so an older piggybacked
//! offset taken by a flush is never stored after a newer explicit one. A crash loses at most the offsets of the
//! last [`FLUSH_INTERVAL`], which means redelivery, never loss (at-least-once, as in RocketMQ).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tributary_api::TopicPartition;

use crate::Shared;

/// How often pending pull commits are stored (RocketMQ's default is every 5 s).
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Pull commits not yet stored: (group, queue) -> offset.
#[derive(Debug, Default)]
pub(crate) struct PullCommits {
    pending: Mutex<HashMap<(String, TopicPartition), i64>>,
    /// Held across each store of offsets (a flush, an explicit commit), ordering them.
    pub(crate) storing: tokio::sync::Mutex<()>,
}

impl PullCommits {
    /// Records `offset` as the group's position on `partition`, to be stored at the next flush.
    pub(crate) fn record(&self, group: &str, partition: &TopicPartition, offset: i64) {
        self.pending
            .lock()
            .insert((group.to_owned(), partition.clone()), offset);
    }

    /// The pending offset of `group` on `partition`, if one awaits storing.
    pub(crate) fn pending(&self, group: &str, partition: &TopicPartition) -> Option<i64> {
        self.pending
            .lock()
            .get(&(group.to_owned(), partition.clone()))
            .copied()
    }

    /// Drops a pending offset (an explicit commit of the same queue supersedes it).
    pub(crate) fn forget(&self, group: &str, partition: &TopicPartition) {
        self.pending
            .lock()
            .remove(&(group.to_owned(), partition.clone()));
    }

    fn take(&self) -> HashMap<String, Vec<(TopicPartition, i64)>> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut by_group: HashMap<String, Vec<(TopicPartition, i64)>> = HashMap::new();
        for ((group, partition), offset) in pending {
            by_group.entry(group).or_default().push((partition, offset));
        }
        by_group
    }
}

/// Stores every pending pull commit; a failed group is logged and its offsets kept pending
/// unless a newer one arrived meanwhile.
pub(crate) async fn flush(shared: &Shared) {
    let _storing = shared.pull_commits.storing.lock().await;
    for (group, offsets) in shared.pull_commits.take() {
        if let Err(error) = crate::handlers::commit_offsets(shared, &group, &offsets).await {
            tracing::warn!(group, %error, "storing consumer offsets from pulls failed; retrying");
            let mut pending = shared.pull_commits.pending.lock();
            for (partition, offset) in offsets {
                pending.entry((group.clone(), partition)).or_insert(offset);
            }
        }
    }
}

/// Flushes every [`FLUSH_INTERVAL`] until shutdown, then once more.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(FLUSH_INTERVAL) => flush(&shared).await,
            () = shutdown.cancelled() => break,
        }
    }
    flush(&shared).await;
}
