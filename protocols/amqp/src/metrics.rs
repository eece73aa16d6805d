//! Metric names of the AMQP frontend. Where RabbitMQ dashboards read a figure, the name is the
//! one RabbitMQ's Prometheus plugin exports (`rabbitmq_*`); the rest are `tributary_amqp_*`.
//! Queue depths are not recorded here: the shell computes them from the engine when `/metrics`
//! is scraped (`rabbitmq_queue_messages_ready` and `_unacked` by vhost and queue).

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Histogram};
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

/// One queue's message counts since it was declared in this process, for the admin API's
/// RabbitMQ `message_stats` (rates are derived from them there). Not metrics: a per-queue
/// label would let clients grow the exposition without bound.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Published messages stored in the queue (refused ones and topic feeds not counted).
    publish: AtomicU64,
    /// Deliveries to consumers and `basic.get` answers.
    deliver_get: AtomicU64,
    /// Deliveries acknowledged by `basic.ack` (not auto-acked ones, as in RabbitMQ).
    ack: AtomicU64,
    /// Deliveries flagged redelivered.
    redeliver: AtomicU64,
}

/// A [`QueueStats`] reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub publish: u64,
    pub deliver_get: u64,
    pub ack: u64,
    pub redeliver: u64,
}

impl QueueStats {
    pub fn published(&self, n: u64) {
        self.publish.fetch_add(n, Ordering::Relaxed);
    }

    pub fn delivered(&self, n: u64, redelivered: u64) {
        self.deliver_get.fetch_add(n, Ordering::Relaxed);
        if redelivered > 0 {
            self.redeliver.fetch_add(redelivered, Ordering::Relaxed);
        }
    }

    pub fn acked(&self, n: u64) {
        self.ack.fetch_add(n, Ordering::Relaxed);
    }

    pub fn counts(&self) -> QueueCounts {
        QueueCounts {
            publish: self.publish.load(Ordering::Relaxed),
            deliver_get: self.deliver_get.load(Ordering::Relaxed),
            ack: self.ack.load(Ordering::Relaxed),
            redeliver: self.redeliver.load(Ordering::Relaxed),
        }
    }
}

