//! The `[rocketmq]` section and what the RocketMQ frontend takes from it.

use serde::{Deserialize, Serialize};
use tributary_rocketmq::white_address::WhiteList;

use super::{Config, DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, RocketMqTls};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RocketMqConfig {
    pub enabled: bool,
    /// The name server port (route queries); the same process answers them.
    pub namesrv_port: u16,
    /// The broker port (send, pull, heartbeats).
    pub broker_port: u16,
    /// Cap per listener (the name server and the broker port each have this many).
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    /// Create unknown topics on route lookup and send (RocketMQ's `autoCreateTopicEnable`).
    pub auto_create_topics: bool,
    /// Queues of a topic created by a route lookup or a send.
    pub default_queues: u32,
    /// Delay levels, RocketMQ's `messageDelayLevel` syntax (`1s 5s ... 2h`; `ms` also works).
    pub delay_levels: String,
    /// Retries before a sent-back message goes to `%DLQ%<group>`, unless the consumer says.
    pub max_reconsume_times: u32,
    /// Age of an unresolved transactional half message at its first check (`transactionTimeOut`).
    pub transaction_timeout_ms: u64,
    /// Time between checks of an unresolved half message (`transactionCheckInterval`).
    pub transaction_check_interval_ms: u64,
    /// Checks before an unresolved half message is discarded (`transactionCheckMax`).
    pub transaction_check_max: u32,
    /// Serve SQL92 subscriptions (RocketMQ's `enablePropertyFilter`).
    pub enable_property_filter: bool,
    /// Close a connection (name server or broker port) that sends nothing for this long, as
    /// RocketMQ's `serverChannelMaxIdleTimeSeconds`; 0 never closes it.
    pub channel_idle_ms: u64,
    /// A frame must arrive whole within this time of its first byte.
    pub frame_timeout_ms: u64,
    /// Require RocketMQ ACL signatures (AccessKey / Signature of a user added with
    /// `--rocketmq-secret`) and the user's permissions on every request but route queries.
    /// Turns authentication on for every protocol (see [`Config::authentication_on`]).
    pub acl_enabled: bool,
    /// Peers whose RocketMQ requests pass the ACL unchecked (RocketMQ's
    /// `globalWhiteRemoteAddresses`): comma-separated patterns of
    /// [`tributary_rocketmq::white_address`]. An explicit hole in authentication: `*` opens
    /// RocketMQ to everyone (logged as a warning at start).
    pub acl_global_white_addresses: String,
    /// TLS on the name server and broker ports (`disabled`, `permissive`, `enforcing`).
    pub tls: RocketMqTls,
}

impl Default for RocketMqConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            namesrv_port: 9876,
            broker_port: 10911,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: 16 << 20,
            auto_create_topics: true,
            default_queues: 4,
            delay_levels: tributary_rocketmq::delay::DEFAULT_DELAY_LEVELS.to_owned(),
            max_reconsume_times: 16,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            enable_property_filter: true,
            channel_idle_ms: 120_000,
            frame_timeout_ms: DEFAULT_FRAME_TIMEOUT_MS,
            acl_enabled: false,
            acl_global_white_addresses: String::new(),
            tls: RocketMqTls::Disabled,
        }
    }
}

impl Config {
    /// What the RocketMQ frontend takes; the rest of its settings keep RocketMQ's defaults.
    pub fn rocketmq_settings(&self) -> tributary_rocketmq::Settings {
        let rocketmq = &self.rocketmq;
        tributary_rocketmq::Settings {
            broker_port: rocketmq.broker_port,
            auto_create_topics: rocketmq.auto_create_topics,
            default_queue_nums: rocketmq.default_queues,
            // Checked by `validate`, so the fallback is never taken for a loaded config.
            delay_levels: rocketmq.delay_levels.parse().unwrap_or_default(),
            max_reconsume_times: i32::try_from(rocketmq.max_reconsume_times).unwrap_or(i32::MAX),
            transactions: tributary_rocketmq::TransactionTiming {
                timeout_ms: rocketmq.transaction_timeout_ms,
                check_interval_ms: rocketmq.transaction_check_interval_ms,
                check_max: rocketmq.transaction_check_max,
            },
            enable_property_filter: rocketmq.enable_property_filter,
            max_message_bytes: self.storage.max_message_bytes as usize,
            acl_enabled: self.authentication_on(),
            // Checked by `validate`, so the fallback is never taken for a loaded config.
            acl_global_white: WhiteList::parse(&rocketmq.acl_global_white_addresses)
                .unwrap_or_default(),
            ..tributary_rocketmq::Settings::default()
        }
    }
}
