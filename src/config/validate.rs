//! Checks a loaded [`Config`]; the first problem found is reported with the key it concerns.

use tracing_subscriber::EnvFilter;

use tributary_rocketmq::white_address::WhiteList;

use super::{Config, ConfigError};

/// The smallest frame limit any listener accepts; AMQP 0-9-1 requires peers to accept 4096-byte
/// frames (`frame-min-size`), and no protocol we speak handshakes in less.
pub const MIN_FRAME_BYTES: usize = 4096;
/// Every protocol's length prefix is a signed 32-bit integer.
pub const MAX_FRAME_BYTES: usize = i32::MAX as usize;
/// A segment must hold at least one small batch.
pub const MIN_SEGMENT_BYTES: u64 = 1024;

/// What is wrong with a key's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("is not a known configuration key")]
    UnknownKey,
    #[error("must not be empty")]
    Empty,
    #[error("must be greater than 0")]
    Zero,
    #[error("must be at least {min}, got {value}")]
    TooSmall { min: u64, value: u64 },
    #[error("must be at most {max}, got {value}")]
    TooLarge { max: u64, value: u64 },
    #[error("must be -1 (unlimited) or a non-negative number, got {0}")]
    BelowMinusOne(i64),
    #[error("uses port {port}, which `{other}` uses too")]
    PortClash { port: u16, other: &'static str },
    #[error("{0}")]
    BadWhiteAddress(#[source] tributary_rocketmq::white_address::BadPattern),
    #[error("is not a valid delay level list")]
    BadDelayLevels(#[source] tributary_rocketmq::delay::DelayLevelsError),
    #[error("is required when `cluster.metadata_url` is set")]
    RequiredByCluster,
    #[error("is not valid: {0}")]
    BadUrl(String),
    #[error("is required when `{listener}` turns a TLS listener on")]
    RequiredByTls { listener: &'static str },
    #[error("is required when `tls.client_auth` is `{0}`")]
    RequiredByClientAuth(super::ClientAuth),
    #[error("{0}")]
    Tls(#[source] crate::server::tls::TlsError),
    #[error("is not a valid tracing filter")]
    BadFilter(#[source] tracing_subscriber::filter::ParseError),
}

fn invalid(key: &'static str, problem: Problem) -> ConfigError {
    ConfigError::Invalid { key, problem }
}

fn positive(key: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, Problem::Zero));
    }
    Ok(())
}

fn within(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(key, Problem::TooSmall { min, value }));
    }
    if value > max {
        return Err(invalid(key, Problem::TooLarge { max, value }));
    }
    Ok(())
}

fn unlimited_or_positive(key: &'static str, value: i64) -> Result<(), ConfigError> {
    if value < -1 {
        return Err(invalid(key, Problem::BelowMinusOne(value)));
    }
    Ok(())
}

fn frame_limit(key: &'static str, value: usize) -> Result<(), ConfigError> {
    within(
        key,
        value as u64,
        MIN_FRAME_BYTES as u64,
        MAX_FRAME_BYTES as u64,
    )
}

