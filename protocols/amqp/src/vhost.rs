//! Virtual hosts at run time: each opened vhost gets its own [`Shared`] (topology, expiry
//! sweeps, reply-to targets) over a view of the engine whose queue names carry the vhost.
//!
//! Engine queue names: a queue `q` of vhost `/` is the engine queue `q` (as before vhosts
//! existed); in any other vhost `v` it is `U+001F v' U+001F q`, where `v'` is `v` with `%` and
//! `/` percent-encoded (the engine refuses `/`); a stream's topic is named the same way. U+001F
//! already separates the parts of definition keys, vhost names cannot contain control
//! characters, so no two (vhost, queue) pairs share an engine name and a `/` queue never looks
//! like another vhost's.
//!
//! Invariants: handlers only ever see AMQP queue names (the view maps names both ways, errors
//! included); a vhost is opened once per process and loaded from the metadata store then;
//! engine queues and stream topics of vhosts that no longer exist (deleted while the broker was
//! down) are removed the first time the frontend serves a connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, OnceCell, watch};
use tributary_api::{
    AppendOutcome, BackgroundContext, Delivery, Engine, EngineError, EngineResult, HeadFilter,
    HeadTake, QueueDepth, QueueOptions, QueueService,
};

use crate::access::{self, DEFAULT_VHOST};
use crate::alarm::Alarms;
use crate::error::AmqpError;
use crate::topology::Topology;
use crate::{AmqpSettings, Shared};

const SEPARATOR: char = '\u{1f}';

fn encode_vhost(vhost: &str) -> String {
    vhost.replace('%', "%25").replace('/', "%2F")
}

fn decode_vhost(encoded: &str) -> String {
    encoded.replace("%2F", "/").replace("%25", "%")
}

/// The engine's name for queue `queue` of `vhost`.
pub fn engine_queue_name(vhost: &str, queue: &str) -> String {
    if vhost == DEFAULT_VHOST {
        queue.to_owned()
    } else {
        format!("{SEPARATOR}{}{SEPARATOR}{queue}", encode_vhost(vhost))
    }
}

/// The (vhost, queue) an engine queue name stands for.
pub fn split_engine_queue_name(name: &str) -> (String, &str) {
    match name
        .strip_prefix(SEPARATOR)
        .and_then(|rest| rest.split_once(SEPARATOR))
    {
        Some((vhost, queue)) => (decode_vhost(vhost), queue),
        None => (DEFAULT_VHOST.to_owned(), name),
    }
}

/// The engine's queues as one vhost sees them.
#[derive(Debug)]
pub struct VhostQueues {
    inner: Arc<dyn QueueService>,
    vhost: String,
}

impl VhostQueues {
    fn name(&self, queue: &str) -> String {
        engine_queue_name(&self.vhost, queue)
    }

    /// Engine errors name engine queues; give them back their AMQP names.
    fn error(&self, error: EngineError) -> EngineError {
        match error {
            EngineError::UnknownQueue(name) => {
                EngineError::UnknownQueue(split_engine_queue_name(&name).1.to_owned())
            }
            EngineError::InvalidName(name) => {
                EngineError::InvalidName(split_engine_queue_name(&name).1.to_owned())
            }
            other => other,
        }
    }
}

#[async_trait]
impl QueueService for VhostQueues {
    async fn declare_queue(&self, name: &str, options: QueueOptions) -> EngineResult<QueueDepth> {
        let result = self.inner.declare_queue(&self.name(name), options).await;
        result.map_err(|e| self.error(e))
    }

    async fn delete_queue(&self, name: &str) -> EngineResult<u64> {
        let result = self.inner.delete_queue(&self.name(name)).await;
        result.map_err(|e| self.error(e))
    }

    async fn purge_queue(&self, name: &str) -> EngineResult<u64> {
        let result = self.inner.purge_queue(&self.name(name)).await;
        result.map_err(|e| self.error(e))
    }

