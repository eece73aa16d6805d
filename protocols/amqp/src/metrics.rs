//! Metric names of the AMQP frontend. Where RabbitMQ dashboards read a figure, the name is the
//! one RabbitMQ's Prometheus plugin exports (`rabbitmq_*`); the rest are `tributary_amqp_*`.

use std::collections::HashMap;

use metrics::{Counter, Gauge, Histogram};
use parking_lot::Mutex;
use tributary_api::QueueService;
use tributary_api::telemetry::{MetricDescription, MetricKind, Unit, metric};

/// One connection's handles of the per-method counter and histogram, looked up in the
/// recorder once per method name instead of on every method (a labelled lookup builds and
/// hashes a key each time). A connection uses a handful of methods, so a list searched by
/// name beats hashing the name on every method.
#[derive(Default)]
pub struct MethodMetrics {
    by_name: Vec<(&'static str, Counter, Histogram)>,
}

impl std::fmt::Debug for MethodMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodMetrics")
            .field("methods", &self.by_name.len())
            .finish()
    }
}

impl MethodMetrics {
    /// The position of the method named `name`, for [`MethodMetrics::counter`] and
    /// [`MethodMetrics::histogram`].
    pub fn index(&mut self, name: &'static str) -> usize {
        if let Some(at) = self.by_name.iter().position(|(known, ..)| *known == name) {
            return at;
        }
        self.by_name.push((
            name,
            metrics::counter!(METHODS, "method" => name),
            metrics::histogram!(METHOD_SECONDS, "method" => name),
        ));
        self.by_name.len() - 1
    }

    pub fn counter(&self, index: usize) -> &Counter {
        &self.by_name[index].1
    }

    pub fn histogram(&self, index: usize) -> &Histogram {
        &self.by_name[index].2
    }
}

/// Handles of the broker-wide message counters, looked up once per vhost: they count on every
/// publish, delivery and ack, and each `counter!` lookup hashes its key in the registry.
#[derive(Clone)]
pub struct MessageCounters {
    pub received: Counter,
    pub routed: Counter,
    pub unroutable_returned: Counter,
    pub unroutable_dropped: Counter,
    pub delivered: Counter,
    pub redelivered: Counter,
    pub confirmed: Counter,
    pub acknowledged: Counter,
}

impl MessageCounters {
    pub fn new() -> Self {
        Self {
            received: metrics::counter!(MESSAGES_RECEIVED),
            routed: metrics::counter!(MESSAGES_ROUTED),
            unroutable_returned: metrics::counter!(MESSAGES_UNROUTABLE_RETURNED),
            unroutable_dropped: metrics::counter!(MESSAGES_UNROUTABLE_DROPPED),
            delivered: metrics::counter!(MESSAGES_DELIVERED),
            redelivered: metrics::counter!(MESSAGES_REDELIVERED),
            confirmed: metrics::counter!(MESSAGES_CONFIRMED),
            acknowledged: metrics::counter!(MESSAGES_ACKNOWLEDGED),
        }
    }
}

impl Default for MessageCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MessageCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCounters").finish_non_exhaustive()
    }
}

/// A vhost's queue depth gauges (ready, unacked) by queue name, each looked up in the
/// recorder once: depth is refreshed after every store, delivery batch and ack, and a labelled
/// lookup allocates and hashes its key. Entries of deleted queues stay; a queue declared again
/// under the same name has the same labels, so the same gauges.
#[derive(Default)]
pub struct DepthGauges {
    by_queue: Mutex<HashMap<String, (Gauge, Gauge)>>,
}

impl std::fmt::Debug for DepthGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepthGauges")
            .field("queues", &self.by_queue.lock().len())
            .finish()
    }
}

impl DepthGauges {
    /// Refreshes a queue's depth gauges after it changed (a missing queue reads as empty).
    pub fn record(&self, queues: &dyn QueueService, vhost: &str, queue: &str) {
        let depth = queues.depth(queue).unwrap_or_default();
        let mut by_queue = self.by_queue.lock();
        let (ready, unacked) = match by_queue.get(queue) {
            Some(gauges) => gauges,
            None => {
                let labels = [("vhost", vhost.to_owned()), ("queue", queue.to_owned())];
                let gauges = (
                    metrics::gauge!(QUEUE_MESSAGES_READY, &labels),
                    metrics::gauge!(QUEUE_MESSAGES_UNACKED, &labels),
                );
                by_queue.entry(queue.to_owned()).or_insert(gauges)
            }
        };
        ready.set(depth.ready as f64);
        unacked.set(depth.unacked as f64);
    }
}

/// Refreshes a queue's depth gauges in `shared`'s vhost.
pub fn record_depth(shared: &crate::Shared, queue: &str) {
    shared.depth_gauges.record(
        shared.engine.queues.as_ref(),
        shared.topology.vhost(),
        queue,
    );
}

