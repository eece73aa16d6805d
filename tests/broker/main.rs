//! The broker layer in process, over real storage and a real metadata file: offsets, queues on the
//! log, records, the delay scheduler and topics. One binary with a module per concern.

#[path = "../common/mod.rs"]
mod common;

mod offsets;
mod queues;
mod records;
mod scheduler;
mod topics;
