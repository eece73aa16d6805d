//! Every metric name Tributary exports, in one place. Labels are bounded: protocol, api or
//! method, outcome, topic and partition; never a client id or address. Counters end in `_total`,
//! durations are histograms in seconds ending in `_seconds`.

/// Bytes appended to partitions, per topic.
pub const STORAGE_APPENDED_BYTES: &str = "tributary_storage_appended_bytes_total";
/// Records appended to partitions, per topic.
pub const STORAGE_APPENDED_RECORDS: &str = "tributary_storage_appended_records_total";
/// fsync calls made by the log.
pub const STORAGE_FSYNCS: &str = "tributary_storage_fsyncs_total";
/// Latency of one fsync of a segment file.
pub const STORAGE_FSYNC_SECONDS: &str = "tributary_storage_fsync_duration_seconds";
/// Segments per partition (gauge; labels topic, partition).
pub const STORAGE_PARTITION_SEGMENTS: &str = "tributary_storage_partition_segments";
/// Bytes stored per partition (gauge; labels topic, partition).
pub const STORAGE_PARTITION_BYTES: &str = "tributary_storage_partition_bytes";
/// Time the last start-up recovery took (gauge, seconds).
pub const STORAGE_RECOVERY_SECONDS: &str = "tributary_storage_recovery_duration_seconds";
/// Segments removed by retention or by log-start moves.
pub const STORAGE_SEGMENTS_DELETED: &str = "tributary_storage_segments_deleted_total";
/// Partitions poisoned by a failed write or fsync (gauge).
pub const STORAGE_POISONED_PARTITIONS: &str = "tributary_storage_poisoned_partitions";

/// Open connections per protocol (gauge).
pub const CONNECTIONS_ACTIVE: &str = "tributary_connections_active";
/// Connections accepted per protocol.
pub const CONNECTIONS_ACCEPTED: &str = "tributary_connections_accepted_total";
/// Connections refused per protocol because the listener's cap was reached.
pub const CONNECTIONS_REFUSED: &str = "tributary_connections_refused_total";
/// Failed accepts per protocol and `reason` (`emfile`, `enfile`, `enobufs`, `enomem`, `other`).
pub const ACCEPT_ERRORS: &str = "tributary_accept_errors_total";

/// Messages ready for delivery per queue (gauge; label queue).
pub const QUEUE_MESSAGES_READY: &str = "tributary_queue_messages_ready";
/// Messages delivered and awaiting ack per queue (gauge; label queue).
pub const QUEUE_MESSAGES_UNACKED: &str = "tributary_queue_messages_unacked";

/// Delayed messages the scheduler could not append when due and will never retry, by `reason`
/// (`unknown_target`: the topic, partition or queue was deleted; `refused`: the engine refuses
/// the batch). RabbitMQ likewise drops a delayed message its exchange routes nowhere.
pub const SCHEDULED_DROPPED: &str = "tributary_scheduled_messages_dropped_total";

/// Always 1; labels `version` carry the build (gauge).
pub const BUILD_INFO: &str = "tributary_build_info";
/// Requests served by the HTTP endpoint, by `endpoint` (`metrics`, `health`, `other`) and `status`.
pub const HTTP_REQUESTS: &str = "tributary_http_requests_total";
