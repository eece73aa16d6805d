//! Resource alarms (RabbitMQ's memory and disk alarms) as the broker shell reports them, and
//! what a connection does about them: a connection that publishes while an alarm is on gets
//! `connection.blocked` (if its client announced the capability) and is not read from until
//! every alarm has cleared, then gets `connection.unblocked`. Deliveries to its consumers go on,
//! since they are written by the consumer tasks, not by the reading loop.
//!
//! Invariants: the shell owns the measuring (this crate does no host I/O); a connection never
//! blocks on an alarm before it has published; a blocked connection is not read from, so the
//! heartbeat dead-peer check is suspended with it, as in RabbitMQ.

use tokio::sync::watch;

/// Which resource alarms are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alarms {
    /// Resident memory is above the high watermark.
    pub memory: bool,
    /// Free space on the data directory's filesystem is below the limit.
    pub disk: bool,
}

impl Alarms {
    pub fn any(self) -> bool {
        self.memory || self.disk
    }

    /// The reason RabbitMQ puts in `connection.blocked`.
    pub fn reason(self) -> &'static str {
        if self.memory {
            "low on memory"
        } else {
            "low on disk space"
        }
    }
}

/// Alarms that never go off (no shell monitor).
pub fn never() -> watch::Receiver<Alarms> {
    // The sender is dropped: the value stays `Alarms::default()` for good.
    watch::channel(Alarms::default()).1
}
