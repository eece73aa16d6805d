//! Following definitions other brokers made (a metadata store shared by several brokers, the
//! cloud engine): durable queues and their bindings declared through another broker are added
//! here when the store says their namespace changed, so a client may use a queue through any
//! broker without declaring it there first. A no-op on the local engine, whose generations
//! never move.
//!
//! Known limit: what another broker deletes stays here until this broker restarts (as for
//! exchanges, see [`Topology::refresh_exchanges`]); using it then fails in the engine
//! (NOT_FOUND from the queue service).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Topology;
use crate::definitions::{self as defs, BINDING_NAMESPACE, QUEUE_NAMESPACE};
use crate::error::AmqpError;
use crate::policy::{QueueKind, QueuePolicy};

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
}
