//! The live administration face of the AMQP frontend, used by the broker's HTTP admin API:
//! read the topology of a vhost, declare and delete queues, exchanges and bindings, purge
//! queues, list and close connections, and apply changed users, permissions and vhosts to the
//! connections that are open.
//!
//! Invariants: every change goes through the same [`crate::topology::Topology`] calls the
//! protocol handlers use (so durable definitions are written the same way); admin calls act as
//! connection 0, which no AMQP connection has, so they never own or pass an exclusive queue;
//! a vhost must exist (in the metadata store) before anything of it is opened.

pub mod connections;

use std::sync::Arc;

use tributary_api::{MetadataStore, QueueDepth};

use crate::access::{self, Grant, Permissions};
use crate::codec::methods::{ExchangeDeclare, QueueDeclare};
use crate::codec::table::FieldTable;
use crate::definitions::EXCHANGE_NAMESPACE;
use crate::error::{AmqpError, NOT_FOUND, PRECONDITION_FAILED};
use crate::metrics::QueueCounts;
use crate::policy::QueueKind;
use crate::vhost::Vhosts;
use crate::{AmqpFrontend, Shared};

pub use connections::{ConnectionInfo, Connections};

/// The connection id admin calls act as (AMQP connections count from 1).
const ADMIN_CONNECTION: u64 = 0;

/// One queue as the admin API shows it.
#[derive(Debug, Clone)]
pub struct QueueView {
    pub name: String,
    pub vhost: String,
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub arguments: FieldTable,
    pub consumers: usize,
    /// `None` for a stream (its messages are a log, not a depth).
    pub depth: Option<QueueDepth>,
    /// Messages published, delivered, acked and redelivered since it was declared.
    pub stats: QueueCounts,
}

/// One exchange as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ExchangeView {
    pub name: String,
    pub vhost: String,
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// One binding; `destination_type` is `queue` or `exchange`.
#[derive(Debug, Clone)]
pub struct BindingView {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_type: &'static str,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// A queue to declare through the admin API.
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// An exchange to declare through the admin API.
#[derive(Debug, Clone, Default)]
pub struct ExchangeSpec {
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// The admin handle of one AMQP frontend.
#[derive(Debug, Clone)]
pub struct AmqpAdmin {
    vhosts: Arc<Vhosts>,
}

impl AmqpFrontend {
    /// The admin handle over this frontend's vhosts and connections.
    pub fn admin(&self) -> AmqpAdmin {
        AmqpAdmin {
            vhosts: self.vhosts.clone(),
        }
    }
}

fn not_found(what: &str, name: &str, vhost: &str) -> AmqpError {
    AmqpError::channel(
        NOT_FOUND,
        format_args!("no {what} '{name}' in vhost '{vhost}'"),
    )
}

impl AmqpAdmin {
    pub fn store(&self) -> &dyn MetadataStore {
        self.vhosts.engine().metadata.as_ref()
    }

    /// The opened state of an existing vhost.
    async fn shared(&self, vhost: &str) -> Result<Arc<Shared>, AmqpError> {
        self.vhosts.ensure_started().await?;
        if !access::vhost_exists(self.store(), vhost).await? {
            return Err(AmqpError::channel(
                NOT_FOUND,
                format_args!("no vhost '{vhost}'"),
            ));
        }
        self.vhosts.open(vhost).await
    }

    pub async fn queues(&self, vhost: &str) -> Result<Vec<QueueView>, AmqpError> {
        let shared = self.shared(vhost).await?;
        let mut out = Vec::new();
        for (name, info) in shared.topology.queues_snapshot() {
            let depth = match info.is_stream() {
                true => None,
                // A queue deleted since the snapshot has no depth: it is not listed.
                false => match shared.engine.queues.depth(&name).await {
                    Ok(depth) => Some(depth),
                    Err(_) => continue,
                },
            };
            out.push(QueueView {
                kind: match info.policy.kind {
                    QueueKind::Classic => "classic",
                    QueueKind::Quorum => "quorum",
                    QueueKind::Stream => "stream",
                },
                vhost: vhost.to_owned(),
                durable: info.durable,
                auto_delete: info.auto_delete,
                exclusive: info.exclusive_owner.is_some(),
                arguments: info.arguments.clone(),
                consumers: info.consumers,
                depth,
                stats: info.stats.counts(),
                name,
            });
        }
        Ok(out)
    }

    pub async fn queue(&self, vhost: &str, name: &str) -> Result<QueueView, AmqpError> {
        let queues = self.queues(vhost).await?;
        let found = queues.into_iter().find(|queue| queue.name == name);
        found.ok_or_else(|| not_found("queue", name, vhost))
    }