    async fn enqueue(&self, name: &str, batch: Bytes) -> EngineResult<AppendOutcome> {
        let result = self.inner.enqueue(&self.name(name), batch).await;
        result.map_err(|e| self.error(e))
    }

    async fn take(&self, name: &str, max: usize) -> EngineResult<Vec<Delivery>> {
        let result = self.inner.take(&self.name(name), max).await;
        result.map_err(|e| self.error(e))
    }

    async fn take_head_while(
        &self,
        name: &str,
        max: usize,
        accept: HeadFilter,
    ) -> EngineResult<HeadTake> {
        let result = self
            .inner
            .take_head_while(&self.name(name), max, accept)
            .await;
        result.map_err(|e| self.error(e))
    }

    async fn wait_ready(&self, name: &str, timeout: Duration) -> EngineResult<bool> {
        let result = self.inner.wait_ready(&self.name(name), timeout).await;
        result.map_err(|e| self.error(e))
    }

    async fn ack(&self, name: &str, ids: &[u64]) -> EngineResult<()> {
        let result = self.inner.ack(&self.name(name), ids).await;
        result.map_err(|e| self.error(e))
    }

    async fn requeue(&self, name: &str, ids: &[u64]) -> EngineResult<()> {
        let result = self.inner.requeue(&self.name(name), ids).await;
        result.map_err(|e| self.error(e))
    }

    async fn depth(&self, name: &str) -> EngineResult<QueueDepth> {
        self.inner
            .depth(&self.name(name))
            .await
            .map_err(|e| self.error(e))
    }

    async fn queues(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.inner.queues().await {
            let (vhost, queue) = split_engine_queue_name(&name);
            if vhost == self.vhost {
                out.push(queue.to_owned());
            }
        }
        out
    }
}

/// Broker-wide AMQP state: the engine, settings, alarms and the opened vhosts.
#[derive(Debug)]
pub struct Vhosts {
    engine: Engine,
    settings: AmqpSettings,
    pub(crate) loopback_users: Vec<String>,
    pub(crate) alarms: watch::Receiver<Alarms>,
    connection_ids: Arc<AtomicU64>,
    /// Compressed batches stream consumers inflated lately, shared by every vhost.
    inflated: Arc<tributary_api::compression::InflatedBatches>,
    opened: Mutex<HashMap<String, Arc<Shared>>>,
    /// The open connections, for the admin API.
    pub(crate) connections: Arc<crate::admin::Connections>,
    started: OnceCell<()>,
    /// Where the topic feeds run, once the broker shell started the frontend.
    background: std::sync::OnceLock<BackgroundContext>,
    /// The membership when several brokers serve one log: feeds run on partition leaders.
    pub(crate) cluster: std::sync::OnceLock<Arc<dyn tributary_api::ClusterView>>,
}

