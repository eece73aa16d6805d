//! Names of the families computed at scrape time ([`super::scrape`]): the ones existing
//! dashboards query under the originals' names (kafka_exporter for Grafana 7589, RabbitMQ's
//! Prometheus plugin for RabbitMQ-Overview 10991, rocketmq-exporter for 10477), and the process
//! figures every Prometheus client library exports. Each name keeps the labels those
//! dashboards select on; values come from broker state, never from client input.
//! kafka_exporter's `kafka_consumergroup_lag_sum` and `_current_offset_sum` are left out: a
//! gauge ending in `_sum` breaks the exposition rules promtool checks (it reads as a summary's
//! sum); dashboards sum `kafka_consumergroup_lag` by group and topic instead.

use metrics::Unit;

use super::{MetricDescription, MetricKind};
use tributary_api::telemetry::metric;

use MetricKind::{Counter, Gauge};

/// kafka_exporter: number of brokers (always 1 here).
pub const KAFKA_BROKERS: &str = "kafka_brokers";
/// kafka_exporter: partitions of a topic, by `topic`.
pub const KAFKA_TOPIC_PARTITIONS: &str = "kafka_topic_partitions";
/// kafka_exporter: high watermark, by `topic`, `partition`.
pub const KAFKA_PARTITION_CURRENT_OFFSET: &str = "kafka_topic_partition_current_offset";
/// kafka_exporter: log start offset, by `topic`, `partition`.
pub const KAFKA_PARTITION_OLDEST_OFFSET: &str = "kafka_topic_partition_oldest_offset";
/// kafka_exporter: committed offset, by `consumergroup`, `topic`, `partition`.
pub const KAFKA_GROUP_CURRENT_OFFSET: &str = "kafka_consumergroup_current_offset";
/// kafka_exporter: high watermark minus committed offset, by `consumergroup`, `topic`, `partition`.
pub const KAFKA_GROUP_LAG: &str = "kafka_consumergroup_lag";

/// RabbitMQ: always 1; labels `rabbitmq_node`, `rabbitmq_cluster`,
/// `rabbitmq_cluster_permanent_id`, `rabbitmq_endpoint` (dashboards join on it).
pub const RABBITMQ_IDENTITY_INFO: &str = "rabbitmq_identity_info";
/// RabbitMQ: always 1; labels name the versions.
pub const RABBITMQ_BUILD_INFO: &str = "rabbitmq_build_info";
/// RabbitMQ: queues of all vhosts.
pub const RABBITMQ_QUEUES: &str = "rabbitmq_queues";
/// RabbitMQ: ready messages, by `vhost`, `queue`.
pub const RABBITMQ_QUEUE_MESSAGES_READY: &str = "rabbitmq_queue_messages_ready";
/// RabbitMQ: delivered and unacknowledged messages, by `vhost`, `queue`.
pub const RABBITMQ_QUEUE_MESSAGES_UNACKED: &str = "rabbitmq_queue_messages_unacked";
/// RabbitMQ: ready plus unacknowledged, by `vhost`, `queue`.
pub const RABBITMQ_QUEUE_MESSAGES: &str = "rabbitmq_queue_messages";
pub const RABBITMQ_PROCESS_OPEN_FDS: &str = "rabbitmq_process_open_fds";
pub const RABBITMQ_PROCESS_MAX_FDS: &str = "rabbitmq_process_max_fds";
pub const RABBITMQ_PROCESS_RESIDENT_MEMORY: &str = "rabbitmq_process_resident_memory_bytes";
/// RabbitMQ: the memory alarm's threshold (`amqp.memory_high_watermark`, else physical memory).
pub const RABBITMQ_MEMORY_LIMIT: &str = "rabbitmq_resident_memory_limit_bytes";
/// RabbitMQ: free bytes on the data directory's filesystem.
pub const RABBITMQ_DISK_AVAILABLE: &str = "rabbitmq_disk_space_available_bytes";
/// RabbitMQ: the disk alarm's threshold (`amqp.disk_free_limit`).
pub const RABBITMQ_DISK_LIMIT: &str = "rabbitmq_disk_space_available_limit_bytes";

/// rocketmq-exporter: sum of a topic's queue high watermarks (ordinary topics), by `cluster`,
/// `broker`, `topic`.
pub const ROCKETMQ_PRODUCER_OFFSET: &str = "rocketmq_producer_offset";
/// rocketmq-exporter: the same for `%RETRY%` topics, by `cluster`, `broker`, `topic`.
pub const ROCKETMQ_TOPIC_RETRY_OFFSET: &str = "rocketmq_topic_retry_offset";
/// rocketmq-exporter: the same for `%DLQ%` topics, by `cluster`, `broker`, `group`.
pub const ROCKETMQ_TOPIC_DLQ_OFFSET: &str = "rocketmq_topic_dlq_offset";

pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
pub const PROCESS_THREADS: &str = "process_threads";

