//! Metric names of the Kafka frontend and their catalog. Labels are bounded: `api` (a Kafka API
//! name), `topic`, `mechanism` (a SASL mechanism name); never a client id, user name or
//! address. Offsets and lag are not recorded here: the shell computes kafka_exporter's
//! families from the engine when `/metrics` is scraped.

use tributary_api::telemetry::{MetricDescription, MetricKind, Unit, metric};

/// Requests served, by `api`.
pub const REQUESTS: &str = "tributary_kafka_requests_total";
/// Time from a whole request frame read to its response written, by `api`.
pub const REQUEST_SECONDS: &str = "tributary_kafka_request_duration_seconds";
/// Record-batch bytes accepted by Produce, by `topic`.
pub const BYTES_IN: &str = "tributary_kafka_bytes_in_total";
/// Records accepted by Produce (batch record counts), by `topic`.
pub const RECORDS_IN: &str = "tributary_kafka_records_in_total";
/// Records returned by Fetch (whole batches, so it counts records before the fetch offset in
/// the first batch too), by `topic`.
pub const RECORDS_OUT: &str = "tributary_kafka_records_out_total";
/// Record-batch bytes returned by Fetch, by `topic`.
pub const BYTES_OUT: &str = "tributary_kafka_bytes_out_total";
/// Connections closed because of a protocol error (oversized frame, unknown key or version, a
/// length claiming more than the frame holds).
pub const PROTOCOL_ERRORS: &str = "tributary_kafka_protocol_errors_total";
/// SASL exchanges that authenticated a connection, by `mechanism`.
pub const SASL_SUCCESSES: &str = "tributary_kafka_sasl_authentication_successes_total";
/// SASL exchanges that failed (wrong password, unknown user, malformed message), by `mechanism`.
pub const SASL_FAILURES: &str = "tributary_kafka_sasl_authentication_failures_total";

/// Every metric this crate exports, with its HELP text.
pub static CATALOG: &[MetricDescription] = &[
    metric(
        REQUESTS,
        MetricKind::Counter,
        Unit::Count,
        "Kafka requests served, by API.",
    ),
    metric(
        REQUEST_SECONDS,
        MetricKind::Histogram,
        Unit::Seconds,
        "Kafka request latency from frame read to response written, by API.",
    ),
    metric(
        BYTES_IN,
        MetricKind::Counter,
        Unit::Bytes,
        "Record-batch bytes produced, by topic.",
    ),
    metric(
        BYTES_OUT,
        MetricKind::Counter,
        Unit::Bytes,
        "Record-batch bytes fetched, by topic.",
    ),
    metric(
        RECORDS_IN,
        MetricKind::Counter,
        Unit::Count,
        "Records produced, by topic.",
    ),
    metric(
        RECORDS_OUT,
        MetricKind::Counter,
        Unit::Count,
        "Records fetched (whole batches), by topic.",
    ),
    metric(
        PROTOCOL_ERRORS,
        MetricKind::Counter,
        Unit::Count,
        "Kafka connections closed for a protocol error.",
    ),
    metric(
        SASL_SUCCESSES,
        MetricKind::Counter,
        Unit::Count,
        "Kafka SASL authentications that succeeded, by mechanism.",
    ),
    metric(
        SASL_FAILURES,
        MetricKind::Counter,
        Unit::Count,
        "Kafka SASL authentications that failed, by mechanism.",
    ),
];
