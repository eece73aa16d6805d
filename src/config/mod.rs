//! The broker's configuration: one typed tree, read from four layers.
//!
//! Precedence, highest first: command-line flags, `TRIBUTARY_*` environment variables, the TOML
//! file (`--config FILE` or `TRIBUTARY_CONFIG`), the built-in defaults (ARCHITECTURE §7). Every
//! key is listed once in [`keys::KEYS`] with its environment variable and flag, so the layers
//! cannot drift apart.
//!
//! Invariants worth naming:
//! - unknown keys are errors in the file (`deny_unknown_fields`) and for flags (the key table);
//!   an unknown `TRIBUTARY_*` variable is reported by [`unknown_env_vars`] (the binary warns,
//!   since the environment is shared with other tools);
//! - a [`Config`] returned by [`Config::load`] is validated and resolved: derived values (the
//!   Kafka advertised host) are filled in, so `tributary config` prints what actually applies.

mod cluster;
mod keys;
mod redact;
mod rocketmq;
mod tls;
mod validate;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tributary_api::{ConnectionTimeouts, Durability, FrameLimits, MemoryBudget, SendBudget};

use crate::broker::{BrokerSettings, LogDefaults, PartitionLimits};

pub use cluster::{CLOUD_PIPELINED_PRODUCES, ClusterConfig};
pub use keys::{KEYS, KeySpec, Origin};
pub use redact::redact_password;
pub use rocketmq::RocketMqConfig;
pub use tls::{ClientAuth, RocketMqTls, TlsConfig};
pub use validate::{MAX_FRAME_BYTES, MIN_FRAME_BYTES, MIN_SEGMENT_BYTES, Problem};

/// Environment variable naming the TOML file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "TRIBUTARY_CONFIG";

/// Why the configuration could not be loaded; every variant names the offending key or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{origin} sets `{key}` to `{value}`, expected {expected}")]
    BadValue {
        key: &'static str,
        origin: Origin,
        value: String,
        expected: &'static str,
    },
    #[error("`{key}` {problem}")]
    Invalid { key: &'static str, problem: Problem },
}

/// The whole configuration; the TOML file has exactly this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Holds the segments and the metadata store.
    pub data_dir: PathBuf,
    /// Address every listener binds to.
    pub bind: IpAddr,
    pub kafka: KafkaConfig,
    pub amqp: AmqpConfig,
    pub rocketmq: RocketMqConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub cluster: ClusterConfig,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub enabled: bool,
    pub port: u16,
    /// A second listener speaking TLS (Kafka `SSL`, or `SASL_SSL` with `sasl_enabled`);
    /// none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// Host put in Metadata responses; defaults to the bind address as an IPv4 literal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    /// Partitions of an auto-created topic.
    pub default_partitions: u32,
    /// Create a topic on first produce or metadata request, as Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    pub max_connections: usize,
    /// Largest request, as Kafka's `socket.request.max.bytes`.
    pub max_frame_bytes: usize,
    /// Require SASL (PLAIN, SCRAM-SHA-256/512) against the stored users, as a `SASL_PLAINTEXT`
    /// listener does; off serves every connection unauthenticated (`PLAINTEXT`).
    pub sasl_enabled: bool,
    /// Hold every Kafka request to ACLs (CreateAcls / DescribeAcls / DeleteAcls), as Kafka's
    /// `authorizer.class.name`; with no matching ACL a request is denied.
    pub authorizer: bool,
    /// Users (`alice` or `User:alice`) the authorizer lets do everything (`super.users`).
    pub super_users: Vec<String>,
    /// Largest frame accepted before SASL completes, as Kafka's `sasl.server.max.receive.size`;
    /// a larger size prefix closes the connection before its body is read.
    pub sasl_max_receive_bytes: usize,
    /// Close a connection that sends no request for this long, as Kafka's
    /// `connections.max.idle.ms`; 0 never closes an idle connection.
    pub connections_max_idle_ms: u64,
    /// A request frame must arrive whole within this time of its first byte.
    pub frame_timeout_ms: u64,
    /// KIP-848 consumer groups: the heartbeat interval given to members, as Kafka's
    /// `group.consumer.heartbeat.interval.ms`.
    pub group_consumer_heartbeat_interval_ms: u64,
    /// A consumer-group member silent this long is removed (`group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout_ms: u64,
    /// Members a consumer group may have (`group.consumer.max.size`).
    pub group_consumer_max_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    pub enabled: bool,
    pub port: u16,
    /// A second listener speaking AMQPS (5671 by convention); none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    pub max_connections: usize,
    /// The `frame_max` offered in `connection.tune`.
    pub max_frame_bytes: usize,
    /// Largest message body accepted (RabbitMQ's `max_message_size`); a larger one closes the
    /// channel with 406 before its body is buffered.
    pub max_message_bytes: u64,
    /// Users that may log in only from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// Resident memory (bytes) above which publishers are blocked; 0 turns the alarm off.
    pub memory_high_watermark: u64,
    /// Free bytes on the data directory's filesystem below which publishers are blocked;
    /// 0 turns the alarm off.
    pub disk_free_limit: u64,
    /// How often memory and free disk space are measured.
    pub alarm_check_interval_ms: u64,
    /// From the protocol header to `open-ok`, as RabbitMQ's `handshake_timeout`.
    pub handshake_timeout_ms: u64,
    /// With heartbeats off (0 negotiated), close a connection with no channel open that sent
    /// nothing for this long; 0 never closes it.
    pub idle_timeout_ms: u64,
    /// A frame must arrive whole within this time of its first byte.
    pub frame_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub enabled: bool,
    /// Serves `/metrics` and `/health`.
    pub port: u16,
    pub max_connections: usize,
    /// Serves the admin API (`/api`) and the web console (`/`) on the same listener.
    pub admin_enabled: bool,
    /// Largest admin API request body (a definitions import is the big one).
    pub max_body_bytes: u64,
    /// Serve HTTPS instead of HTTP on `port`.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub segment_bytes: u64,
    pub segment_ms: u64,
    /// -1 keeps records forever.
    pub retention_ms: i64,
    /// -1 is unlimited.
    pub retention_bytes: i64,
    pub max_message_bytes: u32,
    /// `always`, `interval:<ms>` or `never`.
    #[serde(with = "durability_text")]
    pub durability: Durability,
    pub index_interval_bytes: u32,
    pub retention_check_interval_ms: u64,
    /// How often the log cleaner looks for compacted partitions to clean.
    pub cleaner_interval_ms: u64,
    /// The cleaner's read + write rate cap; 0 = unthrottled.
    pub cleaner_bytes_per_second: u64,
    /// Segment log files kept open at once (the descriptor budget); 0 = half the soft
    /// RLIMIT_NOFILE at start, at least 64. Others are closed and reopened on use.
    pub max_open_files: u64,
}

