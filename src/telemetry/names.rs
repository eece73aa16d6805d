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
/// Log cleaner passes that cleaned a partition, per topic.
pub const STORAGE_CLEANER_PASSES: &str = "tributary_storage_cleaner_passes_total";
/// Bytes of log the cleaner read (the segments of its passes), per topic.
pub const STORAGE_CLEANER_BYTES: &str = "tributary_storage_cleaner_cleaned_bytes_total";
/// Bytes the cleaner's rewrites freed, per topic.
pub const STORAGE_CLEANER_REMOVED_BYTES: &str = "tributary_storage_cleaner_removed_bytes_total";
/// Transaction markers the cleaner removed (their transactions had no record left), per topic.
pub const STORAGE_CLEANER_REMOVED_MARKERS: &str = "tributary_storage_cleaner_removed_markers_total";
/// Cleaner passes that failed, per topic.
pub const STORAGE_CLEANER_ERRORS: &str = "tributary_storage_cleaner_errors_total";
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
/// Failed TLS handshakes per protocol and `reason` (see `server::tls::handshake::Failure`).
pub const TLS_HANDSHAKE_FAILURES: &str = "tributary_tls_handshake_failures_total";

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

// The cloud engine's counters (read from its stats at scrape time; absent on the local engine).
/// Log objects PUT (one per flush).
pub const CLOUD_OBJECT_PUTS: &str = "tributary_cloud_object_puts_total";
/// Bytes in log objects PUT.
pub const CLOUD_OBJECT_PUT_BYTES: &str = "tributary_cloud_object_put_bytes_total";
/// Ranged object GETs (read-cache misses).
pub const CLOUD_OBJECT_GETS: &str = "tributary_cloud_object_gets_total";
/// Reads answered from the byte-range cache.
pub const CLOUD_READ_CACHE_HITS: &str = "tributary_cloud_read_cache_hits_total";
/// Flushes that wrote an object, successful or not.
pub const CLOUD_FLUSHES: &str = "tributary_cloud_flushes_total";
/// Flushes whose PUT or commit failed (their batches were refused).
pub const CLOUD_FAILED_FLUSHES: &str = "tributary_cloud_failed_flushes_total";
/// PostgreSQL transactions committed by flushes.
pub const CLOUD_FLUSH_TRANSACTIONS: &str = "tributary_cloud_flush_transactions_total";
/// Batches committed.
pub const CLOUD_BATCHES: &str = "tributary_cloud_batches_total";
/// Notifications of other brokers' commits and topic changes received.
pub const CLOUD_NOTIFICATIONS: &str = "tributary_cloud_notifications_total";
/// Time of one object PUT (a flush's or a merge's object).
pub const CLOUD_OBJECT_PUT_SECONDS: &str = "tributary_cloud_object_put_duration_seconds";
/// Time of one ranged object GET (read-cache misses).
pub const CLOUD_OBJECT_GET_SECONDS: &str = "tributary_cloud_object_get_duration_seconds";
/// Bytes read by object GETs.
pub const CLOUD_OBJECT_GET_BYTES: &str = "tributary_cloud_object_get_bytes_total";
/// PostgreSQL operations: one per loan of a pooled connection (its statements and round trips).
pub const CLOUD_PG_OPERATIONS: &str = "tributary_cloud_pg_operations_total";
/// How long an operation held its PostgreSQL connection (statements, round trips, commit).
pub const CLOUD_PG_OPERATION_SECONDS: &str = "tributary_cloud_pg_operation_duration_seconds";
/// How long an operation waited for a free pooled connection.
pub const CLOUD_PG_POOL_WAIT_SECONDS: &str = "tributary_cloud_pg_pool_wait_duration_seconds";
/// AMQP and RocketMQ appends forwarded to the broker leading their partition.
pub const CLOUD_FORWARDED_APPENDS: &str = "tributary_cloud_forwarded_appends_total";
/// Partitions whose log start retention moved.
pub const CLOUD_RETENTION_TRIMS: &str = "tributary_cloud_retention_trims_total";
/// Log objects deleted by the object GC.
pub const CLOUD_OBJECTS_DELETED: &str = "tributary_cloud_objects_deleted_total";
/// Bytes of the log objects deleted.
pub const CLOUD_OBJECT_BYTES_DELETED: &str = "tributary_cloud_object_bytes_deleted_total";
/// Maintenance passes (retention, object GC) that failed.
pub const CLOUD_MAINTENANCE_FAILURES: &str = "tributary_cloud_maintenance_failures_total";
/// Small log objects merged into larger ones (the old objects then go to the GC).
pub const CLOUD_OBJECTS_MERGED: &str = "tributary_cloud_objects_merged_total";
/// Bytes copied into merged objects.
pub const CLOUD_MERGE_BYTES: &str = "tributary_cloud_merge_rewritten_bytes_total";
/// Scheduled appends (delay levels, AMQP delayed retries) this broker carried out.
pub const CLOUD_SCHEDULED_FIRED: &str = "tributary_cloud_scheduled_fired_total";
/// Scheduled appends pending in PostgreSQL (every broker's), as of this broker's last look.
pub const CLOUD_SCHEDULED_PENDING: &str = "tributary_cloud_scheduled_pending";
/// 1 while this broker holds its membership lease.
pub const CLOUD_LEASE_HELD: &str = "tributary_cloud_lease_held";
