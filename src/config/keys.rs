//! The table of configuration keys: the one place that ties a TOML key to its environment
//! variable and its command-line flag. Environment variables are `TRIBUTARY_` plus the key in
//! upper case with `.` as `_`, except the two everyone types: `TRIBUTARY_DURABILITY`
//! (`storage.durability`) and `TRIBUTARY_LOG` (`log.filter`).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use super::{Config, ConfigError};

/// Where a value that overrides the file came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An environment variable, by name.
    Env(&'static str),
    /// A command-line flag, by name (`--kafka-port`).
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Dotted TOML path (`kafka.port`).
    pub name: &'static str,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// The command-line flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// What a valid value looks like, for error messages.
    pub expected: &'static str,
    /// Parses `text` into the config; `None` when it does not parse.
    set: fn(&mut Config, &str) -> Option<()>,
}

impl KeySpec {
    /// Sets this key from text given by `origin`.
    pub fn apply(
        &self,
        config: &mut Config,
        text: &str,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        (self.set)(config, text).ok_or_else(|| ConfigError::BadValue {
            key: self.name,
            origin,
            value: text.to_owned(),
            expected: self.expected,
        })
    }
}

/// Finds a key by its dotted name.
pub(super) fn find(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|key| key.name == name)
}

fn parse<T: FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

/// A comma-separated list; empty means none.
fn names(text: &str) -> Option<Vec<String>> {
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// An empty advertised host means "derive it from `bind`" again.
fn optional_host(text: &str) -> Option<Option<String>> {
    let host = text.trim();
    Some((!host.is_empty()).then(|| host.to_owned()))
}

/// Any text; empty means unset.
fn optional_text(text: &str) -> Option<Option<String>> {
    optional_host(text)
}

/// An empty port means "no such listener".
fn optional_port(text: &str) -> Option<Option<u16>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(None);
    }
    text.parse().ok().map(Some)
}

/// An empty path means unset.
fn optional_path(text: &str) -> Option<Option<std::path::PathBuf>> {
    optional_host(text).map(|text| text.map(Into::into))
}

const PORT: &str = "a port number (0-65535)";
const OPTIONAL_PORT: &str = "a port number (0-65535), empty for none";
const BOOL: &str = "`true` or `false`";
const COUNT: &str = "a non-negative integer";
const SIGNED: &str = "an integer (-1 for unlimited)";

macro_rules! key {
    ($name:literal, $env:literal, $flag:expr, $expected:expr, $parser:ident, $($field:ident).+) => {
        KeySpec {
            name: $name,
            env: $env,
            flag: $flag,
            expected: $expected,
            set: |config, text| {
                config.$($field).+ = $parser(text)?;
                Some(())
            },
        }
    };
}

mod rocketmq;

/// Every key, in the order of the README's reference table.
pub static KEYS: LazyLock<Vec<KeySpec>> =
    LazyLock::new(|| [EARLIER, rocketmq::KEYS, LATER].concat());