/// Caps on resources clients can take: partitions (see [`PartitionLimits`]) and buffered
/// request bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most partitions (RocketMQ queues) one topic may have.
    pub max_partitions_per_topic: u32,
    /// Most partitions of all topics together on this broker.
    pub max_partitions: u32,
    /// Budget for request frames being received or handled (frames above 64 KiB take their
    /// size from it before their body is read); when spent, connections stop reading.
    pub buffer_bytes: u64,
    /// Budget for output queued for sockets (responses, deliveries) over all connections; when
    /// spent, whoever produces output waits.
    pub send_buffer_bytes: u64,
    /// Per connection: bytes of queued output, of RocketMQ requests in flight and of partly
    /// received AMQP messages.
    pub connection_buffer_bytes: u64,
    /// A socket write that accepts nothing for this long closes the connection (the peer
    /// stopped reading); 0 turns it off.
    pub send_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long open connections may take to finish before they are aborted.
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`info`) or a tracing filter (`info,tributary::storage=debug`); `RUST_LOG` wins.
    pub filter: String,
}

/// One TCP listener as the server mounts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    pub enabled: bool,
    pub port: u16,
    pub max_connections: usize,
    pub limits: FrameLimits,
    pub timeouts: ConnectionTimeouts,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tributary-data"),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            kafka: KafkaConfig::default(),
            amqp: AmqpConfig::default(),
            rocketmq: RocketMqConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            cluster: ClusterConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Time to finish a started frame unless configured, per protocol.
pub const DEFAULT_FRAME_TIMEOUT_MS: u64 = 30_000;

