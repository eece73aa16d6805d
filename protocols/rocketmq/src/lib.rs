//! The RocketMQ remoting frontend: a name server and a broker served by one process over the
//! shared log engine.
//!
//! What it is: two [`Frontend`]s, [`NameServerFrontend`] (route queries: GET_ROUTEINFO_BY_TOPIC,
//! GET_BROKER_CLUSTER_INFO, UPDATE_AND_CREATE_TOPIC) and [`BrokerFrontend`] (sends, pulls,
//! offsets, heartbeats), built from one [`RocketMq`] so they share state. A RocketMQ topic is the
//! engine topic of the same name and a queue id is a partition; consumer offsets live in the
//! shared `OffsetStore` under the consumer group's name.
//!
//! Delayed messages (delay levels and 5.x timers, [`delay`]) and consumer send-back to
//! `%RETRY%<group>` / `%DLQ%<group>` go through the engine scheduler, so they survive restarts.
//!
//! With several brokers over one log ([`RocketMq::join_cluster`]), routes name every live
//! broker and each queue's writes go to the broker that leads its partition ([`routes`]).
//!
//! Orderly consumers lock queues with 60 s leases ([`locks`]); membership changes are pushed to
//! the group's members. With several brokers, consumer-group membership is shared through the
//! engine ([`RocketMq::share_consumer_groups`]), so every broker lists every member.
//!
//! Messages can be looked up by offset message id and by key (a bounded scan, no key index).
//!
//! Transactional messages ([`transactions`]): a half message waits in `RMQ_SYS_TRANS_HALF_TOPIC`
//! until END_TRANSACTION commits it to its real queue or rolls it back; unresolved halves are
//! checked with CHECK_TRANSACTION_STATE on a producer's connection, durably across restarts.
//!
//! Subscriptions filter by tag or, when `enable_property_filter` is on, by SQL92 expressions
//! over message properties ([`filter`]).
//!
//! With `acl_enabled`, requests are authenticated and authorized as RocketMQ's plain ACL does
//! it, against the broker's users and their permissions ([`acl`]).
//!
//! What it is not (yet): the 5.x gRPC proxy protocol, TLS.
//!
//! Invariants:
//! - every response carries its request's opaque and serialize type; requests on one connection
//!   run concurrently (a long-polling pull never delays other requests) and their responses go
//!   through one bounded writer per connection;
//! - the name server advertises the broker's bound address (the shell reports it through
//!   [`RocketMq::broker_listening`] before any connection is served);
//! - message storage is described in [`records`]: the body verbatim, properties as record headers.

pub mod acl;
pub mod admin;
pub mod check;
pub mod codec;
mod connection;
pub mod delay;
pub mod error;
pub mod filter;
mod handlers;
mod locks;
pub mod metrics;
mod peers;
mod pull_commits;
mod read_ahead;
pub mod records;
mod registry;
pub mod routes;
mod stats;
pub mod topic_ids;
pub mod transactions;
pub mod white_address;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tributary_api::{
    AccessControl, ClusterView, ConnectionContext, ConnectionError, Engine, Frontend, GroupRoster,
};

pub use delay::DelayLevels;
/// Topic name prefixes of a group's retry and dead-letter topics (`%RETRY%<group>`, `%DLQ%<group>`).
pub use handlers::{DLQ_PREFIX, RETRY_PREFIX};
use locks::QueueLocks;
use peers::Peers;
use registry::ClientRegistry;
use stats::Stats;
use topic_ids::TopicIds;
pub use transactions::TransactionTiming;
use transactions::Transactions;

