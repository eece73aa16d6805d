//! How a metric is described, so every crate that exports metrics (the engine and each frontend)
//! can publish a catalog the shell registers HELP text and buckets from. Each crate keeps its
//! metric names as constants in one module and lists every one of them in its catalog.

pub use metrics::Unit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// Exported with buckets when its name ends in `_seconds`.
    Histogram,
}

/// How one metric is exported.
#[derive(Debug, Clone, Copy)]
pub struct MetricDescription {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Unit,
    /// The `# HELP` text.
    pub help: &'static str,
}

/// Shorthand for catalog entries.
pub const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: Unit,
    help: &'static str,
) -> MetricDescription {
    MetricDescription {
        name,
        kind,
        unit,
        help,
    }
}
