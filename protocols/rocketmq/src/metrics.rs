//! Metric names of the RocketMQ frontend and their catalog. Labels are bounded: request `code`
//! (the number of a request code the broker serves, `unknown` for any other: a client must not
//! be able to create label values), `outcome` (response code, or a transaction's resolution), `topic`,
//! `group`, `queue`; never a client id.

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
/// Transactional half messages waiting for END_TRANSACTION or a check answer.
pub const TRANSACTIONS_PENDING: &str = "tributary_rocketmq_transactions_pending";
/// Half messages resolved, by `outcome`: `commit`, `rollback` or `discard` (checked the maximum
/// number of times without an answer).
pub const TRANSACTIONS_RESOLVED: &str = "tributary_rocketmq_transactions_resolved_total";
/// CHECK_TRANSACTION_STATE requests sent to producers.
pub const TRANSACTION_CHECKS: &str = "tributary_rocketmq_transaction_checks_total";
/// Consumer lag per (`group`, `topic`, `queue`): high watermark minus the committed offset.
pub const GROUP_LAG: &str = "tributary_rocketmq_group_lag";
/// The RocketMQ exporter's lag per (`group`, `topic`, `countOfOnlineConsumers`, `msgModel`),
/// summed over the topic's queues; ordinary topics.
pub const GROUP_DIFF: &str = "rocketmq_group_diff";
/// The same for `%RETRY%` topics.
pub const GROUP_RETRY_DIFF: &str = "rocketmq_group_retrydiff";
/// The same for `%DLQ%` topics.
pub const GROUP_DLQ_DIFF: &str = "rocketmq_group_dlqdiff";
/// The exporter's messages stored per second by (`cluster`, `broker`, `topic`).
pub const PRODUCER_TPS: &str = "rocketmq_producer_tps";
/// The exporter's messages stored per second on this broker, by (`cluster`, `broker`).
pub const BROKER_TPS: &str = "rocketmq_broker_tps";
/// The exporter's messages pulled per second from this broker, by (`cluster`, `broker`).
pub const BROKER_QPS: &str = "rocketmq_broker_qps";
/// The exporter's messages pulled per second by (`cluster`, `broker`, `topic`, `group`).
pub const CONSUMER_TPS: &str = "rocketmq_consumer_tps";
/// The exporter's sum of a group's committed offsets by (`cluster`, `broker`, `topic`, `group`).
pub const CONSUMER_OFFSET: &str = "rocketmq_consumer_offset";

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
        TRANSACTIONS_PENDING,
        MetricKind::Gauge,
        Unit::Count,
        "RocketMQ transactional half messages not yet committed or rolled back",
    ),
    metric(
        TRANSACTIONS_RESOLVED,
        MetricKind::Counter,
        Unit::Count,
        "RocketMQ half messages resolved, by outcome (commit, rollback, discard)",
    ),
    metric(
        TRANSACTION_CHECKS,
        MetricKind::Counter,
        Unit::Count,
        "RocketMQ CHECK_TRANSACTION_STATE requests sent to producers",
    ),
    metric(
        GROUP_LAG,
        MetricKind::Gauge,
        Unit::Count,
        "RocketMQ consumer lag per group, topic and queue (high watermark minus committed offset)",
    ),
    metric(
        GROUP_DIFF,
        MetricKind::Gauge,
        Unit::Count,
        "GroupDiff: consumer lag per group and topic, summed over queues (rocketmq-exporter)",
    ),
    metric(
        GROUP_RETRY_DIFF,
        MetricKind::Gauge,
        Unit::Count,
        "GroupRetryDiff: consumer lag on a group's retry topic (rocketmq-exporter)",
    ),
    metric(
        GROUP_DLQ_DIFF,
        MetricKind::Gauge,
        Unit::Count,
        "GroupDLQDiff: consumer lag on a group's dead-letter topic (rocketmq-exporter)",
    ),
    metric(
        PRODUCER_TPS,
        MetricKind::Gauge,
        Unit::Count,
        "TopicPutNums: messages stored per second by topic (rocketmq-exporter)",
    ),
    metric(
        BROKER_TPS,
        MetricKind::Gauge,
        Unit::Count,
        "BrokerPutNums: messages stored per second on the broker (rocketmq-exporter)",
    ),
    metric(
        BROKER_QPS,
        MetricKind::Gauge,
        Unit::Count,
        "BrokerGetNums: messages pulled per second from the broker (rocketmq-exporter)",
    ),
    metric(
        CONSUMER_TPS,
        MetricKind::Gauge,
        Unit::Count,
        "GroupGetNums: messages pulled per second by topic and group (rocketmq-exporter)",
    ),
    metric(
        CONSUMER_OFFSET,
        MetricKind::Gauge,
        Unit::Count,
        "GroupOffset: sum of the group's committed offsets on the topic (rocketmq-exporter)",
    ),
];
