//! The AMQP topology of one vhost: exchanges, queues' AMQP attributes and bindings,
//! shared by every connection. Messages live in the engine's queues; durable definitions are
//! mirrored into the metadata store ([`crate::definitions`]) and loaded on first use.
//!
//! Invariants: the lock is never held across an `.await`; the default exchange `""` and the
//! predeclared `amq.*` exchanges always exist; every binding names an existing queue.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, watch};
use tributary_api::queue::QueueOptions;
use tributary_api::{Engine, MetadataStore};

use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions::{
    self as defs, BINDING_NAMESPACE, EXCHANGE_BINDING_NAMESPACE, EXCHANGE_NAMESPACE,
    QUEUE_NAMESPACE,
};
use crate::error::{ACCESS_REFUSED, AmqpError, NOT_FOUND, PRECONDITION_FAILED, RESOURCE_LOCKED};
use crate::lease::{Lease, LeaseCheck};
use crate::metrics::QueueStats;
use crate::policy::{QueueKind, QueuePolicy, QueueRef};
use crate::routing::ExchangeKind;

mod exchanges;
pub(crate) mod follow;
mod queues;
mod snapshot;
mod streams;
mod topics;

const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

#[derive(Debug, Clone)]
pub struct Exchange {
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// Queue bindings.
    pub bindings: Vec<Binding>,
    /// Exchange-to-exchange bindings with this exchange as the source.
    pub exchange_bindings: Vec<Binding>,
    /// The exchange of the topic of the same name (vhost `/`, see `topics`): never stored
    /// itself, only its queue bindings are; present while it has bindings.
    pub topic: bool,
}

impl Exchange {
    /// The `alternate-exchange` argument: where messages this exchange cannot route go.
    pub fn alternate(&self) -> Option<&str> {
        self.arguments
            .get("alternate-exchange")
            .and_then(FieldValue::as_str)
    }
}

/// A binding from an exchange to a queue or (in `exchange_bindings`) to another exchange.
/// Its identity (equality) is destination, routing key and arguments.
#[derive(Debug, Clone)]
pub struct Binding {
    pub destination: String,
    pub routing_key: String,
    pub arguments: FieldTable,
    /// On a topic's exchange: where the binding starts receiving the topic's records.
    pub topic_start: Option<Arc<TopicStart>>,
}

impl PartialEq for Binding {
    fn eq(&self, other: &Self) -> bool {
        self.destination == other.destination
            && self.routing_key == other.routing_key
            && self.arguments == other.arguments
    }
}

/// The topic's high watermarks when a queue was bound to its exchange: the queue gets the
/// records at or after these offsets (all of a partition added after the bind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStart {
    /// The topic's id at bind time; a topic deleted and created again is another topic.
    pub topic_id: [u8; 16],
    pub offsets: Vec<i64>,
}

impl TopicStart {
    /// The first offset of `partition` the binding receives.
    pub fn offset(&self, partition: u32) -> i64 {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.offsets.get(p).copied())
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub policy: QueuePolicy,
    pub consumers: usize,
    /// The consumer that holds the queue with `basic.consume exclusive`.
    pub exclusive_consumer: Option<u64>,
    /// Single-active-consumer queues: consumer ids in registration order and the id of the
    /// one that may receive (0 = none), watched by the consumer tasks.
    pub waiting_consumers: Vec<u64>,
    pub active_consumer: Option<Arc<watch::Sender<u64>>>,
    /// The `x-expires` lease, if the queue has one.
    pub lease: Option<Arc<Lease>>,
    /// Message counts for the admin API; they go with the queue.
    pub stats: Arc<QueueStats>,
}

impl QueueInfo {
    pub fn is_stream(&self) -> bool {
        self.policy.kind == QueueKind::Stream
    }

    /// Whether the definition is in the metadata store (durable and not exclusive).
    pub fn persisted(&self) -> bool {
        self.durable && self.exclusive_owner.is_none()
    }
}

#[derive(Debug, Default)]
struct State {
    exchanges: HashMap<String, Exchange>,
    queues: HashMap<String, QueueInfo>,
    /// Where each declared stream reads and writes, resolved when it was declared or loaded.
    streams: HashMap<String, streams::StreamSource>,
}