/// The keys before RocketMQ's, in the README's order.
static EARLIER: &[KeySpec] = &[
    key!(
        "data_dir",
        "TRIBUTARY_DATA_DIR",
        Some("--data-dir"),
        "a directory path",
        parse,
        data_dir
    ),
    key!(
        "bind",
        "TRIBUTARY_BIND",
        Some("--bind"),
        "an IP address",
        parse,
        bind
    ),
    key!(
        "kafka.enabled",
        "TRIBUTARY_KAFKA_ENABLED",
        None,
        BOOL,
        parse,
        kafka.enabled
    ),
    key!(
        "kafka.port",
        "TRIBUTARY_KAFKA_PORT",
        Some("--kafka-port"),
        PORT,
        parse,
        kafka.port
    ),
    key!(
        "kafka.tls_port",
        "TRIBUTARY_KAFKA_TLS_PORT",
        None,
        OPTIONAL_PORT,
        optional_port,
        kafka.tls_port
    ),
    key!(
        "kafka.advertised_host",
        "TRIBUTARY_KAFKA_ADVERTISED_HOST",
        None,
        "a host name or IP literal",
        optional_host,
        kafka.advertised_host
    ),
    key!(
        "kafka.default_partitions",
        "TRIBUTARY_KAFKA_DEFAULT_PARTITIONS",
        None,
        COUNT,
        parse,
        kafka.default_partitions
    ),
    key!(
        "kafka.auto_create_topics",
        "TRIBUTARY_KAFKA_AUTO_CREATE_TOPICS",
        None,
        BOOL,
        parse,
        kafka.auto_create_topics
    ),
    key!(
        "kafka.max_connections",
        "TRIBUTARY_KAFKA_MAX_CONNECTIONS",
        None,
        COUNT,
        parse,
        kafka.max_connections
    ),
    key!(
        "kafka.max_frame_bytes",
        "TRIBUTARY_KAFKA_MAX_FRAME_BYTES",
        None,
        COUNT,
        parse,
        kafka.max_frame_bytes
    ),
    key!(
        "kafka.sasl_enabled",
        "TRIBUTARY_KAFKA_SASL_ENABLED",
        None,
        BOOL,
        parse,
        kafka.sasl_enabled
    ),
    key!(
        "kafka.authorizer",
        "TRIBUTARY_KAFKA_AUTHORIZER",
        None,
        BOOL,
        parse,
        kafka.authorizer
    ),
    key!(
        "kafka.super_users",
        "TRIBUTARY_KAFKA_SUPER_USERS",
        None,
        "comma-separated user names or User:<name> principals",
        names,
        kafka.super_users
    ),
    key!(
        "kafka.sasl_max_receive_bytes",
        "TRIBUTARY_KAFKA_SASL_MAX_RECEIVE_BYTES",
        None,
        COUNT,
        parse,
        kafka.sasl_max_receive_bytes
    ),
    key!(
        "kafka.connections_max_idle_ms",
        "TRIBUTARY_KAFKA_CONNECTIONS_MAX_IDLE_MS",
        None,
        COUNT,
        parse,
        kafka.connections_max_idle_ms
    ),
    key!(
        "kafka.frame_timeout_ms",
        "TRIBUTARY_KAFKA_FRAME_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        kafka.frame_timeout_ms
    ),
    key!(
        "kafka.group_consumer_heartbeat_interval_ms",
        "TRIBUTARY_KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        None,
        COUNT,
        parse,
        kafka.group_consumer_heartbeat_interval_ms
    ),
    key!(
        "kafka.group_consumer_session_timeout_ms",
        "TRIBUTARY_KAFKA_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        kafka.group_consumer_session_timeout_ms
    ),
    key!(
        "kafka.group_consumer_max_size",
        "TRIBUTARY_KAFKA_GROUP_CONSUMER_MAX_SIZE",
        None,
        COUNT,
        parse,
        kafka.group_consumer_max_size
    ),
    key!(
        "amqp.enabled",
        "TRIBUTARY_AMQP_ENABLED",
        None,
        BOOL,
        parse,
        amqp.enabled
    ),
    key!(
        "amqp.port",
        "TRIBUTARY_AMQP_PORT",
        Some("--amqp-port"),
        PORT,
        parse,
        amqp.port
    ),
    key!(
        "amqp.tls_port",
        "TRIBUTARY_AMQP_TLS_PORT",
        None,
        OPTIONAL_PORT,
        optional_port,
        amqp.tls_port
    ),
    key!(
        "amqp.max_connections",
        "TRIBUTARY_AMQP_MAX_CONNECTIONS",
        None,
        COUNT,
        parse,
        amqp.max_connections
    ),
    key!(
        "amqp.max_frame_bytes",
        "TRIBUTARY_AMQP_MAX_FRAME_BYTES",
        None,
        COUNT,
        parse,
        amqp.max_frame_bytes
    ),
    key!(
        "amqp.max_message_bytes",
        "TRIBUTARY_AMQP_MAX_MESSAGE_BYTES",
        None,
        COUNT,
        parse,
        amqp.max_message_bytes
    ),
    key!(
        "amqp.loopback_users",
        "TRIBUTARY_AMQP_LOOPBACK_USERS",
        None,
        "comma-separated user names",
        names,
        amqp.loopback_users
    ),
    key!(
        "amqp.memory_high_watermark",
        "TRIBUTARY_AMQP_MEMORY_HIGH_WATERMARK",
        None,
        COUNT,
        parse,
        amqp.memory_high_watermark
    ),
    key!(
        "amqp.disk_free_limit",
        "TRIBUTARY_AMQP_DISK_FREE_LIMIT",
        None,
        COUNT,
        parse,
        amqp.disk_free_limit
    ),
    key!(
        "amqp.alarm_check_interval_ms",
        "TRIBUTARY_AMQP_ALARM_CHECK_INTERVAL_MS",
        None,
        COUNT,
        parse,
        amqp.alarm_check_interval_ms
    ),
    key!(
        "amqp.handshake_timeout_ms",
        "TRIBUTARY_AMQP_HANDSHAKE_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        amqp.handshake_timeout_ms
    ),
    key!(
        "amqp.idle_timeout_ms",
        "TRIBUTARY_AMQP_IDLE_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        amqp.idle_timeout_ms
    ),
    key!(
        "amqp.frame_timeout_ms",
        "TRIBUTARY_AMQP_FRAME_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        amqp.frame_timeout_ms
    ),
];

