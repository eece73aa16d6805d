//! Following definitions other brokers made (a metadata store shared by several brokers, the
//! cloud engine): durable queues and their bindings declared through another broker are added
//! here when the store says their namespace changed, so a client may use a queue through any
//! broker without declaring it there first. A no-op on the local engine, whose generations
//! never move.
//!
//! Deletions follow too: a durable queue, exchange or queue binding that this broker saw in the
//! store at its last read and that is gone from it now was deleted through another broker, and
//! goes from here (a queue with its bindings; its consumers here are cancelled with
//! basic.cancel by their next take, which the engine refuses).
//!
//! Invariants: only what the store held at the previous read ([`StoredKeys`]) can be dropped,
//! so a queue, exchange or binding being declared here (in the local state before its record
//! is written) is never mistaken for a deleted one; what this broker deletes itself leaves the
//! previous read at once. Exchange-to-exchange bindings deleted elsewhere stay until restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Topology;
use crate::definitions::{self as defs, BINDING_NAMESPACE, EXCHANGE_NAMESPACE, QUEUE_NAMESPACE};
use crate::error::AmqpError;
use crate::policy::{QueueKind, QueuePolicy};

/// The store keys of the durable definitions as the store held them at the last read.
#[derive(Debug, Default)]
pub(super) struct StoredKeys {
    pub(super) exchanges: HashSet<String>,
    pub(super) queues: HashSet<String>,
    pub(super) bindings: HashSet<String>,
}

fn keys(records: &[(String, crate::codec::table::FieldTable)]) -> HashSet<String> {
    records.iter().map(|(key, _)| key.clone()).collect()
}

/// Wait before retrying a refresh that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Applies definitions other brokers changed to every opened vhost as soon as the store says
/// they changed (not only at this broker's next request), and starts the topic feeds of
/// bindings made through them, until `shutdown`. Returns at once for a store without changes
/// (the local engine).
pub(crate) async fn follow_changes(vhosts: Arc<crate::vhost::Vhosts>, shutdown: CancellationToken) {
    let Some(mut changes) = vhosts.engine().metadata.changes() else {
        return;
    };
    let mut failed = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed(), if !failed => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(RETRY), if failed => {}
        }
        failed = false;
        for shared in vhosts.opened().await {
            if let Err(error) = shared.topology.refresh().await {
                tracing::warn!(vhost = shared.topology.vhost(), %error, "cannot apply another broker's definitions yet; retrying");
                failed = true;
                continue;
            }
            crate::feed::ensure_all(&shared);
        }
    }
}

impl Topology {
    /// Exchanges, then queues and queue bindings another broker added since they were last
    /// read (each only when its namespace changed).
    pub async fn refresh(self: &Arc<Self>) -> Result<(), AmqpError> {
        self.refresh_exchanges().await?;
        self.refresh_queues().await
    }

    async fn refresh_queues(self: &Arc<Self>) -> Result<(), AmqpError> {
        let queues_generation = self.store().generation(QUEUE_NAMESPACE);
        let bindings_generation = self.store().generation(BINDING_NAMESPACE);
        let unchanged = self.queues_seen.load(Ordering::Acquire) == queues_generation
            && self.bindings_seen.load(Ordering::Acquire) == bindings_generation;
        if self.loaded.get().is_none() || unchanged {
            return Ok(());
        }
        let prefix = defs::key(&[&self.vhost, ""]);
        let queues = defs::load(self.store(), QUEUE_NAMESPACE, &prefix).await?;
        let bindings = defs::load(self.store(), BINDING_NAMESPACE, &prefix).await?;
        self.drop_deleted_queues(keys(&queues), keys(&bindings));
        let fresh: Vec<_> = {
            let state = self.state.lock();
            queues
                .into_iter()
                .filter(|(key, _)| {
                    defs::split_key(key)
                        .get(1)
                        .is_some_and(|name| !state.queues.contains_key(*name))
                })
                .collect()
        };
        for (key, table) in &fresh {
            if let Some(&name) = defs::split_key(key).get(1) {
                let policy =
                    QueuePolicy::stored(self.queue_ref(name), &defs::nested(table, "arguments"));
                // A stream needs its source resolved; a queue's storage is the engine's own.
                if policy.kind == QueueKind::Stream {
                    self.declare_storage(name, &policy, true).await?;
                }
                tracing::info!(
                    queue = name,
                    "learnt a queue declared through another broker"
                );
            }
        }
        let (leases, _stale) = self.install_loaded(Vec::new(), fresh, bindings, Vec::new());
        {
            // Bindings known here were loaded again: keep one of each.
            let mut state = self.state.lock();
            for exchange in state.exchanges.values_mut() {
                let mut kept: Vec<super::Binding> = Vec::with_capacity(exchange.bindings.len());
                for binding in exchange.bindings.drain(..) {
                    if !kept.contains(&binding) {
                        kept.push(binding);
                    }
                }
                exchange.bindings = kept;
            }
        }
        for (name, lease) in leases {
            crate::lease::watch(self, &name, &lease);
        }
        self.queues_seen.store(queues_generation, Ordering::Release);
        self.bindings_seen
            .store(bindings_generation, Ordering::Release);
        Ok(())
    }

