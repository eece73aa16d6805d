//! Metric names of the RocketMQ frontend and their catalog. Labels are bounded: request `code`
//! (numeric request code), `outcome` (response code), `topic`, `group`, `queue`; never a client id.

use tributary_api::telemetry::{MetricDescription, MetricKind, Unit, metric};

/// Requests handled, by request `code` and response `outcome` code.
pub const REQUESTS: &str = "tributary_rocketmq_requests_total";
/// Time from a decoded request to its response being queued, by request `code`. Long-polling
/// pulls include their wait.
pub const REQUEST_SECONDS: &str = "tributary_rocketmq_request_duration_seconds";
/// Messages stored by sends, by `topic`.
pub const MESSAGES_IN: &str = "tributary_rocketmq_messages_in_total";
/// Messages returned by pulls, by `topic`.
pub const MESSAGES_OUT: &str = "tributary_rocketmq_messages_out_total";
/// Connections closed because a frame was malformed or over the size limit.
pub const MALFORMED_FRAMES: &str = "tributary_rocketmq_malformed_frames_total";
/// Consumer lag per (`group`, `topic`, `queue`): high watermark minus the committed offset,
/// under the RocketMQ exporter's name so existing dashboards work (gauge).
pub const GROUP_DIFF: &str = "rocketmq_group_diff";

pub static CATALOG: &[MetricDescription] = &[
    metric(
        REQUESTS,
        MetricKind::Counter,
        Unit::Count,
        "RocketMQ remoting requests handled, by request code and response code",
    ),
    metric(
        REQUEST_SECONDS,
        MetricKind::Histogram,
        Unit::Seconds,
        "RocketMQ request handling time by request code (long-poll pulls include the wait)",
    ),
    metric(
        MESSAGES_IN,
        MetricKind::Counter,
        Unit::Count,
        "Messages stored by RocketMQ sends, by topic",
    ),
    metric(
        MESSAGES_OUT,
        MetricKind::Counter,
        Unit::Count,
        "Messages returned by RocketMQ pulls, by topic",
    ),
    metric(
        MALFORMED_FRAMES,
        MetricKind::Counter,
        Unit::Count,
        "RocketMQ connections closed because of a malformed or oversized frame",
    ),
    metric(
        GROUP_DIFF,
        MetricKind::Gauge,
        Unit::Count,
        "Consumer lag per group, topic and queue (high watermark minus committed offset)",
    ),
];