/// Connections per listener unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 9092,
            tls_port: None,
            advertised_host: None,
            default_partitions: 4,
            auto_create_topics: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: 100 << 20,
            sasl_enabled: false,
            authorizer: false,
            super_users: Vec::new(),
            sasl_max_receive_bytes: 512 << 10,
            connections_max_idle_ms: 600_000,
            frame_timeout_ms: DEFAULT_FRAME_TIMEOUT_MS,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_max_size: i32::MAX as usize,
        }
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 5672,
            tls_port: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: 128 << 10,
            max_message_bytes: tributary_amqp::DEFAULT_MAX_MESSAGE_BYTES,
            loopback_users: vec!["guest".to_owned()],
            memory_high_watermark: 0,
            // RabbitMQ's default `disk_free_limit` (50 MB).
            disk_free_limit: 50_000_000,
            alarm_check_interval_ms: 1_000,
            handshake_timeout_ms: 10_000,
            // Kafka's idle default: long enough for any client that means to use the
            // connection, short enough that abandoned sockets do not pile up to the cap.
            idle_timeout_ms: 600_000,
            frame_timeout_ms: DEFAULT_FRAME_TIMEOUT_MS,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 9464,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            admin_enabled: true,
            max_body_bytes: 16 << 20,
            tls: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let engine = LogDefaults::default();
        Self {
            segment_bytes: engine.segment_bytes,
            segment_ms: engine.segment_ms,
            retention_ms: engine.retention_ms,
            retention_bytes: engine.retention_bytes,
            max_message_bytes: engine.max_message_bytes,
            durability: engine.durability,
            index_interval_bytes: engine.index_interval_bytes,
            retention_check_interval_ms: 30_000,
            cleaner_interval_ms: 15_000,
            cleaner_bytes_per_second: 64 << 20,
            max_open_files: 0,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let engine = PartitionLimits::default();
        Self {
            max_partitions_per_topic: engine.per_topic,
            max_partitions: engine.per_broker,
            buffer_bytes: 512 << 20,
            send_buffer_bytes: 512 << 20,
            connection_buffer_bytes: 16 << 20,
            send_timeout_ms: 30_000,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 10_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
        }
    }
}

/// The `TRIBUTARY_*` names among `names` that no key reads: most likely typos.
pub fn unknown_env_vars(names: impl IntoIterator<Item = String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| name.starts_with("TRIBUTARY_") && name != CONFIG_FILE_ENV)
        // The admin client options of `tributary user|vhost|permissions` (crate::admin_cli).
        .filter(|name| !name.starts_with("TRIBUTARY_ADMIN_"))
        .filter(|name| KEYS.iter().all(|key| key.env != name))
        .collect()
}

/// Where the layers above the defaults come from. Environment access is a function so tests
/// need not mutate the process environment.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a, E: Fn(&str) -> Option<String>> {
    /// `--config`, which wins over `TRIBUTARY_CONFIG`.
    pub config_file: Option<&'a Path>,
    /// Looks up an environment variable.
    pub env: E,
    /// `(key, value)` pairs from command-line flags, keys as in [`KEYS`].
    pub flags: &'a [(&'static str, String)],
}

impl Config {
    /// Reads every layer, validates the result and fills in derived values.
    pub fn load<E: Fn(&str) -> Option<String>>(
        sources: Sources<'_, E>,
    ) -> Result<Self, ConfigError> {
        let file = match sources.config_file {
            Some(path) => Some(path.to_path_buf()),
            None => (sources.env)(CONFIG_FILE_ENV)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
        };
        let mut config = match file {
            Some(path) => Self::from_file(&path)?,
            None => Self::default(),
        };
        for key in KEYS.iter() {
            if let Some(value) = (sources.env)(key.env) {
                key.apply(&mut config, &value, Origin::Env(key.env))?;
            }
        }
        for (name, value) in sources.flags {
            let key = keys::find(name).ok_or(ConfigError::Invalid {
                key: name,
                problem: Problem::UnknownKey,
            })?;
            key.apply(
                &mut config,
                value,
                Origin::Flag(key.flag.unwrap_or(key.name)),
            )?;
        }
        config.resolve();
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text; keys it leaves out keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The effective configuration as TOML, as `tributary config` prints it. A password in
    /// `cluster.metadata_url` is printed as `****`: the output ends up in terminals, tickets
    /// and logs, which must not learn the database's credentials.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        shown.cluster.metadata_url = shown.cluster.metadata_url.as_deref().map(redact_password);
        toml::to_string(&shown)
    }

    /// Fills in values derived from others.
    fn resolve(&mut self) {
        if self.kafka.advertised_host.is_none() {
            self.kafka.advertised_host = Some(default_advertised_host(self.bind));
        }
    }

    /// The Kafka advertised host, derived from `bind` unless set. On the cloud engine,
    /// `cluster.advertised_host` wins over `kafka.advertised_host`.
    pub fn kafka_advertised_host(&self) -> String {
        let cluster_host = self
            .cluster
            .advertised_host
            .clone()
            .filter(|_| self.cluster.enabled());
        cluster_host
            .or_else(|| self.kafka.advertised_host.clone())
            .unwrap_or_else(|| default_advertised_host(self.bind))
    }

