//! The `[cluster]` section: the cloud engine's settings. Invariant: without `metadata_url` none
//! of the other keys has any effect and the broker runs on its local data directory.

use serde::{Deserialize, Serialize};

/// [`Config::kafka_max_pipelined_produces`] on the cloud engine: a 250 ms flush interval at one
/// request per partition per 5 ms linger is 50 requests per partition, so this covers about 20
/// partitions per connection per flush.
pub const CLOUD_PIPELINED_PRODUCES: usize = 1024;

/// The cloud engine (`src/cloud`): set `metadata_url` to run on PostgreSQL and S3-compatible
/// object storage instead of the local data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// PostgreSQL URL of the metadata store; unset keeps the embedded local engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
    /// Where log objects go, `s3://bucket/prefix`; endpoint, region and credentials come from
    /// the usual `AWS_*` variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_url: Option<String>,
    /// This broker's id, unique among the brokers sharing `metadata_url`.
    pub broker_id: u32,
    /// Host other brokers and clients reach this broker at; defaults to the Kafka advertised host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    /// Port of the internal RPC other brokers forward queue calls and appends to (on the
    /// listeners' bind address); 0 lets the OS pick one. Advertised in PostgreSQL.
    pub internal_port: u16,
    /// Longest time an accepted batch waits before its object is written.
    pub flush_interval_ms: u64,
    /// Object size that triggers a flush before the interval ends.
    pub flush_bytes: u64,
    /// Memory for object byte ranges kept for reads.
    pub read_cache_bytes: u64,
    /// How long this broker's membership lease lasts without renewal: a broker that stops
    /// renewing loses its partitions to the others after this long.
    pub lease_ms: u64,
    /// How often the lease is renewed (and new topics and leadership changes are picked up).
    pub lease_renew_ms: u64,
    /// How long a log object no batch refers to any more is kept before it is deleted (readers
    /// that looked its coordinates up just before may still GET it meanwhile).
    pub object_gc_grace_ms: u64,
    /// Log objects smaller than this are merged into larger ones once older than
    /// `merge_min_age_ms`; 0 turns merging off.
    pub merge_object_bytes: u64,
    /// How old an object must be before it is merged.
    pub merge_min_age_ms: u64,
}

impl ClusterConfig {
    /// Whether the cloud engine replaces the local one.
    pub fn enabled(&self) -> bool {
        self.metadata_url.is_some()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            metadata_url: None,
            objects_url: None,
            broker_id: 0,
            advertised_host: None,
            internal_port: 0,
            flush_interval_ms: 250,
            flush_bytes: 8 << 20,
            read_cache_bytes: 64 << 20,
            lease_ms: 10_000,
            lease_renew_ms: 2_000,
            object_gc_grace_ms: 600_000,
            merge_object_bytes: 1 << 20,
            merge_min_age_ms: 60_000,
        }
    }
}
