//! Logging and metrics for the whole process.
//!
//! - Logs: `tracing` to stderr, filtered by `RUST_LOG` when set, else by the `log.filter` key.
//! - Metrics: the `metrics` facade with the Prometheus recorder installed globally, without its
//!   built-in listener; [`crate::server`] serves [`PrometheusHandle::render`] on `/metrics`.
//!
//! Invariants worth naming:
//! - every name in [`names`] has a [`CATALOG`] entry (kind, unit, HELP text), so `/metrics`
//!   always carries `# HELP` lines (a unit test checks the two lists match);
//! - every histogram whose name ends in `_seconds` gets [`LATENCY_BUCKETS`], so it is exported as
//!   a real Prometheus histogram rather than a summary;
//! - figures derived from broker state (offsets, lag, queue depths, the process) are computed
//!   when `/metrics` is scraped ([`scrape`], names in [`compat`]) and never recorded per event.

pub mod compat;
pub mod exposition;
pub mod names;
pub mod process;
pub mod scrape;

use std::io::IsTerminal;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::EnvFilter;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    #[error("RUST_LOG is not a valid tracing filter")]
    BadRustLog(#[source] tracing_subscriber::filter::ParseError),
    #[error("log filter `{filter}` is invalid")]
    BadFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global log subscriber is already installed")]
    LoggingInstalled(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot install the Prometheus recorder")]
    Recorder(#[from] BuildError),
}

/// Histogram buckets for durations: 50 µs to 30 s in a 1-2.5-5 progression, which resolves
/// an fsync on fast NVMe as well as a slow long poll.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histograms are compacted when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The filter that applies: a non-empty `RUST_LOG` overrides the configured one.
pub fn log_filter(configured: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    match rust_log.filter(|value| !value.trim().is_empty()) {
        Some(value) => EnvFilter::try_new(value).map_err(TelemetryError::BadRustLog),
        None => EnvFilter::try_new(configured).map_err(|source| TelemetryError::BadFilter {
            filter: configured.to_owned(),
            source,
        }),
    }
}

/// Installs the global log subscriber (stderr; colours only on a terminal).
pub fn init_logging(configured: &str, rust_log: Option<&str>) -> Result<(), TelemetryError> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(configured, rust_log)?)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(TelemetryError::LoggingInstalled)
}

/// The Prometheus builder with Tributary's buckets; no listener, no push gateway.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
}

/// Installs the global recorder, describes every metric and sets the build-info gauge.
pub fn install_metrics() -> Result<PrometheusHandle, TelemetryError> {
    let handle = prometheus_builder()?.install_recorder()?;
    describe_all();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// The catalogs of the protocol frontends in this build (and of the seam between them, in the
/// contract crate); a frontend crate adds its catalog
/// here with one line, next to its line in `server::registry`.
pub static FRONTEND_CATALOGS: &[&[MetricDescription]] = &[
    tributary_api::interop::CATALOG,
    tributary_api::guard::CATALOG,
    tributary_amqp::metrics::CATALOG,
    tributary_kafka::metrics::CATALOG,
    tributary_rocketmq::metrics::CATALOG,
];

/// Every metric of this build: the engine's and the shell's, the scrape-time families, then
/// each frontend's.
pub fn all_metrics() -> impl Iterator<Item = &'static MetricDescription> {
    CATALOG
        .iter()
        .chain(compat::CATALOG)
        .chain(FRONTEND_CATALOGS.iter().flat_map(|catalog| catalog.iter()))
}

/// Registers HELP text and units with the current recorder.
pub fn describe_all() {
    for metric in all_metrics() {
        match metric.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(metric.name, metric.unit, metric.help)
            }
            MetricKind::Gauge => metrics::describe_gauge!(metric.name, metric.unit, metric.help),
            MetricKind::Histogram => {
                metrics::describe_histogram!(metric.name, metric.unit, metric.help)
            }
        }
    }
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] until `shutdown`.
pub fn spawn_upkeep(handle: PrometheusHandle, tracker: &TaskTracker, shutdown: CancellationToken) {
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => handle.run_upkeep(),
                () = shutdown.cancelled() => break,
            }
        }
    });
}

