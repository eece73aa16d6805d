//! Tributary's AMQP 0-9-1 frontend: RabbitMQ clients (lapin, pika, amqplib, the Java client...)
//! publish to exchanges and consume from queues that live on the shared log engine.
//!
//! What it is: a sans-IO codec ([`codec`]) with its own framing (frame sizes are checked against
//! the negotiated `frame_max` before anything is buffered, bodies are never re-copied, content
//! properties are kept as raw bytes), a per-connection state machine ([`session`]) and one
//! handler module per method family. Classic queues are the engine's `QueueService` queues of
//! the same name; durable exchanges, queues and bindings are records in the `MetadataStore`
//! ([`definitions`]); messages are RecordBatch v2 records ([`message`]).
//!
//! Queue types: classic (with priorities), quorum (a durable queue with a delivery limit) and
//! stream (a topic, in vhost `/` the one of the same name, named per vhost elsewhere as in
//! [`vhost`]; read with `x-stream-offset`), see [`policy`].
//!
//! Vhosts ([`vhost`]) each have their own topology and a view of the engine's queues; users
//! log in with PLAIN or AMQPLAIN against the broker's user store and act under their
//! per-vhost permissions ([`access`]); resource alarms block publishers ([`alarm`]).
//!
//! Prefetch follows RabbitMQ: `basic.qos global=false` limits each consumer of the channel,
//! `global=true` the channel as a whole, and both apply together ([`credit`]). Capabilities
//! advertise only what is implemented.
//!
//! Invariants: bad input gets RabbitMQ's reply code and closes only the channel or connection the
//! protocol says; nothing here panics on input; per-connection output is a bounded queue.

pub mod access;
pub mod admin;
pub mod alarm;
pub mod channel;
pub mod codec;
pub mod connection;
pub mod credit;
pub mod deadletter;
pub mod definitions;
pub mod error;
pub mod expiry;
pub mod feed;
mod handlers;
pub mod lease;
pub mod message;
pub mod metrics;
pub mod partitioner;
pub mod policy;
pub mod reader;
pub mod routing;
pub mod session;
pub mod topology;
pub mod vhost;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::watch;
use tributary_api::{BackgroundContext, ConnectionContext, ConnectionError, Engine, Frontend};

use crate::alarm::Alarms;
use crate::topology::Topology;
use crate::vhost::Vhosts;

/// The port AMQP clients expect.
pub const DEFAULT_PORT: u16 = 5672;

/// Tunables of the AMQP frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmqpSettings {
    /// Offered in `connection.tune`; clients may only lower it.
    pub channel_max: u16,
    /// Offered heartbeat interval in seconds (0 disables).
    pub heartbeat_secs: u16,
    /// Largest message body accepted; larger ones close the channel with 406 before the body is
    /// buffered (`amqp.max_message_bytes`; the engine sizes queue logs to take it).
    pub max_message_bytes: u64,
    /// The largest batch the logs behind queues and streams take: a message of
    /// `max_message_bytes` with its properties and the batch framing. Streams declared through
    /// AMQP get it as their topic's `max.message.bytes`.
    pub log_message_bytes: u32,
}

/// RabbitMQ 4's default `max_message_size`: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 16 * 1024 * 1024;
/// The largest `max_message_size` RabbitMQ accepts: 512 MiB.
pub const MAX_MAX_MESSAGE_BYTES: u64 = 512 * 1024 * 1024;

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            channel_max: 2047,
            heartbeat_secs: 60,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            // The message, a content header of one 128 KiB frame, 1 KiB of batch framing.
            log_message_bytes: (DEFAULT_MAX_MESSAGE_BYTES + (129 << 10)) as u32,
        }
    }
}

/// Who may log in from where, and the resource alarms to honour.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Users that may only connect from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    pub alarms: watch::Receiver<Alarms>,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            loopback_users: vec![access::DEFAULT_USER.to_owned()],
            alarms: alarm::never(),
        }
    }
}

/// State every connection of one vhost shares.
#[derive(Debug)]
pub struct Shared {
    pub engine: Engine,
    pub topology: Arc<Topology>,
    pub settings: AmqpSettings,
    /// Direct reply-to consumers by token.
    pub(crate) reply_targets: handlers::reply_to::ReplyTargets,
    /// The armed head-of-queue expiry sweeps.
    pub expiry: expiry::ExpirySweeps,
    /// Broker-wide, so ids are unique across vhosts.
    connection_ids: Arc<AtomicU64>,
    /// Compressed batches stream consumers inflated lately (shared by every vhost).
    pub(crate) inflated: Arc<tributary_api::compression::InflatedBatches>,
    pub counters: metrics::MessageCounters,
    /// The feeds of queues bound to topics' exchanges (vhost `/` only).
    pub feeds: feed::TopicFeeds,
    /// Spreads unkeyed publishes to a topic's exchange over its partitions.
    pub round_robin: partitioner::RoundRobin,
}

impl Shared {
    /// A broker-wide unique id (connections and consumers draw from one counter).
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The AMQP 0-9-1 frontend, mounted by the broker shell.
#[derive(Debug)]
pub struct AmqpFrontend {
    vhosts: Arc<Vhosts>,
}

impl AmqpFrontend {
    pub fn new(engine: Engine, settings: AmqpSettings) -> Self {
        Self::with_access(engine, settings, AccessSettings::default())
    }

    pub fn with_access(engine: Engine, settings: AmqpSettings, access: AccessSettings) -> Self {
        Self {
            vhosts: Arc::new(Vhosts::new(
                engine,
                settings,
                access.loopback_users,
                access.alarms,
            )),
        }
    }

    /// Serves as one broker of `cluster`: a topic feed runs only on the leader of the
    /// partition it reads ([`feed`]). Call before serving; the first call wins.
    pub fn join_cluster(&self, cluster: Arc<dyn tributary_api::ClusterView>) {
        let _ = self.vhosts.cluster.set(cluster);
    }
}

#[async_trait]
impl Frontend for AmqpFrontend {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn default_port(&self) -> u16 {
        DEFAULT_PORT
    }

    /// Starts the topic feeds of the bindings restored from the metadata store.
    fn start_background(&self, background: BackgroundContext) {
        let vhosts = self.vhosts.clone();
        let tracker = background.tracker.clone();
        tracker.spawn(access::follow::follow_changes(
            self.admin(),
            background.shutdown.clone(),
        ));
        tracker.spawn(topology::follow::follow_changes(
            self.vhosts.clone(),
            background.shutdown.clone(),
        ));
        tracker.spawn(async move {
            if let Err(error) = vhosts.start_feeds(background).await {
                tracing::error!(%error, "cannot start the topic feeds; they start with the first AMQP connection");
            }
        });
    }

    async fn serve_connection(
        &self,
        stream: tributary_api::ConnectionStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError> {
        self.vhosts.ensure_started().await?;
        connection::serve(self.vhosts.clone(), stream, context)
            .await
            .map_err(Into::into)
    }
}
