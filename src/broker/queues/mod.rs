//! Queues on the log (placeholder while the storage API lands).

mod journal;
mod settled;
mod state;