impl Vhosts {
    pub fn new(
        engine: Engine,
        settings: AmqpSettings,
        loopback_users: Vec<String>,
        alarms: watch::Receiver<Alarms>,
    ) -> Self {
        Self {
            engine,
            settings,
            loopback_users,
            alarms,
            connection_ids: Arc::new(AtomicU64::new(0)),
            inflated: Default::default(),
            opened: Mutex::new(HashMap::new()),
            connections: Arc::default(),
            started: OnceCell::new(),
            background: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn settings(&self) -> AmqpSettings {
        self.settings
    }

    /// Seeds the default vhost and grant and drops queues of deleted vhosts, once.
    pub async fn ensure_started(&self) -> Result<(), AmqpError> {
        self.started
            .get_or_try_init(|| async {
                let store = self.engine.metadata.as_ref();
                access::ensure_defaults(store).await?;
                for name in self.engine.queues.queues().await {
                    let (vhost, _) = split_engine_queue_name(&name);
                    if vhost != DEFAULT_VHOST && !access::vhost_exists(store, &vhost).await? {
                        tracing::info!(vhost, queue = name, "removing a queue of a deleted vhost");
                        self.engine.queues.delete_queue(&name).await?;
                    }
                }
                // Streams of other vhosts are topics named like their engine queues.
                for topic in self.engine.topics.list_topics() {
                    let (vhost, stream) = split_engine_queue_name(&topic.name);
                    if vhost != DEFAULT_VHOST
                        && !topic.internal
                        && !access::vhost_exists(store, &vhost).await?
                    {
                        tracing::info!(vhost, stream, "removing a stream of a deleted vhost");
                        self.engine.topics.delete_topic(&topic.name).await?;
                    }
                }
                Ok::<(), AmqpError>(())
            })
            .await
            .map(|_| ())
    }

    /// Opens vhost `/` (and with it the topic feeds of its restored bindings); feeds started
    /// later run under `background` too.
    pub async fn start_feeds(&self, background: BackgroundContext) -> Result<(), AmqpError> {
        let _ = self.background.set(background);
        self.ensure_started().await?;
        let shared = self.open(DEFAULT_VHOST).await?;
        if let Some(background) = self.background.get() {
            crate::feed::start(&shared, background.clone());
        }
        Ok(())
    }

    /// Forgets a deleted vhost: its opened state goes, and so do its engine queues and its
    /// streams' topics (the admin API's live delete; at start [`Vhosts::ensure_started`] does
    /// the same for vhosts deleted while the broker was down).
    pub async fn drop_vhost(&self, vhost: &str) -> Result<(), AmqpError> {
        if vhost == DEFAULT_VHOST {
            return Ok(());
        }
        self.opened.lock().await.remove(vhost);
        for name in self.engine.queues.queues().await {
            if split_engine_queue_name(&name).0 == vhost {
                self.engine.queues.delete_queue(&name).await?;
            }
        }
        for topic in self.engine.topics.list_topics() {
            if !topic.internal && split_engine_queue_name(&topic.name).0 == vhost {
                self.engine.topics.delete_topic(&topic.name).await?;
            }
        }
        Ok(())
    }

    /// The vhosts opened so far.
    pub(crate) async fn opened(&self) -> Vec<Arc<Shared>> {
        self.opened.lock().await.values().cloned().collect()
    }

    /// The state of `vhost`, opened (and its durable definitions loaded) on first use.
    pub async fn open(&self, vhost: &str) -> Result<Arc<Shared>, AmqpError> {
        let mut opened = self.opened.lock().await;
        if let Some(shared) = opened.get(vhost) {
            return Ok(shared.clone());
        }
        let mut engine = self.engine.clone();
        engine.queues = Arc::new(VhostQueues {
            inner: self.engine.queues.clone(),
            vhost: vhost.to_owned(),
        });
        let topology = Topology::new(engine.clone(), vhost, self.settings.log_message_bytes);
        let shared = Arc::new(Shared {
            engine,
            topology,
            settings: self.settings,
            reply_targets: Default::default(),
            expiry: Default::default(),
            connection_ids: self.connection_ids.clone(),
            inflated: self.inflated.clone(),
            counters: Default::default(),
            feeds: Default::default(),
            round_robin: Default::default(),
        });
        if let Some(cluster) = self.cluster.get() {
            shared.feeds.join_cluster(cluster.clone());
        }
        shared.topology.ensure_loaded().await?;
        crate::expiry::arm_all_once(&shared).await;
        // Only vhost `/` shows topics as exchanges.
        if let Some(background) = self.background.get().filter(|_| vhost == DEFAULT_VHOST) {
            crate::feed::start(&shared, background.clone());
        }
        opened.insert(vhost.to_owned(), shared.clone());
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_keep_vhosts_apart_and_round_trip() {
        assert_eq!(engine_queue_name("/", "q"), "q");
        let a = engine_queue_name("a", "q");
        let b = engine_queue_name("b", "q");
        assert_ne!(a, b);
        assert_ne!(a, "q");
        for vhost in ["/", "a", "a/b", "%2F", "x%y"] {
            let name = engine_queue_name(vhost, "orders");
            assert!(!name.contains('/'), "{name}");
            assert_eq!(split_engine_queue_name(&name), (vhost.to_owned(), "orders"));
        }
    }
}