impl Config {
    /// Returns the first invalid key, if any.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", Problem::Empty));
        }
        self.validate_listeners()?;
        self.validate_storage()?;
        positive(
            "limits.max_partitions_per_topic",
            self.limits.max_partitions_per_topic.into(),
        )?;
        positive("limits.max_partitions", self.limits.max_partitions.into())?;
        self.validate_cluster()?;
        // Last: it reads the certificate files.
        self.validate_tls()?;
        if self.log.filter.trim().is_empty() {
            return Err(invalid("log.filter", Problem::Empty));
        }
        EnvFilter::try_new(&self.log.filter)
            .map_err(|err| invalid("log.filter", Problem::BadFilter(err)))?;
        Ok(())
    }

    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        positive("kafka.default_partitions", kafka.default_partitions.into())?;
        positive("kafka.max_connections", kafka.max_connections as u64)?;
        frame_limit("kafka.max_frame_bytes", kafka.max_frame_bytes)?;
        if kafka
            .advertised_host
            .as_deref()
            .is_some_and(|host| host.trim().is_empty())
        {
            return Err(invalid("kafka.advertised_host", Problem::Empty));
        }
        positive("amqp.max_connections", self.amqp.max_connections as u64)?;
        frame_limit("amqp.max_frame_bytes", self.amqp.max_frame_bytes)?;
        // RabbitMQ's ceiling for `max_message_size`.
        within(
            "amqp.max_message_bytes",
            self.amqp.max_message_bytes,
            1,
            tributary_amqp::MAX_MAX_MESSAGE_BYTES,
        )?;
        within(
            "amqp.alarm_check_interval_ms",
            self.amqp.alarm_check_interval_ms,
            10,
            3_600_000,
        )?;
        positive(
            "rocketmq.max_connections",
            self.rocketmq.max_connections as u64,
        )?;
        frame_limit("rocketmq.max_frame_bytes", self.rocketmq.max_frame_bytes)?;
        positive(
            "rocketmq.default_queues",
            self.rocketmq.default_queues.into(),
        )?;
        positive(
            "rocketmq.transaction_check_interval_ms",
            self.rocketmq.transaction_check_interval_ms,
        )?;
        if let Err(err) = self
            .rocketmq
            .delay_levels
            .parse::<tributary_rocketmq::DelayLevels>()
        {
            return Err(invalid(
                "rocketmq.delay_levels",
                Problem::BadDelayLevels(err),
            ));
        }
        if let Err(err) = WhiteList::parse(&self.rocketmq.acl_global_white_addresses) {
            return Err(invalid(
                "rocketmq.acl_global_white_addresses",
                Problem::BadWhiteAddress(err),
            ));
        }
        positive("http.max_connections", self.http.max_connections as u64)?;
        positive("http.max_body_bytes", self.http.max_body_bytes)?;
        self.validate_connection_rules()?;

        // Port 0 asks the OS for a free port, so only fixed ports can clash.
        let ports = [
            ("kafka.port", kafka.enabled, kafka.port),
            (
                "kafka.tls_port",
                kafka.enabled && kafka.tls_port.is_some(),
                kafka.tls_port.unwrap_or(0),
            ),
            ("amqp.port", self.amqp.enabled, self.amqp.port),
            (
                "amqp.tls_port",
                self.amqp.enabled && self.amqp.tls_port.is_some(),
                self.amqp.tls_port.unwrap_or(0),
            ),
            (
                "rocketmq.namesrv_port",
                self.rocketmq.enabled,
                self.rocketmq.namesrv_port,
            ),
            (
                "rocketmq.broker_port",
                self.rocketmq.enabled,
                self.rocketmq.broker_port,
            ),
            ("http.port", self.http.enabled, self.http.port),
        ];
        let fixed: Vec<_> = ports
            .iter()
            .filter(|(_, enabled, port)| *enabled && *port != 0)
            .collect();
        for (index, (key, _, port)) in fixed.iter().enumerate() {
            if let Some((other, _, _)) = fixed[..index].iter().find(|(_, _, seen)| seen == port) {
                return Err(invalid(key, Problem::PortClash { port: *port, other }));
            }
        }
        Ok(())
    }

    /// Timeouts, the pre-authentication cap and the buffer budget.
    fn validate_connection_rules(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        within(
            "kafka.sasl_max_receive_bytes",
            kafka.sasl_max_receive_bytes as u64,
            MIN_FRAME_BYTES as u64,
            kafka.max_frame_bytes as u64,
        )?;
        positive("kafka.frame_timeout_ms", kafka.frame_timeout_ms)?;
        positive("amqp.handshake_timeout_ms", self.amqp.handshake_timeout_ms)?;
        positive("amqp.frame_timeout_ms", self.amqp.frame_timeout_ms)?;
        positive("rocketmq.frame_timeout_ms", self.rocketmq.frame_timeout_ms)?;
        // Every legal frame must fit in the budget, or a client sending one would wait forever.
        let largest_frame = [
            (kafka.enabled, kafka.max_frame_bytes),
            (self.amqp.enabled, self.amqp.max_frame_bytes),
            (self.rocketmq.enabled, self.rocketmq.max_frame_bytes),
        ]
        .iter()
        .filter(|(enabled, _)| *enabled)
        .map(|(_, bytes)| *bytes as u64)
        .max()
        .unwrap_or(0);
        within(
            "limits.buffer_bytes",
            self.limits.buffer_bytes,
            largest_frame.max(1 << 20),
            u64::from(u32::MAX) * 1024,
        )?;
        within(
            "limits.connection_buffer_bytes",
            self.limits.connection_buffer_bytes,
            64 << 10,
            1 << 40,
        )?;
        within(
            "limits.send_buffer_bytes",
            self.limits.send_buffer_bytes,
            self.limits.connection_buffer_bytes,
            1 << 40,
        )?;
        Ok(())
    }

    /// The `[cluster]` keys are checked only when the cloud engine is on.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let Some(metadata_url) = &cluster.metadata_url else {
            return Ok(());
        };
        if let Err(error) = metadata_url.parse::<tokio_postgres::Config>() {
            return Err(invalid(
                "cluster.metadata_url",
                Problem::BadUrl(error.to_string()),
            ));
        }
        let Some(objects_url) = &cluster.objects_url else {
            return Err(invalid("cluster.objects_url", Problem::RequiredByCluster));
        };
        if let Err(error) = crate::cloud::ObjectsUrl::parse(objects_url) {
            return Err(invalid(
                "cluster.objects_url",
                Problem::BadUrl(error.to_string()),
            ));
        }
        if cluster
            .advertised_host
            .as_deref()
            .is_some_and(|host| host.trim().is_empty())
        {
            return Err(invalid("cluster.advertised_host", Problem::Empty));
        }
        within(
            "cluster.flush_interval_ms",
            cluster.flush_interval_ms,
            1,
            60_000,
        )?;
        within("cluster.flush_bytes", cluster.flush_bytes, 1024, 1 << 30)?;
        within(
            "cluster.read_cache_bytes",
            cluster.read_cache_bytes,
            0,
            1 << 40,
        )?;
        within("cluster.lease_ms", cluster.lease_ms, 500, 600_000)?;
        // At least two renewals per lease, so one slow round does not lose it.
        within(
            "cluster.lease_renew_ms",
            cluster.lease_renew_ms,
            50,
            cluster.lease_ms / 2,
        )?;
        // Up to a week: objects wait that long at most before their space comes back.
        within(
            "cluster.object_gc_grace_ms",
            cluster.object_gc_grace_ms,
            0,
            7 * 24 * 3_600_000,
        )?;
        within(
            "cluster.merge_object_bytes",
            cluster.merge_object_bytes,
            0,
            1 << 30,
        )?;
        within(
            "cluster.merge_min_age_ms",
            cluster.merge_min_age_ms,
            0,
            7 * 24 * 3_600_000,
        )?;
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        within(
            "storage.segment_bytes",
            storage.segment_bytes,
            MIN_SEGMENT_BYTES,
            i64::MAX as u64,
        )?;
        positive("storage.segment_ms", storage.segment_ms)?;
        unlimited_or_positive("storage.retention_ms", storage.retention_ms)?;
        unlimited_or_positive("storage.retention_bytes", storage.retention_bytes)?;
        within(
            "storage.max_message_bytes",
            storage.max_message_bytes.into(),
            1,
            storage.segment_bytes,
        )?;
        positive(
            "storage.index_interval_bytes",
            storage.index_interval_bytes.into(),
        )?;
        positive(
            "storage.retention_check_interval_ms",
            storage.retention_check_interval_ms,
        )?;
        positive("storage.cleaner_interval_ms", storage.cleaner_interval_ms)?;
        if storage.max_open_files != 0 {
            within(
                "storage.max_open_files",
                storage.max_open_files,
                crate::storage::MIN_OPEN_FILES as u64,
                u64::from(u32::MAX),
            )?;
        }
        Ok(())
    }
}