/// The keys after RocketMQ's, in the README's order.
static LATER: &[KeySpec] = &[
    key!(
        "limits.buffer_bytes",
        "TRIBUTARY_LIMITS_BUFFER_BYTES",
        None,
        COUNT,
        parse,
        limits.buffer_bytes
    ),
    key!(
        "limits.send_buffer_bytes",
        "TRIBUTARY_LIMITS_SEND_BUFFER_BYTES",
        None,
        COUNT,
        parse,
        limits.send_buffer_bytes
    ),
    key!(
        "limits.connection_buffer_bytes",
        "TRIBUTARY_LIMITS_CONNECTION_BUFFER_BYTES",
        None,
        COUNT,
        parse,
        limits.connection_buffer_bytes
    ),
    key!(
        "limits.send_timeout_ms",
        "TRIBUTARY_LIMITS_SEND_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        limits.send_timeout_ms
    ),
    key!(
        "http.enabled",
        "TRIBUTARY_HTTP_ENABLED",
        None,
        BOOL,
        parse,
        http.enabled
    ),
    key!(
        "http.port",
        "TRIBUTARY_HTTP_PORT",
        Some("--http-port"),
        PORT,
        parse,
        http.port
    ),
    key!(
        "http.max_connections",
        "TRIBUTARY_HTTP_MAX_CONNECTIONS",
        None,
        COUNT,
        parse,
        http.max_connections
    ),
    key!(
        "http.admin_enabled",
        "TRIBUTARY_HTTP_ADMIN_ENABLED",
        None,
        BOOL,
        parse,
        http.admin_enabled
    ),
    key!(
        "http.max_body_bytes",
        "TRIBUTARY_HTTP_MAX_BODY_BYTES",
        None,
        COUNT,
        parse,
        http.max_body_bytes
    ),
    key!(
        "http.tls",
        "TRIBUTARY_HTTP_TLS",
        None,
        BOOL,
        parse,
        http.tls
    ),
    key!(
        "storage.segment_bytes",
        "TRIBUTARY_STORAGE_SEGMENT_BYTES",
        None,
        COUNT,
        parse,
        storage.segment_bytes
    ),
    key!(
        "storage.segment_ms",
        "TRIBUTARY_STORAGE_SEGMENT_MS",
        None,
        COUNT,
        parse,
        storage.segment_ms
    ),
    key!(
        "storage.retention_ms",
        "TRIBUTARY_STORAGE_RETENTION_MS",
        None,
        SIGNED,
        parse,
        storage.retention_ms
    ),
    key!(
        "storage.retention_bytes",
        "TRIBUTARY_STORAGE_RETENTION_BYTES",
        None,
        SIGNED,
        parse,
        storage.retention_bytes
    ),
    key!(
        "storage.max_open_files",
        "TRIBUTARY_STORAGE_MAX_OPEN_FILES",
        None,
        COUNT,
        parse,
        storage.max_open_files
    ),
    key!(
        "storage.max_message_bytes",
        "TRIBUTARY_STORAGE_MAX_MESSAGE_BYTES",
        None,
        COUNT,
        parse,
        storage.max_message_bytes
    ),
    key!(
        "storage.durability",
        "TRIBUTARY_DURABILITY",
        Some("--durability"),
        "`always`, `never` or `interval:<ms>` with ms > 0",
        parse,
        storage.durability
    ),
    key!(
        "storage.index_interval_bytes",
        "TRIBUTARY_STORAGE_INDEX_INTERVAL_BYTES",
        None,
        COUNT,
        parse,
        storage.index_interval_bytes
    ),
    key!(
        "storage.retention_check_interval_ms",
        "TRIBUTARY_STORAGE_RETENTION_CHECK_INTERVAL_MS",
        None,
        COUNT,
        parse,
        storage.retention_check_interval_ms
    ),
    key!(
        "storage.cleaner_interval_ms",
        "TRIBUTARY_STORAGE_CLEANER_INTERVAL_MS",
        None,
        COUNT,
        parse,
        storage.cleaner_interval_ms
    ),
    key!(
        "storage.cleaner_bytes_per_second",
        "TRIBUTARY_STORAGE_CLEANER_BYTES_PER_SECOND",
        None,
        COUNT,
        parse,
        storage.cleaner_bytes_per_second
    ),
    key!(
        "limits.max_partitions_per_topic",
        "TRIBUTARY_LIMITS_MAX_PARTITIONS_PER_TOPIC",
        None,
        COUNT,
        parse,
        limits.max_partitions_per_topic
    ),
    key!(
        "limits.max_partitions",
        "TRIBUTARY_LIMITS_MAX_PARTITIONS",
        None,
        COUNT,
        parse,
        limits.max_partitions
    ),
    key!(
        "shutdown.drain_timeout_ms",
        "TRIBUTARY_SHUTDOWN_DRAIN_TIMEOUT_MS",
        None,
        COUNT,
        parse,
        shutdown.drain_timeout_ms
    ),
    key!(
        "tls.cert_file",
        "TRIBUTARY_TLS_CERT_FILE",
        None,
        "a PEM file path, empty for none",
        optional_path,
        tls.cert_file
    ),
    key!(
        "tls.key_file",
        "TRIBUTARY_TLS_KEY_FILE",
        None,
        "a PEM file path, empty for none",
        optional_path,
        tls.key_file
    ),
    key!(
        "tls.ca_file",
        "TRIBUTARY_TLS_CA_FILE",
        None,
        "a PEM file path, empty for none",
        optional_path,
        tls.ca_file
    ),
    key!(
        "tls.client_auth",
        "TRIBUTARY_TLS_CLIENT_AUTH",
        None,
        "`none`, `optional` or `required`",
        parse,
        tls.client_auth
    ),
    key!(
        "cluster.metadata_url",
        "TRIBUTARY_CLUSTER_METADATA_URL",
        Some("--metadata-url"),
        "a PostgreSQL URL (postgres://user@host:port/db), empty for the local engine",
        optional_text,
        cluster.metadata_url
    ),
    key!(
        "cluster.objects_url",
        "TRIBUTARY_CLUSTER_OBJECTS_URL",
        Some("--objects-url"),
        "s3://bucket/prefix",
        optional_text,
        cluster.objects_url
    ),
    key!(
        "cluster.broker_id",
        "TRIBUTARY_CLUSTER_BROKER_ID",
        Some("--broker-id"),
        COUNT,
        parse,
        cluster.broker_id
    ),
    key!(
        "cluster.advertised_host",
        "TRIBUTARY_CLUSTER_ADVERTISED_HOST",
        None,
        "a host name or IP literal",
        optional_host,
        cluster.advertised_host
    ),
    key!(
        "cluster.internal_port",
        "TRIBUTARY_CLUSTER_INTERNAL_PORT",
        None,
        PORT,
        parse,
        cluster.internal_port
    ),
    key!(
        "cluster.flush_interval_ms",
        "TRIBUTARY_CLUSTER_FLUSH_INTERVAL_MS",
        None,
        COUNT,
        parse,
        cluster.flush_interval_ms
    ),
    key!(
        "cluster.flush_bytes",
        "TRIBUTARY_CLUSTER_FLUSH_BYTES",
        None,
        COUNT,
        parse,
        cluster.flush_bytes
    ),
    key!(
        "cluster.read_cache_bytes",
        "TRIBUTARY_CLUSTER_READ_CACHE_BYTES",
        None,
        COUNT,
        parse,
        cluster.read_cache_bytes
    ),
    key!(
        "cluster.lease_ms",
        "TRIBUTARY_CLUSTER_LEASE_MS",
        Some("--lease-ms"),
        COUNT,
        parse,
        cluster.lease_ms
    ),
    key!(
        "cluster.lease_renew_ms",
        "TRIBUTARY_CLUSTER_LEASE_RENEW_MS",
        Some("--lease-renew-ms"),
        COUNT,
        parse,
        cluster.lease_renew_ms
    ),
    key!(
        "cluster.object_gc_grace_ms",
        "TRIBUTARY_CLUSTER_OBJECT_GC_GRACE_MS",
        None,
        COUNT,
        parse,
        cluster.object_gc_grace_ms
    ),
    key!(
        "cluster.merge_object_bytes",
        "TRIBUTARY_CLUSTER_MERGE_OBJECT_BYTES",
        None,
        COUNT,
        parse,
        cluster.merge_object_bytes
    ),
    key!(
        "cluster.merge_min_age_ms",
        "TRIBUTARY_CLUSTER_MERGE_MIN_AGE_MS",
        None,
        COUNT,
        parse,
        cluster.merge_min_age_ms
    ),
    key!(
        "log.filter",
        "TRIBUTARY_LOG",
        Some("--log"),
        "a tracing filter",
        parse,
        log.filter
    ),
];