/// Handles of the broker-wide message counters, looked up once per vhost: they count on every
/// publish, delivery and ack, and each `counter!` lookup hashes its key in the registry.
#[derive(Clone)]
pub struct MessageCounters {
    pub received: Counter,
    /// Received on channels in confirm mode.
    pub received_confirm: Counter,
    pub delivered_consume_auto_ack: Counter,
    pub delivered_consume_manual_ack: Counter,
    pub delivered_get_auto_ack: Counter,
    pub delivered_get_manual_ack: Counter,
    pub get_empty: Counter,
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
            received_confirm: metrics::counter!(MESSAGES_RECEIVED_CONFIRM),
            delivered_consume_auto_ack: metrics::counter!(MESSAGES_DELIVERED_CONSUME_AUTO_ACK),
            delivered_consume_manual_ack: metrics::counter!(MESSAGES_DELIVERED_CONSUME_MANUAL_ACK),
            delivered_get_auto_ack: metrics::counter!(MESSAGES_DELIVERED_GET_AUTO_ACK),
            delivered_get_manual_ack: metrics::counter!(MESSAGES_DELIVERED_GET_MANUAL_ACK),
            get_empty: metrics::counter!(MESSAGES_GET_EMPTY),
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

pub const CONNECTIONS: &str = "rabbitmq_connections";
pub const CHANNELS: &str = "rabbitmq_channels";
pub const CONSUMERS: &str = "rabbitmq_consumers";
pub const MESSAGES_RECEIVED: &str = "rabbitmq_global_messages_received_total";
pub const MESSAGES_RECEIVED_CONFIRM: &str = "rabbitmq_global_messages_received_confirm_total";
pub const MESSAGES_DELIVERED_CONSUME_AUTO_ACK: &str =
    "rabbitmq_global_messages_delivered_consume_auto_ack_total";
pub const MESSAGES_DELIVERED_CONSUME_MANUAL_ACK: &str =
    "rabbitmq_global_messages_delivered_consume_manual_ack_total";
pub const MESSAGES_DELIVERED_GET_AUTO_ACK: &str =
    "rabbitmq_global_messages_delivered_get_auto_ack_total";
pub const MESSAGES_DELIVERED_GET_MANUAL_ACK: &str =
    "rabbitmq_global_messages_delivered_get_manual_ack_total";
pub const MESSAGES_GET_EMPTY: &str = "rabbitmq_global_messages_get_empty_total";
pub const MESSAGES_ROUTED: &str = "rabbitmq_global_messages_routed_total";
pub const MESSAGES_UNROUTABLE_RETURNED: &str = "rabbitmq_global_messages_unroutable_returned_total";
pub const MESSAGES_UNROUTABLE_DROPPED: &str = "rabbitmq_global_messages_unroutable_dropped_total";
pub const MESSAGES_DELIVERED: &str = "rabbitmq_global_messages_delivered_total";
pub const MESSAGES_REDELIVERED: &str = "rabbitmq_global_messages_redelivered_total";
pub const MESSAGES_CONFIRMED: &str = "rabbitmq_global_messages_confirmed_total";
pub const MESSAGES_ACKNOWLEDGED: &str = "rabbitmq_global_messages_acknowledged_total";
pub const CONNECTIONS_OPENED: &str = "rabbitmq_connections_opened_total";
pub const CONNECTIONS_CLOSED: &str = "rabbitmq_connections_closed_total";
pub const CHANNELS_OPENED: &str = "rabbitmq_channels_opened_total";
pub const CHANNELS_CLOSED: &str = "rabbitmq_channels_closed_total";
pub const QUEUES_DECLARED: &str = "rabbitmq_queues_declared_total";
pub const QUEUES_CREATED: &str = "rabbitmq_queues_created_total";
pub const QUEUES_DELETED: &str = "rabbitmq_queues_deleted_total";
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
        MESSAGES_RECEIVED_CONFIRM,
        MetricKind::Counter,
        Unit::Count,
        "Messages published on channels in confirm mode.",
    ),
    metric(
        MESSAGES_DELIVERED_CONSUME_AUTO_ACK,
        MetricKind::Counter,
        Unit::Count,
        "Messages delivered to consumers in automatic acknowledgement mode.",
    ),
    metric(
        MESSAGES_DELIVERED_CONSUME_MANUAL_ACK,
        MetricKind::Counter,
        Unit::Count,
        "Messages delivered to consumers in manual acknowledgement mode.",
    ),
    metric(
        MESSAGES_DELIVERED_GET_AUTO_ACK,
        MetricKind::Counter,
        Unit::Count,
        "Messages fetched with basic.get in automatic acknowledgement mode.",
    ),
    metric(
        MESSAGES_DELIVERED_GET_MANUAL_ACK,
        MetricKind::Counter,
        Unit::Count,
        "Messages fetched with basic.get in manual acknowledgement mode.",
    ),
    metric(
        MESSAGES_GET_EMPTY,
        MetricKind::Counter,
        Unit::Count,
        "basic.get operations on an empty queue.",
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
        CONNECTIONS_OPENED,
        MetricKind::Counter,
        Unit::Count,
        "AMQP connections opened (handshake finished).",
    ),
    metric(
        CONNECTIONS_CLOSED,
        MetricKind::Counter,
        Unit::Count,
        "AMQP connections closed after opening.",
    ),
    metric(
        CHANNELS_OPENED,
        MetricKind::Counter,
        Unit::Count,
        "AMQP channels opened.",
    ),
    metric(
        CHANNELS_CLOSED,
        MetricKind::Counter,
        Unit::Count,
        "AMQP channels closed.",
    ),
    metric(
        QUEUES_DECLARED,
        MetricKind::Counter,
        Unit::Count,
        "Successful queue.declare methods, of new and existing queues.",
    ),
    metric(
        QUEUES_CREATED,
        MetricKind::Counter,
        Unit::Count,
        "Queues created by queue.declare.",
    ),
    metric(
        QUEUES_DELETED,
        MetricKind::Counter,
        Unit::Count,
        "Queues deleted (queue.delete, auto-delete, exclusive owners closing).",
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
