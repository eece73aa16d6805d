//! Topics seen as exchanges (docs/interop.md, "Topics seen from AMQP"): in vhost `/` every
//! topic `T` that is not internal is also an exchange `T` of type `topic`. Declaring it with
//! type `topic` is idempotent (its other flags and arguments are not compared), any other type
//! gets RabbitMQ's 406; queues bind to it with topic patterns over the record key and are fed
//! by [`crate::feed`]; a publish to it appends to the topic (`handlers::publish`).
//!
//! Invariants:
//! - a declared exchange wins over a topic of the same name: while it exists, the name is that
//!   exchange (declared before the topic was created, or restored from the metadata store);
//! - the topic's exchange is an entry (`Exchange::topic`) only while it has bindings and is
//!   never stored itself; each of its bindings carries the topic's id and high watermarks at
//!   bind time ([`TopicStart`]) in memory and in its stored record;
//! - a binding whose topic is gone (or was created again, with another id) is dropped.

use std::sync::Arc;

use bytes::Bytes;
use tributary_api::TopicDescription;

use super::{Binding, Exchange, State, TopicStart, Topology};
use crate::access::DEFAULT_VHOST;
use crate::codec::methods::ExchangeDeclare;
use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions::{self as defs, BINDING_NAMESPACE};
use crate::error::{AmqpError, PRECONDITION_FAILED};
use crate::routing::ExchangeKind;

/// Binding record entries of a topic's exchange binding.
const START_OFFSETS: &str = "topic_start";
const START_TOPIC_ID: &str = "topic_id";

/// The [`TopicStart`] a stored binding record carries, if any.
pub(super) fn stored_start(table: &FieldTable) -> Option<TopicStart> {
    let Some(FieldValue::LongString(id)) = table.get(START_TOPIC_ID) else {
        return None;
    };
    let topic_id: [u8; 16] = id.as_ref().try_into().ok()?;
    let offsets = match table.get(START_OFFSETS) {
        Some(FieldValue::Array(values)) => values.iter().filter_map(FieldValue::as_i64).collect(),
        _ => Vec::new(),
    };
    Some(TopicStart { topic_id, offsets })
}

/// Adds `start` to a binding record.
pub(super) fn store_start(table: &mut FieldTable, start: &TopicStart) {
    table.insert(
        START_TOPIC_ID,
        FieldValue::LongString(Bytes::copy_from_slice(&start.topic_id)),
    );
    let offsets = start.offsets.iter().map(|o| FieldValue::I64(*o)).collect();
    table.insert(START_OFFSETS, FieldValue::Array(offsets));
}

fn topic_exchange() -> Exchange {
    Exchange {
        kind: ExchangeKind::Topic,
        durable: true,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::default(),
        bindings: Vec::new(),
        exchange_bindings: Vec::new(),
        topic: true,
    }
}

impl Topology {
    /// The topic behind exchange `name` when this vhost shows topics as exchanges and a
    /// non-internal topic has that name (declared exchanges are not looked at here).
    pub fn exchange_topic(&self, name: &str) -> Option<TopicDescription> {
        let candidate = self.vhost == DEFAULT_VHOST
            && !name.is_empty()
            && !name.starts_with("amq.")
            // Streams of other vhosts are topics named `U+001F vhost U+001F name`.
            && !name.starts_with('\u{1f}');
        if !candidate {
            return None;
        }
        self.engine
            .topics
            .describe_topic(name)
            .ok()
            .filter(|topic| !topic.internal)
    }

    /// The topic a publish to `exchange` appends to: the topic's exchange, unless an exchange
    /// of that name was declared.
    pub fn publish_topic(&self, exchange: &str) -> Option<TopicDescription> {
        let declared = self
            .state
            .lock()
            .exchanges
            .get(exchange)
            .is_some_and(|e| !e.topic);
        if declared {
            return None;
        }
        self.exchange_topic(exchange)
    }

    /// exchange.declare of a topic's exchange: `Some` with the answer when `name` is one.
    pub(super) fn declare_topic_exchange(
        &self,
        state: &State,
        decl: &ExchangeDeclare,
    ) -> Option<Result<(), AmqpError>> {
        let name = decl.exchange.as_str();
        if state.exchanges.get(name).is_some_and(|e| !e.topic) {
            return None;
        }
        self.exchange_topic(name)?;
        if decl.passive || ExchangeKind::parse(&decl.kind) == Some(ExchangeKind::Topic) {
            return Some(Ok(()));
        }
        Some(Err(self.inequivalent(
            "exchange",
            "type",
            name,
            &format!("'{}'", decl.kind),
            "'topic'",
        )))
    }

