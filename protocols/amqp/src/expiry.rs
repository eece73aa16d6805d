//! Timely expiry at the head of a queue.
//!
//! A message whose TTL passes while it waits at the head of a queue nobody consumes is dropped
//! or dead-lettered when it falls due, as RabbitMQ's per-queue TTL timer does: the "delayed
//! retry" pattern (a consumer-less queue with `x-message-ttl` and `x-dead-letter-exchange`)
//! depends on it. Consumers and `basic.get` still drop expired messages as they reach them
//! ([`crate::deadletter::take_live`]); this only covers the waiting.
//!
//! Invariants: at most one sweep task per queue, armed when a message with an expiry is stored
//! (or requeued into a queue with `x-message-ttl`, or recovered at start); a sweep sleeps until the head's expiry and
//! ends only when the head has none (or the queue is gone); an [`arm`] that races with the
//! sweep's last look at the head bumps the generation, so the sweep looks again instead of
//! ending. Only the head is considered, as in RabbitMQ: a later message with a shorter
//! per-message TTL waits for the ones before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tributary_api::HeadFilter;
use tributary_api::batch::Record;

use crate::Shared;
use crate::deadletter::{HEADER_EXPIRES, REASON_EXPIRED, dead_letter, expires_at};
use crate::message::now_ms;

/// Messages expired per engine call; a sweep repeats at once while it finds this many.
const SWEEP_BATCH: usize = 256;

/// The armed sweeps, by queue.
#[derive(Debug, Default)]
pub struct ExpirySweeps {
    armed: Mutex<HashMap<String, Armed>>,
    /// Set once every queue got a first look after start (see [`arm_all_once`]).
    restored: AtomicBool,
}

#[derive(Debug)]
struct Armed {
    /// When the sweep next looks at the head (ms since the epoch).
    due_ms: i64,
    /// Bumped by every `arm`, so a sweep can tell that the head may have changed.
    generation: u64,
    wake: Arc<Notify>,
}

/// Makes sure `queue` is swept no later than `due_ms`.
pub fn arm(shared: &Arc<Shared>, queue: &str, due_ms: i64) {
    let mut armed = shared.expiry.armed.lock();
    if let Some(entry) = armed.get_mut(queue) {
        entry.generation += 1;
        if due_ms < entry.due_ms {
            entry.due_ms = due_ms;
            entry.wake.notify_one();
        }
        return;
    }
    let wake = Arc::new(Notify::new());
    armed.insert(
        queue.to_owned(),
        Armed {
            due_ms,
            generation: 0,
            wake: wake.clone(),
        },
    );
    drop(armed);
    tokio::spawn(sweep(shared.clone(), queue.to_owned(), wake));
}

/// Gives every queue one look at its head, the first time it is called: messages recovered
/// after a restart carry their expiry but were armed by the previous process only. Called
/// when the topology is loaded (on the first connection).
pub async fn arm_all_once(shared: &Arc<Shared>) {
    if shared.expiry.restored.swap(true, Ordering::AcqRel) {
        return;
    }
    let now = now_ms();
    for queue in shared.engine.queues.queues().await {
        arm(shared, &queue, now);
    }
}

/// Arms `queue` for the earliest expiry among `records` (stored there just now), if any.
pub fn arm_for<'a>(
    shared: &Arc<Shared>,
    queue: &str,
    records: impl IntoIterator<Item = &'a Record>,
) {
    if let Some(due) = records.into_iter().filter_map(expires_at).min() {
        arm(shared, queue, due);
    }
}

/// After messages went back to the head of `queue`: with a queue TTL they may be due already.
pub fn arm_after_requeue(shared: &Arc<Shared>, queue: &str) {
    let has_ttl = shared
        .topology
        .policy(queue)
        .is_some_and(|policy| policy.message_ttl_ms.is_some());
    if has_ttl {
        arm(shared, queue, now_ms());
    }
}

/// The sweep task of one queue; see the module invariants.
async fn sweep(shared: Arc<Shared>, queue: String, wake: Arc<Notify>) {
    loop {
        let (due_ms, generation) = match shared.expiry.armed.lock().get(&queue) {
            Some(entry) => (entry.due_ms, entry.generation),
            None => return,
        };
        let wait_ms = due_ms.saturating_sub(now_ms());
        if wait_ms > 0 {
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX));
            // An earlier `arm` wakes the sleep; the loop then re-reads the due time.
            let _ = tokio::time::timeout(wait, wake.notified()).await;
            continue;
        }
        let next_due = match expire_head(&shared, &queue).await {
            Ok(next_due) => next_due,
            Err(error) => {
                // The queue is gone (or its log failed): nothing left to sweep.
                tracing::debug!(queue, %error, "expiry sweep stopped");
                None
            }
        };
        let mut armed = shared.expiry.armed.lock();
        let Some(entry) = armed.get_mut(&queue) else {
            return;
        };
        if entry.generation != generation {
            // Stored or requeued meanwhile: look at the head again now.
            entry.due_ms = entry.due_ms.min(next_due.unwrap_or(i64::MAX)).min(now_ms());
            continue;
        }
        match next_due {
            Some(due) => entry.due_ms = due,
            None => {
                armed.remove(&queue);
                return;
            }
        }
    }
}

/// Dead-letters (or drops) the expired messages at the head; returns the next head's expiry.
async fn expire_head(
    shared: &Arc<Shared>,
    queue: &str,
) -> tributary_api::EngineResult<Option<i64>> {
    loop {
        let now = now_ms();
        let head = shared
            .engine
            .queues
            .take_head_while(
                queue,
                SWEEP_BATCH,
                HeadFilter::HeaderAtMost {
                    header: Bytes::from_static(HEADER_EXPIRES),
                    at_most: now,
                },
            )
            .await?;
        let full = head.taken.len() == SWEEP_BATCH;
        if !head.taken.is_empty() {
            let expired: Vec<(u64, Option<Record>)> = head
                .taken
                .into_iter()
                .map(|delivery| (delivery.id, Some(delivery.record)))
                .collect();
            dead_letter(shared, queue, &expired, REASON_EXPIRED).await?;
        }
        if !full {
            return Ok(head.head.as_ref().and_then(expires_at));
        }
    }
}