    pub async fn exchanges(&self, vhost: &str) -> Result<Vec<ExchangeView>, AmqpError> {
        let shared = self.shared(vhost).await?;
        let exchanges = shared.topology.exchanges_snapshot();
        let visible = exchanges
            .into_iter()
            .filter(|(_, exchange)| !exchange.topic);
        Ok(visible
            .map(|(name, exchange)| ExchangeView {
                name,
                vhost: vhost.to_owned(),
                kind: exchange.kind.name(),
                durable: exchange.durable,
                auto_delete: exchange.auto_delete,
                internal: exchange.internal,
                arguments: exchange.arguments,
            })
            .collect())
    }

    pub async fn exchange(&self, vhost: &str, name: &str) -> Result<ExchangeView, AmqpError> {
        let exchanges = self.exchanges(vhost).await?;
        let found = exchanges.into_iter().find(|exchange| exchange.name == name);
        found.ok_or_else(|| not_found("exchange", name, vhost))
    }

    /// Every binding of the vhost, queue bindings first; the default exchange's implicit
    /// bindings (one per queue, as RabbitMQ lists them) included.
    pub async fn bindings(&self, vhost: &str) -> Result<Vec<BindingView>, AmqpError> {
        let shared = self.shared(vhost).await?;
        let mut out = Vec::new();
        for (name, _) in shared.topology.queues_snapshot() {
            out.push(BindingView {
                vhost: vhost.to_owned(),
                source: String::new(),
                routing_key: name.clone(),
                destination: name,
                destination_type: "queue",
                arguments: FieldTable::default(),
            });
        }
        let exchanges = shared.topology.exchanges_snapshot();
        for (destination_type, exchange_bindings) in [("queue", false), ("exchange", true)] {
            for (source, exchange) in &exchanges {
                let list = match exchange_bindings {
                    false => &exchange.bindings,
                    true => &exchange.exchange_bindings,
                };
                for binding in list {
                    out.push(BindingView {
                        vhost: vhost.to_owned(),
                        source: source.clone(),
                        destination: binding.destination.clone(),
                        destination_type,
                        routing_key: binding.routing_key.clone(),
                        arguments: binding.arguments.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Declares a queue (or checks an existing one is equivalent, as `queue.declare` does).
    pub async fn declare_queue(
        &self,
        vhost: &str,
        name: &str,
        spec: QueueSpec,
    ) -> Result<(), AmqpError> {
        if name.is_empty() || name.contains('\u{1f}') {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "a queue name is not empty and has no U+001F",
            ));
        }
        let shared = self.shared(vhost).await?;
        let decl = QueueDeclare {
            queue: name.to_owned(),
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            arguments: spec.arguments,
            ..QueueDeclare::default()
        };
        shared
            .topology
            .declare_queue(&decl, ADMIN_CONNECTION)
            .await?;
        Ok(())
    }

    /// Deletes a queue with its messages; refused while it has consumers.
    pub async fn delete_queue(&self, vhost: &str, name: &str) -> Result<u64, AmqpError> {
        let shared = self.shared(vhost).await?;
        let info = shared.topology.check_queue(name, ADMIN_CONNECTION)?;
        if info.consumers > 0 {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "queue '{name}' in vhost '{vhost}' has {} consumers; cancel them first",
                    info.consumers
                ),
            ));
        }
        let count = shared.topology.delete_queue(name).await?;
        Ok(count)
    }

    /// Removes a queue's ready messages; a stream keeps its log (as in RabbitMQ).
    pub async fn purge_queue(&self, vhost: &str, name: &str) -> Result<u64, AmqpError> {
        let shared = self.shared(vhost).await?;
        let info = shared.topology.check_queue(name, ADMIN_CONNECTION)?;
        if info.is_stream() {
            return Ok(0);
        }
        let purged = shared.engine.queues.purge_queue(name).await?;
        Ok(purged)
    }

    pub async fn declare_exchange(
        &self,
        vhost: &str,
        name: &str,
        spec: ExchangeSpec,
    ) -> Result<(), AmqpError> {
        let shared = self.shared(vhost).await?;
        let decl = ExchangeDeclare {
            exchange: name.to_owned(),
            kind: spec.kind,
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            internal: spec.internal,
            arguments: spec.arguments,
            ..ExchangeDeclare::default()
        };
        let record = shared.topology.declare_exchange(&decl)?;
        shared.topology.persist(EXCHANGE_NAMESPACE, record).await
    }

    pub async fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), AmqpError> {
        let shared = self.shared(vhost).await?;
        if !shared
            .topology
            .exchanges_snapshot()
            .iter()
            .any(|(known, exchange)| known == name && !exchange.topic)
        {
            return Err(not_found("exchange", name, vhost));
        }
        shared.topology.delete_exchange(name, false).await
    }