pub const CONNECTIONS: &str = "rabbitmq_connections";
pub const CHANNELS: &str = "rabbitmq_channels";
pub const CONSUMERS: &str = "rabbitmq_consumers";
pub const MESSAGES_RECEIVED: &str = "rabbitmq_global_messages_received_total";
pub const MESSAGES_ROUTED: &str = "rabbitmq_global_messages_routed_total";
pub const MESSAGES_UNROUTABLE_RETURNED: &str = "rabbitmq_global_messages_unroutable_returned_total";
pub const MESSAGES_UNROUTABLE_DROPPED: &str = "rabbitmq_global_messages_unroutable_dropped_total";
pub const MESSAGES_DELIVERED: &str = "rabbitmq_global_messages_delivered_total";
pub const MESSAGES_REDELIVERED: &str = "rabbitmq_global_messages_redelivered_total";
pub const MESSAGES_CONFIRMED: &str = "rabbitmq_global_messages_confirmed_total";
pub const MESSAGES_ACKNOWLEDGED: &str = "rabbitmq_global_messages_acknowledged_total";
pub const QUEUE_MESSAGES_READY: &str = "rabbitmq_queue_messages_ready";
pub const QUEUE_MESSAGES_UNACKED: &str = "rabbitmq_queue_messages_unacked";
pub const METHODS: &str = "tributary_amqp_methods_total";
pub const METHOD_SECONDS: &str = "tributary_amqp_method_seconds";
pub const BYTES_RECEIVED: &str = "tributary_amqp_received_bytes_total";
pub const BYTES_SENT: &str = "tributary_amqp_sent_bytes_total";
pub const CHANNEL_ERRORS: &str = "tributary_amqp_channel_errors_total";
pub const CONNECTION_ERRORS: &str = "tributary_amqp_connection_errors_total";
pub const BLOCKED_CONNECTIONS: &str = "tributary_amqp_blocked_connections";
pub const TOPIC_FEED_RECORDS: &str = "tributary_amqp_topic_feed_records_total";
pub const TOPIC_FEED_REFED: &str = "tributary_amqp_topic_feed_refed_total";
pub const TOPIC_FEED_REFUSED: &str = "tributary_amqp_topic_feed_refused_total";

/// Every metric above with its HELP text.
pub static CATALOG: &[MetricDescription] = &[
    metric(
        TOPIC_FEED_RECORDS,
        MetricKind::Counter,
        Unit::Count,
        "Topic records enqueued into queues bound to the topic's exchange (one per queue).",
    ),
    metric(
        TOPIC_FEED_REFED,
        MetricKind::Counter,
        Unit::Count,
        "Topic records enqueued again into a bound queue after a crash or a failed enqueue (may be duplicates).",
    ),
    metric(
        TOPIC_FEED_REFUSED,
        MetricKind::Counter,
        Unit::Count,
        "Topic records a bound queue refused by its x-overflow policy (reject-publish), by queue.",
    ),
    metric(
        BLOCKED_CONNECTIONS,
        MetricKind::Gauge,
        Unit::Count,
        "AMQP connections not read from because a resource alarm is on.",
    ),
    metric(
        CONNECTIONS,
        MetricKind::Gauge,
        Unit::Count,
        "Open AMQP connections.",
    ),
    metric(
        CHANNELS,
        MetricKind::Gauge,
        Unit::Count,
        "Open AMQP channels.",
    ),
    metric(
        CONSUMERS,
        MetricKind::Gauge,
        Unit::Count,
        "Active AMQP consumers.",
    ),
    metric(
        MESSAGES_RECEIVED,
        MetricKind::Counter,
        Unit::Count,
        "Messages published by AMQP clients.",
    ),
    metric(
        MESSAGES_ROUTED,
        MetricKind::Counter,
        Unit::Count,
        "Published messages routed to at least one queue.",
    ),
    metric(
        MESSAGES_UNROUTABLE_RETURNED,
        MetricKind::Counter,
        Unit::Count,
        "Mandatory messages returned because no queue matched.",
    ),
    metric(
        MESSAGES_UNROUTABLE_DROPPED,
        MetricKind::Counter,
        Unit::Count,
        "Non-mandatory messages dropped because no queue matched.",
    ),
    metric(
        MESSAGES_DELIVERED,
        MetricKind::Counter,
        Unit::Count,
        "Messages delivered to consumers or basic.get.",
    ),
    metric(
        MESSAGES_REDELIVERED,
        MetricKind::Counter,
        Unit::Count,
        "Deliveries flagged redelivered.",
    ),
    metric(
        MESSAGES_CONFIRMED,
        MetricKind::Counter,
        Unit::Count,
        "Publisher confirms (basic.ack) sent.",
    ),
    metric(
        MESSAGES_ACKNOWLEDGED,
        MetricKind::Counter,
        Unit::Count,
        "Deliveries acknowledged by consumers.",
    ),
    metric(
        QUEUE_MESSAGES_READY,
        MetricKind::Gauge,
        Unit::Count,
        "Messages ready for delivery, by vhost and queue (refreshed when the queue changes).",
    ),
    metric(
        QUEUE_MESSAGES_UNACKED,
        MetricKind::Gauge,
        Unit::Count,
        "Messages delivered and not yet acknowledged, by vhost and queue.",
    ),
    metric(
        METHODS,
        MetricKind::Counter,
        Unit::Count,
        "AMQP methods received, by method name.",
    ),
    metric(
        METHOD_SECONDS,
        MetricKind::Histogram,
        Unit::Seconds,
        "Time to handle one AMQP method, by method name.",
    ),
    metric(
        BYTES_RECEIVED,
        MetricKind::Counter,
        Unit::Bytes,
        "Bytes read from AMQP clients.",
    ),
    metric(
        BYTES_SENT,
        MetricKind::Counter,
        Unit::Bytes,
        "Bytes written to AMQP clients.",
    ),
    metric(
        CHANNEL_ERRORS,
        MetricKind::Counter,
        Unit::Count,
        "Channels closed by the server, by reply code.",
    ),
    metric(
        CONNECTION_ERRORS,
        MetricKind::Counter,
        Unit::Count,
        "Connections closed by the server, by reply code.",
    ),
];