/// RocketMQ settings from the broker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Cluster name in routes and cluster info.
    pub cluster_name: String,
    /// This broker's name in routes.
    pub broker_name: String,
    /// Queues of a topic created by a route lookup or a send.
    pub default_queue_nums: u32,
    /// Create unknown topics on route lookup and send (RocketMQ's `autoCreateTopicEnable`).
    pub auto_create_topics: bool,
    /// Host advertised in routes; `None` uses the address the client reached.
    pub advertised_host: Option<String>,
    /// The broker port from the configuration, advertised until the shell reports the bound one.
    pub broker_port: u16,
    /// Delay levels for the `DELAY` property and for retries (RocketMQ's `messageDelayLevel`).
    pub delay_levels: DelayLevels,
    /// Deliveries after which a sent-back message goes to the DLQ when the consumer names no
    /// maximum (RocketMQ's `retryMaxTimes`).
    pub max_reconsume_times: i32,
    /// When unresolved half messages are checked and for how long.
    pub transactions: TransactionTiming,
    /// Serve SQL92 subscriptions (RocketMQ's `enablePropertyFilter`, off there by default; on
    /// here, since it costs nothing until a consumer subscribes with SQL92).
    pub enable_property_filter: bool,
    /// Largest body a compressed send may inflate to (the broker's `storage.max_message_bytes`).
    pub max_message_bytes: usize,
    /// Require RocketMQ ACL signatures and permissions ([`acl`]); needs the access control
    /// given to [`RocketMq::with_access`] (without one every request is refused).
    pub acl_enabled: bool,
    /// Peers whose requests pass the ACL unchecked (RocketMQ's `globalWhiteRemoteAddresses`).
    pub acl_global_white: white_address::WhiteList,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_name: "DefaultCluster".to_owned(),
            broker_name: "tributary-broker".to_owned(),
            default_queue_nums: 4,
            auto_create_topics: true,
            advertised_host: None,
            broker_port: 10911,
            delay_levels: DelayLevels::default(),
            max_reconsume_times: 16,
            transactions: TransactionTiming::default(),
            enable_property_filter: true,
            max_message_bytes: 1_048_588,
            acl_enabled: false,
            acl_global_white: white_address::WhiteList::default(),
        }
    }
}

/// State shared by the name server and the broker of one process.
#[derive(Debug)]
struct Shared {
    engine: Engine,
    settings: Settings,
    /// Permission checks of the ACL (`settings.acl_enabled`).
    access: Option<Arc<dyn AccessControl>>,
    broker_addr: OnceLock<SocketAddr>,
    /// The membership when several brokers serve one log ([`routes`]); unset: the only broker.
    cluster: OnceLock<Arc<dyn ClusterView>>,
    clients: ClientRegistry,
    /// Consumer-group members across brokers ([`RocketMq::share_consumer_groups`]); unset:
    /// `clients` alone, as the only broker.
    roster: OnceLock<Arc<dyn GroupRoster>>,
    peers: Peers,
    locks: QueueLocks,
    stats: Stats,
    topic_ids: TopicIds,
    transactions: Transactions,
    pull_commits: pull_commits::PullCommits,
    /// Compressed batches pulls inflated lately (a pull takes 32 messages of a batch of many).
    inflated: tributary_api::compression::InflatedBatches,
    /// Batches pulls read lately (a pull takes 32 messages of a batch that may hold many).
    read_ahead: read_ahead::ReadAhead,
    /// Set once the background tasks run (exporter gauges, transaction checks, pull commits);
    /// they start with the first broker connection.
    upkeep: OnceLock<()>,
}

impl Shared {
    /// Tells every member of each changed group that the member list changed.
    fn notify_ids_changed(&self, groups: &[String]) {
        for group in groups {
            for (connection, serialize_type) in self.clients.connections(group) {
                self.peers.send_oneway(
                    connection,
                    serialize_type,
                    |command| command.with_field("consumerGroup", group),
                    peers::NOTIFY_CONSUMER_IDS_CHANGED,
                );
            }
        }
    }
}

/// Builds the two frontends over one shared state.
#[derive(Debug, Clone)]
pub struct RocketMq {
    shared: Arc<Shared>,
}

impl RocketMq {
    pub fn new(engine: Engine, settings: Settings) -> Self {
        Self::build(engine, settings, None)
    }

    /// A frontend whose ACL (when `settings.acl_enabled`) checks permissions with `access`.
    pub fn with_access(engine: Engine, settings: Settings, access: Arc<dyn AccessControl>) -> Self {
        Self::build(engine, settings, Some(access))
    }