    /// The exchange a queue binds to: a declared one, or the entry of a topic's exchange
    /// (made on first bind), with the topic's start offsets now when it is a topic's.
    pub(super) fn bind_target<'s>(
        &self,
        state: &'s mut State,
        exchange: &str,
        topic: Option<&TopicDescription>,
    ) -> Option<&'s mut Exchange> {
        if state.exchanges.get(exchange).is_some_and(|e| !e.topic) {
            return state.exchanges.get_mut(exchange);
        }
        topic?;
        Some(
            state
                .exchanges
                .entry(exchange.to_owned())
                .or_insert_with(topic_exchange),
        )
    }

    /// Where a queue bound to topic `topic`'s exchange now starts: the high watermarks.
    pub(super) fn topic_start_now(
        &self,
        topic: &TopicDescription,
    ) -> Result<TopicStart, AmqpError> {
        let mut offsets = Vec::with_capacity(topic.partitions as usize);
        for partition in 0..topic.partitions {
            let at = tributary_api::TopicPartition::new(topic.name.clone(), partition);
            offsets.push(self.engine.log.offsets(&at)?.high_watermark);
        }
        Ok(TopicStart {
            topic_id: topic.id,
            offsets,
        })
    }

    /// Where a binding loaded from the store goes; `None` when its exchange is gone (for a
    /// topic's exchange: the topic was deleted or is another one now).
    pub(super) fn loaded_binding_target<'s>(
        &self,
        state: &'s mut State,
        exchange: &str,
        binding: &Binding,
    ) -> Option<&'s mut Exchange> {
        let Some(start) = &binding.topic_start else {
            return state.exchanges.get_mut(exchange).filter(|e| !e.topic);
        };
        let topic = self
            .exchange_topic(exchange)
            .filter(|t| t.id == start.topic_id)?;
        self.bind_target(state, exchange, Some(&topic))
            .filter(|e| e.topic)
    }

    /// Refuses what a topic's exchange cannot feed: a stream queue (it could feed itself).
    pub(super) fn check_topic_binding(
        &self,
        queue: &str,
        exchange: &str,
        is_stream: bool,
    ) -> Result<(), AmqpError> {
        if !is_stream {
            return Ok(());
        }
        Err(AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!(
                "cannot bind stream '{queue}' to exchange '{exchange}' in vhost '{}': it is topic '{exchange}', which feeds only classic and quorum queues",
                self.vhost
            ),
        ))
    }

    /// The bindings of topic `topic`'s exchange, as the feed sees them now.
    pub fn topic_bindings(&self, topic: &str) -> Vec<Binding> {
        self.state
            .lock()
            .exchanges
            .get(topic)
            .filter(|e| e.topic)
            .map(|e| e.bindings.clone())
            .unwrap_or_default()
    }

    /// Topics whose exchange has queue bindings (the feeds to run).
    pub fn fed_topics(&self) -> Vec<String> {
        self.state
            .lock()
            .exchanges
            .iter()
            .filter(|(_, e)| e.topic && !e.bindings.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Drops the exchange of a deleted topic with its bindings, unless a binding was made to
    /// a topic of that name created since (`topic_id` is the deleted one's).
    pub async fn drop_topic_exchange(
        &self,
        topic: &str,
        topic_id: [u8; 16],
    ) -> Result<(), AmqpError> {
        let removed: Vec<Binding> = {
            let mut state = self.state.lock();
            let Some(exchange) = state.exchanges.get_mut(topic).filter(|e| e.topic) else {
                return Ok(());
            };
            let (gone, kept): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut exchange.bindings)
                .into_iter()
                .partition(|b| {
                    b.topic_start
                        .as_ref()
                        .is_none_or(|s| s.topic_id == topic_id)
                });
            exchange.bindings = kept;
            if exchange.bindings.is_empty() {
                state.exchanges.remove(topic);
            }
            gone
        };
        for binding in &removed {
            tracing::info!(
                topic,
                queue = binding.destination,
                "topic deleted: its binding is dropped"
            );
            self.store()
                .delete(BINDING_NAMESPACE, &self.binding_key(topic, binding))
                .await?;
        }
        Ok(())
    }
}

/// The binding record of a queue binding (with the topic start of a topic's exchange).
pub(super) fn binding_record(arguments: &FieldTable, start: Option<&Arc<TopicStart>>) -> Bytes {
    let mut table = FieldTable::default();
    table.insert("arguments", FieldValue::Table(arguments.clone()));
    if let Some(start) = start {
        store_start(&mut table, start);
    }
    defs::encode(&table)
}
