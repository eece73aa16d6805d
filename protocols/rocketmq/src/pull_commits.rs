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
//!
//! Offset resets (the admin API's, [`crate::admin`]) are pending until the group pulls the queue
//! from the reset offset, as RocketMQ 5's server-side reset (`useServerSideResetOffset`) has it:
//! meanwhile the group's commits of that queue, piggybacked or explicit, are answered but not
//! stored. A running client keeps committing its old position until it has taken the reset in
//! (rocketmq-client-rust waits 10 s for in-flight consumption first); stored, such a commit
//! would undo the reset. Invariant: a commit is recorded only under the `pending` lock after the
//! markers were checked, and a reset sets its markers and drops pending commits under the same
//! lock, so no commit older than a reset can be stored after it.

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
    /// Resets not yet followed: (group, queue) -> the reset offset. Locked inside `pending`.
    resets: Mutex<HashMap<(String, TopicPartition), i64>>,
    /// Held across each store of offsets (a flush, an explicit commit), ordering them.
    pub(crate) storing: tokio::sync::Mutex<()>,
}

impl PullCommits {
    /// Records `offset` as the group's position on `partition`, to be stored at the next flush;
    /// false (nothing recorded) while a reset of the queue is pending.
    pub(crate) fn record(&self, group: &str, partition: &TopicPartition, offset: i64) -> bool {
        let key = (group.to_owned(), partition.clone());
        let mut pending = self.pending.lock();
        if self.resets.lock().contains_key(&key) {
            return false;
        }
        pending.insert(key, offset);
        true
    }

    /// Marks a reset of `group` on `partition` to `offset` as pending and drops the queue's
    /// pending commit. Called with [`PullCommits::storing`] held, before the offset is stored.
    pub(crate) fn begin_reset(&self, group: &str, partition: &TopicPartition, offset: i64) {
        let key = (group.to_owned(), partition.clone());
        let mut pending = self.pending.lock();
        self.resets.lock().insert(key.clone(), offset);
        pending.remove(&key);
    }

    /// The offset of a reset of `group` on `partition` the group has not followed yet.
    pub(crate) fn pending_reset(&self, group: &str, partition: &TopicPartition) -> Option<i64> {
        let resets = self.resets.lock();
        // Asked on every pull: no key is built while no reset is pending (the usual case).
        if resets.is_empty() {
            return None;
        }
        resets.get(&(group.to_owned(), partition.clone())).copied()
    }

    /// The group pulled `partition` from the reset offset: its commits count again.
    pub(crate) fn reset_followed(&self, group: &str, partition: &TopicPartition) {
        let _pending = self.pending.lock();
        self.resets
            .lock()
            .remove(&(group.to_owned(), partition.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_made_before_a_reset_is_followed_are_not_recorded() {
        let commits = PullCommits::default();
        let queue = TopicPartition::new("t", 1);
        assert!(commits.record("g", &queue, 8));
        commits.begin_reset("g", &queue, 0);
        assert_eq!(
            commits.pending("g", &queue),
            None,
            "the old commit was dropped"
        );
        assert!(
            !commits.record("g", &queue, 8),
            "a stale commit was recorded"
        );
        assert!(
            commits.record("other", &queue, 8),
            "another group is not held"
        );
        assert_eq!(commits.pending_reset("g", &queue), Some(0));
        commits.reset_followed("g", &queue);
        assert_eq!(commits.pending_reset("g", &queue), None);
        assert!(commits.record("g", &queue, 1));
        assert_eq!(commits.pending("g", &queue), Some(1));
    }
}