/// The shared topology.
#[derive(Debug)]
pub struct Topology {
    engine: Engine,
    vhost: String,
    state: Mutex<State>,
    loaded: OnceCell<()>,
    /// The store's generation of [`EXCHANGE_NAMESPACE`] when exchanges were last read from it
    /// (see [`Topology::refresh_exchanges`]).
    exchanges_seen: std::sync::atomic::AtomicU64,
    /// The store's generations of the queue and binding namespaces when they were last read
    /// (see [`Topology::refresh`]).
    queues_seen: std::sync::atomic::AtomicU64,
    bindings_seen: std::sync::atomic::AtomicU64,
    /// The durable definitions the store held at the last read, to tell what another broker
    /// deleted from what is being declared here ([`follow`]). Locked before `state`.
    stored: Mutex<follow::StoredKeys>,
    /// `max.message.bytes` of the topics stream declarations create
    /// ([`crate::AmqpSettings::log_message_bytes`]).
    stream_max_message_bytes: u32,
}

impl Topology {
    pub(crate) fn not_found_queue(&self, name: &str) -> AmqpError {
        let vhost = &self.vhost;
        AmqpError::channel(
            NOT_FOUND,
            format_args!("no queue '{name}' in vhost '{vhost}'"),
        )
    }

    pub(crate) fn not_found_exchange(&self, name: &str) -> AmqpError {
        let vhost = &self.vhost;
        AmqpError::channel(
            NOT_FOUND,
            format_args!("no exchange '{name}' in vhost '{vhost}'"),
        )
    }

    pub(crate) fn locked(&self, name: &str) -> AmqpError {
        let vhost = &self.vhost;
        AmqpError::channel(
            RESOURCE_LOCKED,
            format_args!(
                "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It \
                 could be originally declared on another connection or the exclusive property \
                 value does not match that of the original declaration."
            ),
        )
    }

    pub(crate) fn inequivalent(
        &self,
        what: &str,
        arg: &str,
        name: &str,
        received: &str,
        current: &str,
    ) -> AmqpError {
        let vhost = &self.vhost;
        AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!(
                "inequivalent arg '{arg}' for {what} '{name}' in vhost '{vhost}': received {received} but current is {current}"
            ),
        )
    }
}

/// A durable exchange from its stored record, without bindings; `None` for an unknown type.
fn stored_exchange(table: &FieldTable) -> Option<Exchange> {
    let kind = table
        .get("type")
        .and_then(FieldValue::as_str)
        .and_then(ExchangeKind::parse)?;
    Some(Exchange {
        kind,
        durable: true,
        auto_delete: defs::flag(table, "auto_delete"),
        internal: defs::flag(table, "internal"),
        arguments: defs::nested(table, "arguments"),
        bindings: Vec::new(),
        exchange_bindings: Vec::new(),
        topic: false,
    })
}

fn show(value: Option<&FieldValue>) -> String {
    match value {
        None => "none".to_owned(),
        Some(value) => match (value.as_i64(), value.as_str(), value) {
            (Some(n), _, _) => format!("'{n}'"),
            (_, Some(s), _) => format!("'{s}'"),
            (_, _, FieldValue::Bool(b)) => format!("'{b}'"),
            (_, _, other) => format!("'{other:?}'"),
        },
    }
}

impl Topology {
    /// Compares declared `x-` arguments the way RabbitMQ does (integers of any width are equal).
    pub(crate) fn check_arguments(
        &self,
        what: &str,
        name: &str,
        received: &FieldTable,
        current: &FieldTable,
    ) -> Result<(), AmqpError> {
        let keys = received
            .0
            .iter()
            .chain(current.0.iter())
            .map(|(k, _)| k.as_str());
        for key in keys {
            let (new, old) = (received.get(key), current.get(key));
            let same = match (new, old) {
                (Some(a), Some(b)) => {
                    a == b || matches!((a.as_i64(), b.as_i64()), (Some(x), Some(y)) if x == y)
                }
                (None, None) => true,
                _ => false,
            };
            if !same {
                // RabbitMQ names just the values when both sides have one, and the value with its
                // type when the other side has none.
                let describe = |value: Option<&FieldValue>, other: Option<&FieldValue>| match value
                {
                    Some(value) if other.is_none() => format!(
                        "the value {} of type '{}'",
                        show(Some(value)),
                        value.type_name()
                    ),
                    value => show(value),
                };
                let received_text = describe(new, old);
                let current_text = describe(old, new);
                return Err(self.inequivalent(what, key, name, &received_text, &current_text));
            }
        }
        Ok(())
    }
}

