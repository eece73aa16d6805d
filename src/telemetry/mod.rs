//! Metrics and logging.

pub mod names;