    fn build(engine: Engine, settings: Settings, access: Option<Arc<dyn AccessControl>>) -> Self {
        if settings.acl_enabled && settings.acl_global_white.admits_everyone() {
            tracing::warn!(
                list = %settings.acl_global_white,
                "rocketmq.acl_global_white_addresses admits every address (`*`): RocketMQ requests pass the ACL unchecked"
            );
        }
        Self {
            shared: Arc::new(Shared {
                engine,
                settings,
                access,
                broker_addr: OnceLock::new(),
                cluster: OnceLock::new(),
                clients: ClientRegistry::default(),
                roster: OnceLock::new(),
                peers: Peers::default(),
                locks: QueueLocks::default(),
                stats: Stats::default(),
                topic_ids: TopicIds::default(),
                transactions: Transactions::default(),
                pull_commits: pull_commits::PullCommits::default(),
                inflated: Default::default(),
                read_ahead: Default::default(),
                upkeep: OnceLock::new(),
            }),
        }
    }

    /// The admin API's handle: consumer groups, members and offset resets.
    pub fn admin(&self) -> admin::RocketMqAdmin {
        admin::RocketMqAdmin {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The name server frontend (`rocketmq-namesrv`).
    pub fn namesrv(&self) -> NameServerFrontend {
        NameServerFrontend {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The broker frontend (`rocketmq-broker`).
    pub fn broker(&self) -> BrokerFrontend {
        BrokerFrontend {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves as one broker of `cluster`: routes name every live broker and spread the write
    /// queues by partition leadership ([`routes`]). Call before serving; the first call wins.
    pub fn join_cluster(&self, cluster: Arc<dyn ClusterView>) {
        let _ = self.shared.cluster.set(cluster);
    }

    /// Shares consumer-group membership with the other brokers of a cluster: heartbeats are
    /// recorded in `roster` too, GET_CONSUMER_LIST_BY_GROUP answers its members with this
    /// broker's, and a group changed through another broker is told to its members here. Call
    /// before serving; the first call wins.
    pub fn share_consumer_groups(&self, roster: Arc<dyn GroupRoster>) {
        let _ = self.shared.roster.set(roster);
    }

    /// Records the address the broker listener is bound to; the first call wins.
    pub fn broker_listening(&self, addr: SocketAddr) {
        let _ = self.shared.broker_addr.set(addr);
    }
}

/// Which listener a connection came in on; each serves its own request family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    NameServer,
    Broker,
}

/// The RocketMQ name server listener (default port 9876).
#[derive(Debug)]
pub struct NameServerFrontend {
    shared: Arc<Shared>,
}

/// The RocketMQ broker listener (default port 10911).
#[derive(Debug)]
pub struct BrokerFrontend {
    shared: Arc<Shared>,
}

#[async_trait]
impl Frontend for NameServerFrontend {
    fn name(&self) -> &'static str {
        "rocketmq-namesrv"
    }

    fn default_port(&self) -> u16 {
        9876
    }

    async fn serve_connection(
        &self,
        stream: tributary_api::ConnectionStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError> {
        connection::serve(Arc::clone(&self.shared), Role::NameServer, stream, context).await
    }
}

#[async_trait]
impl Frontend for BrokerFrontend {
    fn name(&self) -> &'static str {
        "rocketmq-broker"
    }

    fn default_port(&self) -> u16 {
        10911
    }

    async fn serve_connection(
        &self,
        stream: tributary_api::ConnectionStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError> {
        self.shared.upkeep.get_or_init(|| {
            tokio::spawn(stats::upkeep(
                Arc::clone(&self.shared),
                context.shutdown.clone(),
            ));
            tokio::spawn(handlers::check_transactions(
                Arc::clone(&self.shared),
                context.shutdown.clone(),
            ));
            tokio::spawn(pull_commits::run(
                Arc::clone(&self.shared),
                context.shutdown.clone(),
            ));
            if let Some(roster) = self.shared.roster.get() {
                tokio::spawn(handlers::follow_roster(
                    Arc::clone(&self.shared),
                    roster.changes(),
                    context.shutdown.clone(),
                ));
            }
        });
        connection::serve(Arc::clone(&self.shared), Role::Broker, stream, context).await
    }
}