/// A fresh server-generated name, e.g. `amq.gen-<22 random url-safe characters>`.
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut random = [0u8; 22];
    if getrandom::fill(&mut random).is_err() {
        // No OS randomness: fall back to the clock, names only need to be unique per broker.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        random
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (nanos >> (i % 16 * 8)) as u8 ^ i as u8);
    }
    let suffix: String = random
        .iter()
        .map(|b| ALPHABET[usize::from(b % 64)] as char)
        .collect();
    format!("{prefix}{suffix}")
}

impl Topology {
    /// Streams declared here are created with `max.message.bytes` = `stream_max_message_bytes`.
    pub fn new(engine: Engine, vhost: &str, stream_max_message_bytes: u32) -> Arc<Self> {
        let mut state = State::default();
        let predeclared =
            std::iter::once(("", ExchangeKind::Direct)).chain(PREDECLARED.iter().copied());
        for (name, kind) in predeclared {
            state.exchanges.insert(
                name.to_owned(),
                Exchange {
                    kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    arguments: FieldTable::default(),
                    bindings: Vec::new(),
                    exchange_bindings: Vec::new(),
                    topic: false,
                },
            );
        }
        Arc::new(Self {
            engine,
            vhost: vhost.to_owned(),
            state: Mutex::new(state),
            loaded: OnceCell::new(),
            exchanges_seen: std::sync::atomic::AtomicU64::new(0),
            queues_seen: std::sync::atomic::AtomicU64::new(0),
            bindings_seen: std::sync::atomic::AtomicU64::new(0),
            stored: Mutex::default(),
            stream_max_message_bytes,
        })
    }

