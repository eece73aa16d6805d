//! Graceful shutdown: one [`Lifecycle`] per group of tasks that stop together.
//!
//! Sequence for a group: cancel `shutdown` (listeners stop accepting; frontends finish the
//! request in flight and return), wait for the tracked tasks up to a deadline, then cancel
//! `abort` (every task still running drops its connection future) and wait a short grace.
//!
//! Invariants worth naming:
//! - every connection task is spawned on the tracker and selects on `abort`, so after
//!   [`Lifecycle::drain`] returns no connection of the group is still touching the engine
//!   (unless one is blocked outside an await point, which [`DrainOutcome::Stuck`] reports);
//! - there are no ad-hoc flags: cancellation tokens carry every stop request.

use std::io;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long aborted tasks get to drop their futures.
pub const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Tokens and tracker for a group of tasks that stop together.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Cancelled first: stop accepting, finish what is in flight.
    pub shutdown: CancellationToken,
    /// Cancelled at the deadline: drop what is still running.
    pub abort: CancellationToken,
    /// Every task of the group.
    pub tracker: TaskTracker,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every task finished before the deadline.
    Drained,
    /// This many tasks were still running at the deadline and were aborted.
    Aborted { tasks: usize },
    /// This many tasks did not even end after being aborted.
    Stuck { tasks: usize },
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the group: see the module documentation.
    pub async fn drain(&self, deadline: Duration) -> DrainOutcome {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return DrainOutcome::Drained;
        }
        let tasks = self.tracker.len();
        self.abort.cancel();
        if tokio::time::timeout(ABORT_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            return DrainOutcome::Stuck {
                tasks: self.tracker.len(),
            };
        }
        DrainOutcome::Aborted { tasks }
    }
}

/// A registered SIGINT + SIGTERM listener. Registering early means a signal that arrives during
/// start-up is not lost (nor handled by the default action, which would skip the flush).
#[derive(Debug)]
pub struct TerminationSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl TerminationSignals {
    pub fn register() -> io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