    /// Produce requests a Kafka connection may have waiting for durability at once: on the
    /// cloud engine a wait lasts a flush interval, during which a client with a short linger
    /// sends far more than the local engine's fsync ever waits for (see BENCHMARKS.md, cloud).
    pub fn kafka_max_pipelined_produces(&self) -> usize {
        if self.cluster.enabled() {
            CLOUD_PIPELINED_PRODUCES
        } else {
            tributary_kafka::DEFAULT_MAX_PIPELINED_PRODUCES
        }
    }

    /// Whether authentication is on: `kafka.sasl_enabled` or `rocketmq.acl_enabled`. One rule
    /// for every listener, so no protocol is a way around another's authentication: when it
    /// is on, Kafka requires SASL, RocketMQ requires ACL signatures, and AMQP's `guest` may log
    /// in only from a loopback address whatever `amqp.loopback_users` says.
    pub fn authentication_on(&self) -> bool {
        self.kafka.sasl_enabled || self.rocketmq.acl_enabled
    }

    /// `amqp.loopback_users`, plus `guest` when authentication is on.
    pub fn loopback_users(&self) -> Vec<String> {
        let mut users = self.amqp.loopback_users.clone();
        let guest = tributary_api::users::BUILT_IN_USER;
        if self.authentication_on() && !users.iter().any(|user| user == guest) {
            users.push(guest.to_owned());
        }
        users
    }

    /// What `Broker::open` takes.
    /// The largest batch a queue's log takes: an AMQP message of `amqp.max_message_bytes`
    /// with its properties (a content header fits in one frame) and the batch framing, never
    /// less than `storage.max_message_bytes` and never more than a segment holds.
    pub fn queue_max_message_bytes(&self) -> u32 {
        let amqp = self
            .amqp
            .max_message_bytes
            .saturating_add(self.amqp.max_frame_bytes as u64)
            .saturating_add(1024)
            .min(self.storage.segment_bytes);
        u32::try_from(amqp)
            .unwrap_or(u32::MAX)
            .max(self.storage.max_message_bytes)
    }

    /// The AMQP frontend's tunables.
    pub fn amqp_settings(&self) -> tributary_amqp::AmqpSettings {
        tributary_amqp::AmqpSettings {
            max_message_bytes: self.amqp.max_message_bytes,
            log_message_bytes: self.queue_max_message_bytes(),
            ..tributary_amqp::AmqpSettings::default()
        }
    }

    pub fn broker_settings(&self) -> BrokerSettings {
        let storage = &self.storage;
        BrokerSettings {
            data_dir: self.data_dir.clone(),
            log_defaults: LogDefaults {
                segment_bytes: storage.segment_bytes,
                segment_ms: storage.segment_ms,
                retention_ms: storage.retention_ms,
                retention_bytes: storage.retention_bytes,
                max_message_bytes: storage.max_message_bytes,
                queue_max_message_bytes: self.queue_max_message_bytes(),
                durability: storage.durability,
                index_interval_bytes: storage.index_interval_bytes,
            },
            partition_limits: PartitionLimits {
                per_topic: self.limits.max_partitions_per_topic,
                per_broker: self.limits.max_partitions,
            },
            retention_check_interval: Duration::from_millis(storage.retention_check_interval_ms),
            cleaner_interval: Duration::from_millis(storage.cleaner_interval_ms),
            cleaner_bytes_per_second: storage.cleaner_bytes_per_second,
            max_open_files: usize::try_from(storage.max_open_files).unwrap_or(usize::MAX),
        }
    }