/// Every family above.
pub static CATALOG: &[MetricDescription] = &[
    metric(
        KAFKA_BROKERS,
        Gauge,
        Unit::Count,
        "Number of brokers in the cluster (kafka_exporter).",
    ),
    metric(
        KAFKA_TOPIC_PARTITIONS,
        Gauge,
        Unit::Count,
        "Number of partitions of a topic (kafka_exporter).",
    ),
    metric(
        KAFKA_PARTITION_CURRENT_OFFSET,
        Gauge,
        Unit::Count,
        "High watermark of a partition: the offset the next record gets (kafka_exporter).",
    ),
    metric(
        KAFKA_PARTITION_OLDEST_OFFSET,
        Gauge,
        Unit::Count,
        "Oldest offset still stored in a partition (kafka_exporter).",
    ),
    metric(
        KAFKA_GROUP_CURRENT_OFFSET,
        Gauge,
        Unit::Count,
        "Offset a consumer group committed on a partition (kafka_exporter; Kafka and RocketMQ groups share offsets).",
    ),
    metric(
        KAFKA_GROUP_LAG,
        Gauge,
        Unit::Count,
        "Records between a consumer group's committed offset and the high watermark (kafka_exporter).",
    ),
    metric(
        RABBITMQ_IDENTITY_INFO,
        Gauge,
        Unit::Count,
        "Always 1; the labels name the node and cluster (RabbitMQ).",
    ),
    metric(
        RABBITMQ_BUILD_INFO,
        Gauge,
        Unit::Count,
        "Always 1; the labels name the versions (RabbitMQ).",
    ),
    metric(
        RABBITMQ_QUEUES,
        Gauge,
        Unit::Count,
        "Queues of all vhosts (RabbitMQ).",
    ),
    metric(
        RABBITMQ_QUEUE_MESSAGES_READY,
        Gauge,
        Unit::Count,
        "Messages ready to be delivered, by vhost and queue (RabbitMQ).",
    ),
    metric(
        RABBITMQ_QUEUE_MESSAGES_UNACKED,
        Gauge,
        Unit::Count,
        "Messages delivered and not yet acknowledged, by vhost and queue (RabbitMQ).",
    ),
    metric(
        RABBITMQ_QUEUE_MESSAGES,
        Gauge,
        Unit::Count,
        "Ready and unacknowledged messages, by vhost and queue (RabbitMQ).",
    ),
    metric(
        RABBITMQ_PROCESS_OPEN_FDS,
        Gauge,
        Unit::Count,
        "Open file descriptors (RabbitMQ).",
    ),
    metric(
        RABBITMQ_PROCESS_MAX_FDS,
        Gauge,
        Unit::Count,
        "Open file descriptors limit (RabbitMQ).",
    ),
    metric(
        RABBITMQ_PROCESS_RESIDENT_MEMORY,
        Gauge,
        Unit::Bytes,
        "Resident memory of the broker process (RabbitMQ).",
    ),
    metric(
        RABBITMQ_MEMORY_LIMIT,
        Gauge,
        Unit::Bytes,
        "Resident memory above which publishers are blocked: amqp.memory_high_watermark, or physical memory when it is off (RabbitMQ).",
    ),
    metric(
        RABBITMQ_DISK_AVAILABLE,
        Gauge,
        Unit::Bytes,
        "Free disk space on the data directory's filesystem (RabbitMQ).",
    ),
    metric(
        RABBITMQ_DISK_LIMIT,
        Gauge,
        Unit::Bytes,
        "Free disk space below which publishers are blocked: amqp.disk_free_limit (RabbitMQ).",
    ),
    metric(
        ROCKETMQ_PRODUCER_OFFSET,
        Gauge,
        Unit::Count,
        "TopicOffset: sum of the topic's queue high watermarks (rocketmq-exporter).",
    ),
    metric(
        ROCKETMQ_TOPIC_RETRY_OFFSET,
        Gauge,
        Unit::Count,
        "TopicRetryOffset: sum of a %RETRY% topic's queue high watermarks (rocketmq-exporter).",
    ),
    metric(
        ROCKETMQ_TOPIC_DLQ_OFFSET,
        Gauge,
        Unit::Count,
        "TopicDLQOffset: sum of a group's %DLQ% topic queue high watermarks (rocketmq-exporter).",
    ),
    metric(
        PROCESS_CPU_SECONDS,
        Counter,
        Unit::Seconds,
        "Total user and system CPU time spent in seconds.",
    ),
    metric(
        PROCESS_OPEN_FDS,
        Gauge,
        Unit::Count,
        "Number of open file descriptors.",
    ),
    metric(
        PROCESS_MAX_FDS,
        Gauge,
        Unit::Count,
        "Maximum number of open file descriptors.",
    ),
    metric(
        PROCESS_RESIDENT_MEMORY,
        Gauge,
        Unit::Bytes,
        "Resident memory size in bytes.",
    ),
    metric(
        PROCESS_VIRTUAL_MEMORY,
        Gauge,
        Unit::Bytes,
        "Virtual memory size in bytes.",
    ),
    metric(
        PROCESS_START_TIME,
        Gauge,
        Unit::Seconds,
        "Start time of the process since unix epoch in seconds.",
    ),
    metric(
        PROCESS_THREADS,
        Gauge,
        Unit::Count,
        "Number of OS threads in the process.",
    ),
];
