//! `tributary-bench`: runs OpenMessaging Benchmark (OMB) workloads through real client
//! libraries over Kafka (rdkafka), AMQP 0-9-1 (lapin) and RocketMQ remoting
//! (rocketmq-client-rust), against a Tributary it starts itself or any broker at a given
//! address, and writes OMB's `TestResult` JSON plus an HTML comparison report.
//!
//! Layout: [`workload`] (OMB YAML), [`payload`] (message bodies carrying their send time),
//! [`driver`] (one trait, one module per protocol, each documenting its mapping of topics,
//! partitions and subscriptions), [`runner`] (warm-up, measured periods, backlog), [`rate`]
//! (OMB's maximum-sustainable-rate discovery for `producerRate: 0`), [`result`]
//! (OMB `TestResult`), [`target`] (a fresh Tributary or given addresses), [`report`] and
//! [`svg`] (the self-contained HTML report).
//!
//! Invariant: every figure comes from messages the broker acknowledged (publish) or delivered
//! (consume); a refused send is counted in `publishErrorRate`, never as published.

// rocketmq-client-rust's futures are deep: proving them `Send` needs a higher limit.
#![recursion_limit = "512"]

pub mod compare;
pub mod driver;
pub mod payload;
pub mod rate;
pub mod report;
pub mod result;
pub mod runner;
pub mod stats;
pub mod svg;
pub mod target;
pub mod workload;

/// Everything that can go wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workload: {0}")]
    Workload(String),
    #[error("{protocol}: {message}")]
    Driver {
        protocol: &'static str,
        message: String,
    },
    #[error("target: {0}")]
    Target(String),
    #[error("{0}")]
    Usage(String),
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn driver(protocol: &'static str, message: impl std::fmt::Display) -> Self {
        Error::Driver {
            protocol,
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
