//! The process shell: listeners, the metric catalog's exposition and the process lifecycle. The
//! listener tests install the process-wide metrics recorder, so they live in their own binary.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/tls.rs"]
mod tls_support;

mod bench;
mod exposition;
mod listener;
mod process;
mod tls;