    /// Binds `destination` (a queue or, with `to_exchange`, an exchange) to `source`.
    pub async fn bind(
        &self,
        vhost: &str,
        source: &str,
        destination: &str,
        to_exchange: bool,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), AmqpError> {
        let shared = self.shared(vhost).await?;
        let topology = &shared.topology;
        if to_exchange {
            return topology
                .bind_exchange(destination, source, routing_key, arguments, true)
                .await;
        }
        topology
            .bind(
                destination,
                source,
                routing_key,
                arguments,
                ADMIN_CONNECTION,
            )
            .await?;
        if !topology.topic_bindings(source).is_empty() {
            crate::feed::ensure(&shared, source);
        }
        Ok(())
    }

    pub async fn unbind(
        &self,
        vhost: &str,
        source: &str,
        destination: &str,
        to_exchange: bool,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(), AmqpError> {
        let shared = self.shared(vhost).await?;
        let topology = &shared.topology;
        if to_exchange {
            return topology
                .bind_exchange(destination, source, routing_key, arguments, false)
                .await;
        }
        topology
            .unbind(
                destination,
                source,
                routing_key,
                arguments,
                ADMIN_CONNECTION,
            )
            .await
    }

    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.vhosts.connections.list()
    }

    /// Closes connection `id` with `320 CONNECTION_FORCED` and `reason`.
    pub fn close_connection(&self, id: u64, reason: &str) -> bool {
        self.vhosts.connections.close(id, reason)
    }

    /// Closes every connection of `user` (a deleted user); returns how many.
    pub fn close_user_connections(&self, user: &str, reason: &str) -> usize {
        let connections = &self.vhosts.connections;
        connections.close_where(reason, |info| info.user == user)
    }

    /// Gives the open connections of `user` (all users when `None`) the permissions stored now
    /// for their vhost; a connection whose permissions were cleared is refused everything.
    pub async fn refresh_grants(&self, user: Option<&str>) -> Result<(), AmqpError> {
        let connections = &self.vhosts.connections;
        let pairs = connections.grants_to_refresh(|u, _| user.is_none_or(|user| user == u));
        for (user, vhost) in pairs {
            let stored = access::permissions(self.store(), &vhost, &user).await?;
            let nothing = Permissions {
                configure: String::new(),
                write: String::new(),
                read: String::new(),
            };
            let grant = Grant::compile(&stored.unwrap_or(nothing.clone()))
                .or_else(|_| Grant::compile(&nothing))
                .map_err(|why| AmqpError::channel(PRECONDITION_FAILED, why))?;
            connections.swap_grant(&user, &vhost, &grant);
        }
        Ok(())
    }

    /// Refuses every method of every open connection until [`AmqpAdmin::refresh_grants`]
    /// succeeds again: what a broker does when it cannot read a grant another broker changed
    /// (a stale grant could allow what was revoked).
    pub fn suspend_grants(&self) {
        let connections = &self.vhosts.connections;
        let nothing = Permissions {
            configure: String::new(),
            write: String::new(),
            read: String::new(),
        };
        let Ok(grant) = Grant::compile(&nothing) else {
            return;
        };
        for (user, vhost) in connections.grants_to_refresh(|_, _| true) {
            connections.swap_grant(&user, &vhost, &grant);
        }
    }

    /// A vhost deleted elsewhere (another broker of a shared store): its connections here
    /// close and its state here goes.
    pub async fn forget_vhost(&self, name: &str) -> Result<(), AmqpError> {
        let reason = format!("vhost '{name}' is deleted");
        self.vhosts
            .connections
            .close_where(&reason, |info| info.vhost == name);
        self.vhosts.drop_vhost(name).await
    }

    /// Deletes a vhost at once: its connections close, its definitions and permissions go, and
    /// so do its queues' messages and its streams. Returns false when it did not exist.
    pub async fn delete_vhost(&self, name: &str) -> Result<bool, AmqpError> {
        self.vhosts.ensure_started().await?;
        if !access::delete_vhost(self.store(), name).await? {
            return Ok(false);
        }
        let reason = format!("vhost '{name}' is deleted");
        let connections = &self.vhosts.connections;
        connections.close_where(&reason, |info| info.vhost == name);
        self.vhosts.drop_vhost(name).await?;
        Ok(true)
    }
}
