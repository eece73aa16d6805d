//! The log engine: crash recovery against the real binary (SIGKILL, idempotent producers) and the
//! model-based test with power loss and the descriptor budget.

#[path = "../support/broker.rs"]
mod broker;

mod crash;
mod model;