    /// The vhost this topology belongs to.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    fn store(&self) -> &dyn MetadataStore {
        self.engine.metadata.as_ref()
    }

    /// Loads durable definitions once per process.
    pub async fn ensure_loaded(self: &Arc<Self>) -> Result<(), AmqpError> {
        self.loaded
            .get_or_try_init(|| self.load())
            .await
            .map(|_| ())
    }

    async fn load(self: &Arc<Self>) -> Result<(), AmqpError> {
        let prefix = defs::key(&[&self.vhost, ""]);
        self.exchanges_seen.store(
            self.store().generation(EXCHANGE_NAMESPACE),
            std::sync::atomic::Ordering::Release,
        );
        self.queues_seen.store(
            self.store().generation(QUEUE_NAMESPACE),
            std::sync::atomic::Ordering::Release,
        );
        self.bindings_seen.store(
            self.store().generation(BINDING_NAMESPACE),
            std::sync::atomic::Ordering::Release,
        );
        let exchanges = defs::load(self.store(), EXCHANGE_NAMESPACE, &prefix).await?;
        let queues = defs::load(self.store(), QUEUE_NAMESPACE, &prefix).await?;
        let bindings = defs::load(self.store(), BINDING_NAMESPACE, &prefix).await?;
        let exchange_bindings =
            defs::load(self.store(), EXCHANGE_BINDING_NAMESPACE, &prefix).await?;
        self.remember_stored(&exchanges, &queues, &bindings);
        for (key, table) in &queues {
            if let [_, name] = defs::split_key(key)[..] {
                let policy =
                    QueuePolicy::stored(self.queue_ref(name), &defs::nested(table, "arguments"));
                match self.declare_storage(name, &policy, true).await {
                    // A stream's topic may have been changed through Kafka meanwhile; the
                    // other queues and connections must not depend on it.
                    Err(error) if policy.kind == QueueKind::Stream => {
                        tracing::warn!(stream = name, %error, "cannot restore a stream's topic");
                    }
                    other => other?,
                }
            }
        }
        let (leases, stale) = self.install_loaded(exchanges, queues, bindings, exchange_bindings);
        for key in stale {
            // A binding to the exchange of a topic deleted (or replaced) while the broker was
            // down: the topic's deletion drops its bindings.
            tracing::info!(
                binding = key,
                "dropping the binding of a deleted topic's exchange"
            );
            self.store().delete(BINDING_NAMESPACE, &key).await?;
        }
        for (name, lease) in leases {
            crate::lease::watch(self, &name, &lease);
        }
        Ok(())
    }

    /// Adds the durable exchanges another broker declared since they were last read, when the
    /// store says [`EXCHANGE_NAMESPACE`] changed (a store shared by several brokers; a no-op
    /// on the local engine, whose generation never moves). Exchanges known here are left as
    /// they are (they carry this broker's queue bindings); an exchange deleted through another
    /// broker goes from this one too ([`follow`]).
    pub async fn refresh_exchanges(&self) -> Result<(), AmqpError> {
        use std::sync::atomic::Ordering;
        let generation = self.store().generation(EXCHANGE_NAMESPACE);
        if self.loaded.get().is_none() || self.exchanges_seen.load(Ordering::Acquire) == generation
        {
            return Ok(());
        }
        let prefix = defs::key(&[&self.vhost, ""]);
        let exchanges = defs::load(self.store(), EXCHANGE_NAMESPACE, &prefix).await?;
        self.drop_deleted_exchanges(exchanges.iter().map(|(key, _)| key.clone()).collect());
        let mut state = self.state.lock();
        for (key, table) in exchanges {
            let parts = defs::split_key(&key);
            if let Some(&name) = parts.get(1)
                && !state.exchanges.contains_key(name)
                && let Some(exchange) = stored_exchange(&table)
            {
                state.exchanges.insert(name.to_owned(), exchange);
            }
        }
        self.exchanges_seen.store(generation, Ordering::Release);
        Ok(())
    }

    /// Puts loaded definitions in place (under the lock, with no await); returns the leases
    /// to watch and the keys of stale topic-exchange bindings to delete.
    #[allow(clippy::type_complexity)]
    fn install_loaded(
        &self,
        exchanges: Vec<(String, FieldTable)>,
        queues: Vec<(String, FieldTable)>,
        bindings: Vec<(String, FieldTable)>,
        exchange_bindings: Vec<(String, FieldTable)>,
    ) -> (Vec<(String, Arc<Lease>)>, Vec<String>) {
        let mut leases = Vec::new();
        let mut state = self.state.lock();
        for (key, table) in exchanges {
            let parts = defs::split_key(&key);
            if let (Some(&name), Some(exchange)) = (parts.get(1), stored_exchange(&table)) {
                state.exchanges.insert(name.to_owned(), exchange);
            }
        }
        for (key, table) in queues {
            if let Some(&name) = defs::split_key(&key).get(1) {
                let policy =
                    QueuePolicy::stored(self.queue_ref(name), &defs::nested(&table, "arguments"));
                let lease = policy.expires_ms.map(Lease::new);
                if let Some(lease) = &lease {
                    leases.push((name.to_owned(), lease.clone()));
                }
                state.queues.insert(
                    name.to_owned(),
                    QueueInfo {
                        durable: true,
                        exclusive_owner: None,
                        auto_delete: defs::flag(&table, "auto_delete"),
                        policy,
                        arguments: defs::nested(&table, "arguments"),
                        consumers: 0,
                        exclusive_consumer: None,
                        waiting_consumers: Vec::new(),
                        active_consumer: None,
                        lease,
                        stats: Arc::default(),
                    },
                );
            }
        }
        let mut stale = Vec::new();
        for (key, table) in bindings {
            if let [_, exchange, queue, routing_key, _] = defs::split_key(&key)[..] {
                let binding = Binding {
                    destination: queue.to_owned(),
                    routing_key: routing_key.to_owned(),
                    arguments: defs::nested(&table, "arguments"),
                    topic_start: topics::stored_start(&table).map(Arc::new),
                };
                if !state.queues.contains_key(queue) {
                    continue;
                }
                match self.loaded_binding_target(&mut state, exchange, &binding) {
                    Some(exchange) => exchange.bindings.push(binding),
                    None if binding.topic_start.is_some() => stale.push(key),
                    None => {}
                }
            }
        }
        for (key, table) in exchange_bindings {
            if let [_, source, destination, routing_key, _] = defs::split_key(&key)[..] {
                let binding = Binding {
                    destination: destination.to_owned(),
                    routing_key: routing_key.to_owned(),
                    arguments: defs::nested(&table, "arguments"),
                    topic_start: None,
                };
                if state.exchanges.contains_key(destination)
                    && let Some(exchange) = state.exchanges.get_mut(source)
                {
                    exchange.exchange_bindings.push(binding);
                }
            }
        }
        (leases, stale)
    }

    /// Creates what holds a queue's messages: an engine queue, or a stream's topic.
    async fn declare_storage(
        &self,
        name: &str,
        policy: &QueuePolicy,
        durable: bool,
    ) -> Result<(), AmqpError> {
        if policy.kind == QueueKind::Stream {
            return self.ensure_stream_topic(name, policy).await;
        }
        let options = QueueOptions {
            durable,
            durability: None,
            max_priority: policy.max_priority,
            count_bytes: policy.counts_bytes(),
        };
        self.engine.queues.declare_queue(name, options).await?;
        Ok(())
    }

    /// Marks a queue used (for its `x-expires` lease).
    pub fn touch(&self, queue: &str) {
        if let Some(lease) = self
            .state
            .lock()
            .queues
            .get(queue)
            .and_then(|q| q.lease.as_ref())
        {
            lease.touch();
        }
    }

    /// Where the lease watch of `queue` stands; see [`crate::lease`].
    pub fn check_lease(&self, queue: &str, lease: &std::sync::Weak<Lease>) -> LeaseCheck {
        let state = self.state.lock();
        let (Some(info), Some(lease)) = (state.queues.get(queue), lease.upgrade()) else {
            return LeaseCheck::Gone;
        };
        if !info
            .lease
            .as_ref()
            .is_some_and(|own| Arc::ptr_eq(own, &lease))
        {
            return LeaseCheck::Gone;
        }
        if info.consumers > 0 {
            lease.touch();
        }
        let due = lease.due_ms();
        if due > crate::message::now_ms() {
            LeaseCheck::WaitUntil(due)
        } else {
            LeaseCheck::Expired
        }
    }

    /// Writes a definition returned by a declare (outside the lock).
    pub async fn persist(
        &self,
        namespace: &str,
        record: Option<(String, Bytes)>,
    ) -> Result<(), AmqpError> {
        if let Some((key, value)) = record {
            self.store().put(namespace, &key, value).await?;
        }
        Ok(())
    }

    /// The queues a message published to `exchange` reaches.
    pub fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
    ) -> Result<Vec<String>, AmqpError> {
        let state = self.state.lock();
        if exchange.is_empty() {
            return Ok(if state.queues.contains_key(routing_key) {
                vec![routing_key.to_owned()]
            } else {
                Vec::new()
            });
        }
        let target = state
            .exchanges
            .get(exchange)
            .ok_or_else(|| self.not_found_exchange(exchange))?;
        if target.internal {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format_args!(
                    "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                    self.vhost
                ),
            ));
        }
        // Breadth-first over exchange-to-exchange bindings and alternate exchanges; each
        // exchange is visited once, so cycles end.
        let mut queues: Vec<String> = Vec::new();
        let mut visited: Vec<&str> = vec![exchange];
        let mut pending: std::collections::VecDeque<&Exchange> =
            std::collections::VecDeque::from([target]);
        while let Some(current) = pending.pop_front() {
            let matches = |b: &&Binding| {
                current
                    .kind
                    .matches(&b.routing_key, &b.arguments, routing_key, headers)
            };
            let mut routed = false;
            for binding in current.bindings.iter().filter(matches) {
                routed = true;
                if !queues.contains(&binding.destination) {
                    queues.push(binding.destination.clone());
                }
            }
            let onward = current
                .exchange_bindings
                .iter()
                .filter(matches)
                .map(|b| b.destination.as_str());
            let onward: Vec<&str> = onward.collect();
            routed |= !onward.is_empty();
            let alternate = current.alternate().filter(|_| !routed);
            for next in onward.into_iter().chain(alternate) {
                if visited.contains(&next) {
                    continue;
                }
                visited.push(next);
                if let Some(found) = state.exchanges.get(next) {
                    pending.push_back(found);
                }
            }
        }
        Ok(queues)
    }

    /// Registers a consumer, refusing it (403, as RabbitMQ) when it asks for exclusive use of
    /// a consumed queue or the queue already has an exclusive consumer. On a
    /// single-active-consumer queue returns the watch telling which consumer id may receive.
    pub fn consumer_added(
        &self,
        queue: &str,
        id: u64,
        exclusive: bool,
    ) -> Result<Option<watch::Receiver<u64>>, AmqpError> {
        let mut state = self.state.lock();
        let Some(info) = state.queues.get_mut(queue) else {
            return Ok(None);
        };
        if info.exclusive_consumer.is_some() || (exclusive && info.consumers > 0) {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format_args!("queue '{queue}' in vhost '{}' in exclusive use", self.vhost),
            ));
        }
        info.consumers += 1;
        if exclusive {
            info.exclusive_consumer = Some(id);
        }
        if !info.policy.single_active_consumer {
            return Ok(None);
        }
        let active = info
            .active_consumer
            .get_or_insert_with(|| Arc::new(watch::channel(0).0));
        info.waiting_consumers.push(id);
        if *active.borrow() == 0 {
            active.send_replace(id);
        }
        Ok(Some(active.subscribe()))
    }

    /// Unregisters a consumer (promoting the next single active one); returns true when an
    /// auto-delete queue just lost its last consumer and should be deleted.
    pub fn consumer_removed(&self, queue: &str, id: u64) -> bool {
        let mut state = self.state.lock();
        let Some(info) = state.queues.get_mut(queue) else {
            return false;
        };
        info.consumers = info.consumers.saturating_sub(1);
        if let Some(lease) = &info.lease {
            lease.touch();
        }
        if info.exclusive_consumer == Some(id) {
            info.exclusive_consumer = None;
        }
        info.waiting_consumers.retain(|waiting| *waiting != id);
        if let Some(active) = &info.active_consumer
            && *active.borrow() == id
        {
            active.send_replace(info.waiting_consumers.first().copied().unwrap_or(0));
        }
        info.consumers == 0 && info.auto_delete
    }

    /// `name` as a queue of this vhost, for error texts.
    pub fn queue_ref<'a>(&'a self, name: &'a str) -> QueueRef<'a> {
        QueueRef {
            name,
            vhost: &self.vhost,
        }
    }

    /// The parsed arguments of a queue, if it exists.
    pub fn policy(&self, queue: &str) -> Option<QueuePolicy> {
        self.state
            .lock()
            .queues
            .get(queue)
            .map(|q| q.policy.clone())
    }

    /// The message counts of a queue.
    pub fn queue_stats(&self, queue: &str) -> Option<Arc<QueueStats>> {
        self.state.lock().queues.get(queue).map(|q| q.stats.clone())
    }

    /// Exclusive queues owned by a connection (deleted when it closes).
    pub fn exclusive_queues(&self, connection: u64) -> Vec<String> {
        let state = self.state.lock();
        state
            .queues
            .iter()
            .filter(|(_, q)| q.exclusive_owner == Some(connection))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl Topology {
    pub(crate) fn binding_key(&self, exchange: &str, binding: &Binding) -> String {
        defs::key(&[
            &self.vhost,
            exchange,
            &binding.destination,
            &binding.routing_key,
            &defs::arguments_fingerprint(&binding.arguments),
        ])
    }
}