use tributary_api::telemetry::metric;
pub use tributary_api::telemetry::{MetricDescription, MetricKind};

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric Tributary exports.
pub static CATALOG: &[MetricDescription] = &[
    metric(
        names::STORAGE_APPENDED_BYTES,
        Counter,
        Unit::Bytes,
        "Bytes appended to partition logs, by topic.",
    ),
    metric(
        names::STORAGE_APPENDED_RECORDS,
        Counter,
        Unit::Count,
        "Records appended to partition logs, by topic.",
    ),
    metric(
        names::STORAGE_FSYNCS,
        Counter,
        Unit::Count,
        "fsync calls made by the log.",
    ),
    metric(
        names::STORAGE_FSYNC_SECONDS,
        Histogram,
        Unit::Seconds,
        "Latency of one fsync of a segment file.",
    ),
    metric(
        names::STORAGE_PARTITION_SEGMENTS,
        Gauge,
        Unit::Count,
        "Segments held by a partition, by topic and partition.",
    ),
    metric(
        names::STORAGE_PARTITION_BYTES,
        Gauge,
        Unit::Bytes,
        "Bytes stored by a partition, by topic and partition.",
    ),
    metric(
        names::STORAGE_RECOVERY_SECONDS,
        Gauge,
        Unit::Seconds,
        "Time the last start-up recovery of the log took.",
    ),
    metric(
        names::STORAGE_SEGMENTS_DELETED,
        Counter,
        Unit::Count,
        "Segments removed by retention or by log-start moves.",
    ),
    metric(
        names::STORAGE_CLEANER_PASSES,
        Counter,
        Unit::Count,
        "Log cleaner passes that cleaned a partition of a compacted topic.",
    ),
    metric(
        names::STORAGE_CLEANER_BYTES,
        Counter,
        Unit::Bytes,
        "Bytes of log the cleaner read in its passes.",
    ),
    metric(
        names::STORAGE_CLEANER_REMOVED_BYTES,
        Counter,
        Unit::Bytes,
        "Bytes the cleaner's segment rewrites freed.",
    ),
    metric(
        names::STORAGE_CLEANER_REMOVED_MARKERS,
        Counter,
        Unit::Count,
        "Transaction markers the cleaner removed once their transactions had no record left and their delete horizon passed.",
    ),
    metric(
        names::STORAGE_CLEANER_ERRORS,
        Counter,
        Unit::Count,
        "Log cleaner passes that failed (the partition is tried again next time).",
    ),
    metric(
        names::STORAGE_POISONED_PARTITIONS,
        Gauge,
        Unit::Count,
        "Partitions refusing appends after a failed write or fsync.",
    ),
    metric(
        names::CONNECTIONS_ACTIVE,
        Gauge,
        Unit::Count,
        "Open client connections, by protocol.",
    ),
    metric(
        names::CONNECTIONS_ACCEPTED,
        Counter,
        Unit::Count,
        "Client connections accepted, by protocol.",
    ),
    metric(
        names::CONNECTIONS_REFUSED,
        Counter,
        Unit::Count,
        "Client connections closed at once because the listener's cap was reached, by protocol.",
    ),
    metric(
        names::ACCEPT_ERRORS,
        Counter,
        Unit::Count,
        "Failed accepts, by protocol and reason (emfile, enfile, enobufs, enomem, other); the listener backs off and keeps accepting.",
    ),
    metric(
        names::TLS_HANDSHAKE_FAILURES,
        Counter,
        Unit::Count,
        "TLS handshakes that failed and closed their connection, by protocol and reason (timeout, closed, not_tls, no_client_certificate, bad_client_certificate, protocol, io).",
    ),
    metric(
        names::QUEUE_MESSAGES_READY,
        Gauge,
        Unit::Count,
        "Messages ready for delivery, by engine queue name (computed at scrape time).",
    ),
    metric(
        names::QUEUE_MESSAGES_UNACKED,
        Gauge,
        Unit::Count,
        "Messages delivered and awaiting an ack, by engine queue name (computed at scrape time).",
    ),
    metric(
        names::CLOUD_OBJECT_PUTS,
        Counter,
        Unit::Count,
        "Log objects PUT by the cloud engine (one per flush).",
    ),
    metric(
        names::CLOUD_OBJECT_PUT_BYTES,
        Counter,
        Unit::Bytes,
        "Bytes in log objects PUT by the cloud engine.",
    ),
    metric(
        names::CLOUD_OBJECT_GETS,
        Counter,
        Unit::Count,
        "Ranged object GETs of the cloud engine's reads (read-cache misses).",
    ),
    metric(
        names::CLOUD_READ_CACHE_HITS,
        Counter,
        Unit::Count,
        "Cloud engine reads answered from the byte-range cache.",
    ),
    metric(
        names::CLOUD_FLUSHES,
        Counter,
        Unit::Count,
        "Cloud engine flushes that wrote an object, successful or not.",
    ),
    metric(
        names::CLOUD_FAILED_FLUSHES,
        Counter,
        Unit::Count,
        "Cloud engine flushes whose PUT or commit failed (their batches were refused, retriable).",
    ),
    metric(
        names::CLOUD_FLUSH_TRANSACTIONS,
        Counter,
        Unit::Count,
        "PostgreSQL transactions committed by cloud engine flushes (one per flush).",
    ),
    metric(
        names::CLOUD_BATCHES,
        Counter,
        Unit::Count,
        "Batches committed by the cloud engine.",
    ),
    metric(
        names::CLOUD_NOTIFICATIONS,
        Counter,
        Unit::Count,
        "LISTEN/NOTIFY notifications of other brokers' commits and topic changes received.",
    ),
    metric(
        names::CLOUD_OBJECT_PUT_SECONDS,
        Histogram,
        Unit::Seconds,
        "Latency of one object PUT of the cloud engine (a flush's or a merge's object).",
    ),
    metric(
        names::CLOUD_OBJECT_GET_SECONDS,
        Histogram,
        Unit::Seconds,
        "Latency of one ranged object GET of the cloud engine (read-cache misses).",
    ),
    metric(
        names::CLOUD_OBJECT_GET_BYTES,
        Counter,
        Unit::Bytes,
        "Bytes read by object GETs of the cloud engine.",
    ),
    metric(
        names::CLOUD_PG_OPERATIONS,
        Counter,
        Unit::Count,
        "PostgreSQL operations of the cloud engine (one per loan of a pooled connection).",
    ),
    metric(
        names::CLOUD_PG_OPERATION_SECONDS,
        Histogram,
        Unit::Seconds,
        "How long a PostgreSQL operation held its connection: its statements, round trips and commit.",
    ),
    metric(
        names::CLOUD_PG_POOL_WAIT_SECONDS,
        Histogram,
        Unit::Seconds,
        "How long a PostgreSQL operation waited for a free pooled connection.",
    ),
    metric(
        names::CLOUD_FORWARDED_APPENDS,
        Counter,
        Unit::Count,
        "AMQP and RocketMQ appends forwarded over the internal RPC to the broker leading their partition.",
    ),
    metric(
        names::CLOUD_RETENTION_TRIMS,
        Counter,
        Unit::Count,
        "Partitions whose log start the cloud engine's retention moved (one per partition and pass).",
    ),
    metric(
        names::CLOUD_OBJECTS_DELETED,
        Counter,
        Unit::Count,
        "Log objects no batch referred to, deleted by the cloud engine's object GC.",
    ),
    metric(
        names::CLOUD_OBJECT_BYTES_DELETED,
        Counter,
        Unit::Bytes,
        "Bytes of the log objects deleted by the cloud engine's object GC.",
    ),
    metric(
        names::CLOUD_MAINTENANCE_FAILURES,
        Counter,
        Unit::Count,
        "Cloud engine maintenance passes (retention, object GC) that failed and are retried.",
    ),
    metric(
        names::CLOUD_OBJECTS_MERGED,
        Counter,
        Unit::Count,
        "Small log objects whose batches the cloud engine merged into a larger object.",
    ),
    metric(
        names::CLOUD_MERGE_BYTES,
        Counter,
        Unit::Bytes,
        "Bytes the cloud engine copied into merged log objects.",
    ),
    metric(
        names::CLOUD_SCHEDULED_FIRED,
        Counter,
        Unit::Count,
        "Delayed appends in PostgreSQL this broker carried out (it leads their target).",
    ),
    metric(
        names::CLOUD_SCHEDULED_PENDING,
        Gauge,
        Unit::Count,
        "Delayed appends pending in PostgreSQL (every broker's), as this broker last counted them.",
    ),
    metric(
        names::CLOUD_LEASE_HELD,
        Gauge,
        Unit::Count,
        "1 while this broker holds its cloud membership lease, else 0.",
    ),
    metric(
        names::SCHEDULED_DROPPED,
        Counter,
        Unit::Count,
        "Delayed messages dropped when due because their target is gone or the engine refuses them, by reason.",
    ),
    metric(
        names::BUILD_INFO,
        Gauge,
        Unit::Count,
        "Always 1; the version label names the running build.",
    ),
    metric(
        names::HTTP_REQUESTS,
        Counter,
        Unit::Count,
        "Requests served by the metrics and health endpoint, by endpoint and status.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The string values of every `pub const` in `names.rs`, read from its source so a constant
    /// added there without a catalog entry fails this test.
    fn declared_names() -> Vec<String> {
        include_str!("names.rs")
            .lines()
            .filter_map(|line| line.trim().strip_prefix("pub const "))
            .filter_map(|rest| rest.split('"').nth(1))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_declared_name_is_described_once() {
        let declared = declared_names();
        assert!(
            declared.len() >= 14,
            "names.rs parse found only {declared:?}"
        );
        for name in &declared {
            let entries = CATALOG.iter().filter(|metric| metric.name == name).count();
            assert_eq!(entries, 1, "{name} must have exactly one catalog entry");
        }
        assert_eq!(
            CATALOG.len(),
            declared.len(),
            "catalog names something names.rs does not"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for metric in CATALOG {
            assert!(metric.name.starts_with("tributary_"), "{}", metric.name);
            assert_eq!(
                metric.kind == Counter,
                metric.name.ends_with("_total"),
                "only counters end in _total: {}",
                metric.name
            );
            if metric.kind == Histogram {
                assert!(
                    metric.name.ends_with("_seconds"),
                    "{} gets no buckets",
                    metric.name
                );
            }
            assert!(
                !metric.help.is_empty() && metric.help.ends_with('.'),
                "{}",
                metric.name
            );
        }
    }

    #[test]
    fn latency_buckets_are_log_spaced_from_50us_to_30s() {
        assert_eq!(LATENCY_BUCKETS.first(), Some(&0.000_05));
        assert_eq!(LATENCY_BUCKETS.last(), Some(&30.0));
        for pair in LATENCY_BUCKETS.windows(2) {
            let ratio = pair[1] / pair[0];
            assert!((1.9..=3.1).contains(&ratio), "uneven step {pair:?}");
        }
    }

    #[test]
    fn rust_log_overrides_the_configured_filter() {
        assert!(log_filter("info", None).is_ok());
        assert!(
            log_filter("info", Some("  ")).is_ok(),
            "empty RUST_LOG is ignored"
        );
        let filter = log_filter("info", Some("tributary=trace")).expect("valid");
        assert!(filter.to_string().contains("trace"), "{filter}");
        assert!(matches!(
            log_filter("info", Some("x=[")),
            Err(TelemetryError::BadRustLog(_))
        ));
        assert!(matches!(
            log_filter("x=[", None),
            Err(TelemetryError::BadFilter { .. })
        ));
    }

    #[test]
    fn seconds_histograms_render_with_buckets_and_help() {
        let recorder = prometheus_builder()
            .expect("buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            metrics::histogram!(names::STORAGE_FSYNC_SECONDS).record(0.003);
        });
        let text = handle.render();
        let name = names::STORAGE_FSYNC_SECONDS;
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.005\"}} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"0.0025\"}} 0")),
            "{text}"
        );
        assert!(text.contains(&format!("# HELP {name} Latency")), "{text}");
    }
}
