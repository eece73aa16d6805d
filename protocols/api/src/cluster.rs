//! What a frontend needs to know when several brokers serve one log (the cloud engine with
//! membership): the live brokers, who leads a partition, who coordinates a group.
//!
//! Invariants: answers come from the broker's latest view of the membership; a broker that does
//! not hold its membership lease leads nothing, so its clients go elsewhere, but still lists
//! itself (and the brokers it last saw): a client given no broker at all forgets every broker,
//! its bootstrap servers too, and stalls.
//! Without a cluster (the local engine) frontends behave as the only broker.

use crate::types::TopicPartition;

/// A live broker as clients should reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub id: i32,
    pub host: String,
    /// Its Kafka listener; 0 while unbound or without one.
    pub port: u16,
    /// Its Kafka TLS listener (`SSL`/`SASL_SSL`), if it has one.
    pub tls_port: Option<u16>,
    /// Its RocketMQ broker listener (which also speaks TLS when `rocketmq.tls` says so), if
    /// it has one.
    pub rocketmq_port: Option<u16>,
}

/// The membership view of one broker.
pub trait ClusterView: Send + Sync + std::fmt::Debug {
    /// This broker's id.
    fn local_id(&self) -> i32;
    /// The live brokers, by id, each with at least one listener bound (a frontend skips those
    /// without its own port); never empty once this broker's listener is bound (without a
    /// lease: itself and the brokers of its last view).
    fn live(&self) -> Vec<BrokerAddress>;
    /// The broker that leads `partition`; `None` without a lease.
    fn leader(&self, partition: &TopicPartition) -> Option<i32>;
    /// The broker that coordinates the group (or transactional id) `key`.
    fn coordinator(&self, key: &str) -> Option<i32>;
    /// Whether this broker holds its membership lease now.
    fn holds_lease(&self) -> bool;
}

/// RocketMQ consumer-group membership shared by the brokers of one cluster: a client that
/// heartbeats only some brokers (or heartbeated before one restarted empty) is still listed by
/// every broker's GET_CONSUMER_LIST_BY_GROUP, so members never allocate queues from different
/// lists.
///
/// Invariants: [`GroupRoster::present`] and [`GroupRoster::absent`] never wait (the engine
/// writes in the background, in call order per member, and may skip a `present` it wrote
/// lately); [`GroupRoster::members`] counts only members recorded through brokers that hold
/// their lease. Without a cluster (the local engine) frontends keep their own registry alone.
#[async_trait::async_trait]
pub trait GroupRoster: Send + Sync + std::fmt::Debug {
    /// `client_id` is a member of `group` through this broker (it heartbeated).
    fn present(&self, group: &str, client_id: &str);
    /// `client_id` is no longer a member of `group` through this broker (it unregistered, or
    /// its last connection here closed).
    fn absent(&self, group: &str, client_id: &str);
    /// The client ids of `group` recorded through any live broker, sorted, without repeats.
    async fn members(&self, group: &str) -> crate::EngineResult<Vec<String>>;
    /// Groups whose members changed through another broker, as they are announced (a lagging
    /// receiver misses some: the announcements are advisory, members rebalance on their own
    /// schedule too).
    fn changes(&self) -> tokio::sync::broadcast::Receiver<String>;
}
