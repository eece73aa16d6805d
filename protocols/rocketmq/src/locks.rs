//! Queue locks for ordered consumption (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ).
//!
//! An orderly consumer must hold a queue's lock before it consumes that queue, so only one
//! member of a group processes a queue at a time, in order. A lock belongs to a client id within
//! a consumer group and lapses [`LOCK_LEASE`] after it was last taken or renewed (RocketMQ's
//! `rocketmq.broker.rebalance.lockMaxLiveTime`, 60 s; clients renew every 20 s).
//!
//! Invariants: at most one live holder per (group, topic, broker, queue); a client may renew its
//! own lock at any time; another client gets it only once it lapsed or was unlocked. State is in
//! memory: after a restart every lock is free, as in RocketMQ.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How long a lock lives without renewal.
pub(crate) const LOCK_LEASE: Duration = Duration::from_secs(60);

/// A queue as the lock bodies name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageQueue {
    pub(crate) topic: String,
    pub(crate) broker_name: String,
    pub(crate) queue_id: i32,
}

#[derive(Debug)]
struct Holder {
    client_id: String,
    renewed: Instant,
}

/// Lock holders by (group, queue).
#[derive(Debug, Default)]
pub(crate) struct QueueLocks {
    held: Mutex<HashMap<(String, MessageQueue), Holder>>,
}

impl QueueLocks {
    /// Takes or renews the locks of `queues` for `client_id`; returns the ones it now holds.
    pub(crate) fn lock(
        &self,
        group: &str,
        client_id: &str,
        queues: Vec<MessageQueue>,
        now: Instant,
    ) -> Vec<MessageQueue> {
        let mut held = self.held.lock();
        let mut granted = Vec::new();
        for queue in queues {
            let key = (group.to_owned(), queue);
            let free = held.get(&key).is_none_or(|holder| {
                holder.client_id == client_id
                    || now.saturating_duration_since(holder.renewed) >= LOCK_LEASE
            });
            if free {
                granted.push(key.1.clone());
                held.insert(
                    key,
                    Holder {
                        client_id: client_id.to_owned(),
                        renewed: now,
                    },
                );
            }
        }
        granted
    }

    /// Releases the locks of `queues` that `client_id` holds.
    pub(crate) fn unlock(&self, group: &str, client_id: &str, queues: Vec<MessageQueue>) {
        let mut held = self.held.lock();
        for queue in queues {
            let key = (group.to_owned(), queue);
            if held
                .get(&key)
                .is_some_and(|holder| holder.client_id == client_id)
            {
                held.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: id,
        }
    }

    #[test]
    fn one_holder_per_queue_until_unlock_or_lapse() {
        let locks = QueueLocks::default();
        let start = Instant::now();
        assert_eq!(
            locks.lock("G", "a", vec![queue(0), queue(1)], start),
            [queue(0), queue(1)]
        );
        assert_eq!(
            locks.lock("G", "b", vec![queue(1), queue(2)], start),
            [queue(2)]
        );
        assert_eq!(
            locks.lock("OTHER", "b", vec![queue(1)], start),
            [queue(1)],
            "per group"
        );
        // The holder renews; the other client still waits.
        let later = start + Duration::from_secs(30);
        assert_eq!(locks.lock("G", "a", vec![queue(1)], later), [queue(1)]);
        assert!(
            locks
                .lock("G", "b", vec![queue(1)], later + Duration::from_secs(59))
                .is_empty()
        );
        // Lapsed 60 s after the last renewal.
        assert_eq!(
            locks.lock("G", "b", vec![queue(1)], later + LOCK_LEASE),
            [queue(1)]
        );
        // Only the holder's unlock counts.
        locks.unlock("G", "a", vec![queue(2)]);
        assert!(locks.lock("G", "a", vec![queue(2)], later).is_empty());
        locks.unlock("G", "b", vec![queue(2)]);
        assert_eq!(locks.lock("G", "a", vec![queue(2)], later), [queue(2)]);
    }

    #[test]
    fn bodies_use_java_field_names() {
        let parsed: MessageQueue =
            serde_json::from_str(r#"{"brokerName":"b","queueId":3,"topic":"T"}"#).unwrap();
        assert_eq!(parsed, queue(3));
        assert_eq!(
            serde_json::to_string(&queue(3)).unwrap(),
            r#"{"topic":"T","brokerName":"b","queueId":3}"#
        );
    }
}
