//! The sync pool: a fixed set of threads that run fsync rounds for partitions whose appends wait
//! for durability without blocking a thread of their own (the broker's pipelined `always`
//! appends, see `broker::topics`).
//!
//! Why: with many partitions written at once, each waiting append used to lead its own fsync on
//! its own blocking thread, so 1,000 partitions meant up to 1,000 threads and fsyncs at once;
//! one after the other they cost a device cache flush each (~3.6 ms on the benchmark disk).
//! Concurrent fsyncs let the block layer merge their flushes: on that disk, `fdatasync` of 1,000
//! freshly written 3 KB files cost per file 3.6-3.9 ms one at a time, 219-581 µs with 4 threads,
//! 124-361 µs with 16, 152-197 µs with 64 (the steadiest), 222-313 µs with 256 or 1,000
//! (BENCHMARKS.md, § Many partitions). Hence a fixed pool of [`SYNC_THREADS`] rather than a
//! thread per waiting partition.
//!
//! Invariants:
//! - The pool never acknowledges anything: a worker only runs [`Partition::sync_all_written`],
//!   the same group-commit round a blocking waiter leads, which raises the partition's synced
//!   offset only after `sync_data` returned. Waiters check that offset
//!   ([`Partition::is_durable`]) and are woken by the partition's append event after each round.
//! - A partition is in the queue at most once (`Partition::sync_queued`). A worker clears the
//!   flag (swap, acquire) before it reads the written offset, so an append that found the flag
//!   set is covered by that round, and one that found it clear queues another.
//! - [`SyncPool::request`] refuses (returns false) once the pool is stopping; the caller then
//!   syncs itself. Workers drain the queue before they exit, so every accepted request gets its
//!   round.
//! - Idle workers block on a condition variable: no timer, no polling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::partition::Partition;

/// fsyncs in flight at once (see the module docs for the measurement behind it).
pub(crate) const SYNC_THREADS: usize = 64;
/// A worker only runs fsync rounds: a small stack is plenty.
const WORKER_STACK: usize = 256 << 10;

#[derive(Debug, Default)]
struct Queue {
    partitions: VecDeque<Arc<Partition>>,
    stopping: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// See the module docs.
#[derive(Debug)]
pub struct SyncPool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl SyncPool {
    pub(crate) fn start(threads: usize) -> std::io::Result<Arc<SyncPool>> {
        let shared = Arc::new(Shared::default());
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("storage-sync-{index}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || run_worker(&shared))?,
            );
        }
        Ok(Arc::new(SyncPool {
            shared,
            workers: Mutex::new(workers),
        }))
    }

    /// Queues an fsync round for `partition` (unless one is queued and not yet started).
    /// False when the pool is stopping: the caller must sync itself
    /// ([`Partition::wait_durable`]).
    pub fn request(&self, partition: &Arc<Partition>) -> bool {
        if partition.sync_queued.swap(true, Ordering::AcqRel) {
            return true;
        }
        let mut queue = self.shared.queue.lock();
        if queue.stopping {
            partition.sync_queued.store(false, Ordering::Release);
            return false;
        }
        queue.partitions.push_back(Arc::clone(partition));
        drop(queue);
        self.shared.wake.notify_one();
        true
    }

    /// Runs the queued rounds, then stops the workers. Idempotent.
    pub(crate) fn stop(&self) {
        self.shared.queue.lock().stopping = true;
        self.shared.wake.notify_all();
        for worker in std::mem::take(&mut *self.workers.lock()) {
            let _ = worker.join();
        }
    }
}

fn run_worker(shared: &Shared) {
    loop {
        let partition = {
            let mut queue = shared.queue.lock();
            loop {
                if let Some(partition) = queue.partitions.pop_front() {
                    break partition;
                }
                if queue.stopping {
                    return;
                }
                shared.wake.wait(&mut queue);
            }
        };
        // Cleared before the round reads the written offset: see the module docs.
        partition.sync_queued.swap(false, Ordering::AcqRel);
        // A failure poisons the partition (inside the round) and wakes its waiters, who then
        // see the error; nothing more to do here.
        if let Err(err) = partition.sync_all_written() {
            tracing::debug!(topic = partition.topic(), partition = partition.id(), error = %err,
                "pooled fsync round failed");
        }
    }
}