    /// Drops the queues and queue bindings deleted through another broker: stored at the
    /// previous read, absent from `queues` and `bindings` (the store now).
    fn drop_deleted_queues(&self, queues: HashSet<String>, bindings: HashSet<String>) {
        let mut stored = self.stored.lock();
        let mut state = self.state.lock();
        let gone: Vec<String> = state
            .queues
            .iter()
            .filter(|(name, info)| {
                let key = defs::key(&[&self.vhost, name]);
                info.persisted() && stored.queues.contains(&key) && !queues.contains(&key)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            state.queues.remove(name);
            tracing::info!(
                vhost = %self.vhost,
                queue = %name,
                "queue deleted through another broker"
            );
        }
        let mut emptied_topics = Vec::new();
        for (exchange_name, exchange) in state.exchanges.iter_mut() {
            let before = exchange.bindings.len();
            exchange.bindings.retain(|binding| {
                let key = self.binding_key(exchange_name, binding);
                let deleted = stored.bindings.contains(&key) && !bindings.contains(&key);
                !deleted && !gone.contains(&binding.destination)
            });
            if exchange.topic && before > 0 && exchange.bindings.is_empty() {
                emptied_topics.push(exchange_name.clone());
            }
        }
        for name in emptied_topics {
            state.exchanges.remove(&name);
        }
        stored.queues = queues;
        stored.bindings = bindings;
    }

    /// Drops the durable exchanges deleted through another broker (stored at the previous
    /// read, absent from `exchanges` now), with the exchange bindings leading into them.
    pub(super) fn drop_deleted_exchanges(&self, exchanges: HashSet<String>) {
        let mut stored = self.stored.lock();
        let mut state = self.state.lock();
        let gone: Vec<String> = state
            .exchanges
            .iter()
            .filter(|(name, exchange)| {
                let key = defs::key(&[&self.vhost, name]);
                exchange.durable
                    && !exchange.topic
                    && !name.is_empty()
                    && !name.starts_with("amq.")
                    && stored.exchanges.contains(&key)
                    && !exchanges.contains(&key)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            state.exchanges.remove(name);
            tracing::info!(
                vhost = %self.vhost,
                exchange = %name,
                "exchange deleted through another broker"
            );
        }
        if !gone.is_empty() {
            for exchange in state.exchanges.values_mut() {
                exchange
                    .exchange_bindings
                    .retain(|binding| !gone.contains(&binding.destination));
            }
        }
        stored.exchanges = exchanges;
    }

    /// Records what the store held at a full load.
    pub(super) fn remember_stored(
        &self,
        exchanges: &[(String, crate::codec::table::FieldTable)],
        queues: &[(String, crate::codec::table::FieldTable)],
        bindings: &[(String, crate::codec::table::FieldTable)],
    ) {
        let mut stored = self.stored.lock();
        stored.exchanges = keys(exchanges);
        stored.queues = keys(queues);
        stored.bindings = keys(bindings);
    }

    /// A definition this broker deleted leaves the previous read, so that declaring it again
    /// here before the next read is not taken for another broker's deletion.
    pub(crate) fn forget_stored(&self, namespace: &str, key: &str) {
        let mut stored = self.stored.lock();
        match namespace {
            EXCHANGE_NAMESPACE => stored.exchanges.remove(key),
            QUEUE_NAMESPACE => stored.queues.remove(key),
            BINDING_NAMESPACE => stored.bindings.remove(key),
            _ => false,
        };
    }
}
