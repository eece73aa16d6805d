//! Queue leases (`x-expires`): a queue unused for its lease is deleted, as RabbitMQ does.
//!
//! "Used" means a declare (passive too), a `basic.get`, a `basic.consume`, or a consumer going
//! away; a queue with consumers is always in use. The lease restarts at broker start.
//!
//! Invariants: one watch task per leased queue, holding only a weak reference to the queue's
//! [`Lease`]: when the queue is deleted (or redeclared under the same name with a new lease)
//! the task sees it gone and ends. The task deletes a queue only after re-checking, under the
//! topology lock, that it is still unused and still the queue the lease belongs to.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::message::now_ms;
use crate::topology::Topology;

/// When a leased queue was last used.
#[derive(Debug)]
pub struct Lease {
    pub expires_ms: u64,
    last_used_ms: AtomicI64,
}

impl Lease {
    pub fn new(expires_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            expires_ms,
            last_used_ms: AtomicI64::new(now_ms()),
        })
    }

    pub fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// When the lease runs out if the queue stays unused.
    pub fn due_ms(&self) -> i64 {
        let expires = i64::try_from(self.expires_ms).unwrap_or(i64::MAX);
        self.last_used_ms
            .load(Ordering::Relaxed)
            .saturating_add(expires)
    }
}

/// What the watch task learns about its queue.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseCheck {
    /// Deleted or replaced: stop watching.
    Gone,
    /// Look again at this time (ms since the epoch).
    WaitUntil(i64),
    /// Unused for the whole lease: delete it.
    Expired,
}

/// Starts the watch task of `queue`'s lease.
pub fn watch(topology: &Arc<Topology>, queue: &str, lease: &Arc<Lease>) {
    let (topology, queue, lease) = (topology.clone(), queue.to_owned(), Arc::downgrade(lease));
    tokio::spawn(run(topology, queue, lease));
}

async fn run(topology: Arc<Topology>, queue: String, lease: Weak<Lease>) {
    loop {
        match topology.check_lease(&queue, &lease) {
            LeaseCheck::Gone => return,
            LeaseCheck::WaitUntil(due_ms) => {
                let wait = u64::try_from(due_ms.saturating_sub(now_ms())).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
            }
            LeaseCheck::Expired => {
                tracing::info!(queue, "deleting a queue whose x-expires lease ran out");
                if let Err(error) = topology.delete_queue(&queue).await {
                    tracing::warn!(queue, %error, "deleting an expired queue failed");
                }
                return;
            }
        }
    }
}