    /// What `CloudEngine::open` takes; `None` runs the local engine. Call on a validated config.
    pub fn cloud_settings(&self) -> Option<crate::cloud::CloudSettings> {
        let cluster = &self.cluster;
        let metadata_url = cluster.metadata_url.clone()?;
        let objects = crate::cloud::ObjectsUrl::parse(cluster.objects_url.as_deref()?).ok()?;
        let broker = self.broker_settings();
        Some(crate::cloud::CloudSettings {
            metadata_url,
            objects,
            broker_id: cluster.broker_id,
            advertised_host: self.kafka_advertised_host(),
            internal_addr: std::net::SocketAddr::new(self.bind, cluster.internal_port),
            lease: Duration::from_millis(cluster.lease_ms),
            lease_renew: Duration::from_millis(cluster.lease_renew_ms),
            flush_interval: Duration::from_millis(cluster.flush_interval_ms),
            flush_bytes: usize::try_from(cluster.flush_bytes).unwrap_or(usize::MAX),
            read_cache_bytes: usize::try_from(cluster.read_cache_bytes).unwrap_or(usize::MAX),
            maintenance_interval: broker.retention_check_interval,
            object_gc_grace: Duration::from_millis(cluster.object_gc_grace_ms),
            merge_object_bytes: cluster.merge_object_bytes,
            merge_min_age: Duration::from_millis(cluster.merge_min_age_ms),
            log_defaults: broker.log_defaults,
            partition_limits: broker.partition_limits,
        })
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown.drain_timeout_ms)
    }

    pub fn kafka_listener(&self) -> ListenerSpec {
        let kafka = &self.kafka;
        ListenerSpec::new(
            kafka.enabled,
            kafka.port,
            kafka.max_connections,
            kafka.max_frame_bytes,
        )
        .with_timeouts(ConnectionTimeouts {
            idle: millis_or_off(kafka.connections_max_idle_ms),
            frame: millis_or_off(kafka.frame_timeout_ms),
            handshake: None,
            send: millis_or_off(self.limits.send_timeout_ms),
        })
    }

    pub fn amqp_listener(&self) -> ListenerSpec {
        let amqp = &self.amqp;
        ListenerSpec::new(
            amqp.enabled,
            amqp.port,
            amqp.max_connections,
            amqp.max_frame_bytes,
        )
        .with_timeouts(ConnectionTimeouts {
            idle: millis_or_off(amqp.idle_timeout_ms),
            frame: millis_or_off(amqp.frame_timeout_ms),
            handshake: millis_or_off(amqp.handshake_timeout_ms),
            send: millis_or_off(self.limits.send_timeout_ms),
        })
    }

    pub fn rocketmq_namesrv_listener(&self) -> ListenerSpec {
        let rocketmq = &self.rocketmq;
        ListenerSpec::new(
            rocketmq.enabled,
            rocketmq.namesrv_port,
            rocketmq.max_connections,
            rocketmq.max_frame_bytes,
        )
        .with_timeouts(self.rocketmq_timeouts())
    }

    pub fn rocketmq_broker_listener(&self) -> ListenerSpec {
        let rocketmq = &self.rocketmq;
        ListenerSpec::new(
            rocketmq.enabled,
            rocketmq.broker_port,
            rocketmq.max_connections,
            rocketmq.max_frame_bytes,
        )
        .with_timeouts(self.rocketmq_timeouts())
    }

    fn rocketmq_timeouts(&self) -> ConnectionTimeouts {
        ConnectionTimeouts {
            idle: millis_or_off(self.rocketmq.channel_idle_ms),
            frame: millis_or_off(self.rocketmq.frame_timeout_ms),
            handshake: None,
            send: millis_or_off(self.limits.send_timeout_ms),
        }
    }

    /// The broker-wide budget for buffered request frames (`limits.buffer_bytes`).
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget::new(self.limits.buffer_bytes)
    }

    /// The budgets for output queued for sockets (`limits.send_buffer_bytes`,
    /// `limits.connection_buffer_bytes`).
    pub fn send_budget(&self) -> SendBudget {
        SendBudget::new(
            self.limits.send_buffer_bytes,
            self.limits.connection_buffer_bytes,
        )
    }

    /// The HTTP endpoint's listener; its requests are small, so the frame limit only bounds
    /// what the shell reports, hyper enforces its own header limits.
    pub fn http_listener(&self) -> ListenerSpec {
        let http = &self.http;
        ListenerSpec::new(http.enabled, http.port, http.max_connections, 64 << 10)
    }
}

impl ListenerSpec {
    pub fn new(enabled: bool, port: u16, max_connections: usize, max_frame_bytes: usize) -> Self {
        Self {
            enabled,
            port,
            max_connections,
            limits: FrameLimits { max_frame_bytes },
            timeouts: ConnectionTimeouts::default(),
        }
    }

    /// This listener with the time limits of its protocol.
    pub fn with_timeouts(mut self, timeouts: ConnectionTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

/// A millisecond setting where 0 means off.
fn millis_or_off(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The bind address as a literal clients can dial: an unspecified bind (`0.0.0.0`, `::`)
/// cannot be dialled, so loopback stands in and the operator is expected to set the key.
fn default_advertised_host(bind: IpAddr) -> String {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `Durability` as the strings operators write: `always`, `interval:<ms>`, `never`.
mod durability_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use tributary_api::Durability;

    pub(super) fn serialize<S: Serializer>(value: &Durability, out: S) -> Result<S::Ok, S::Error> {
        out.collect_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Durability, D::Error> {
        let text = String::deserialize(input)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
