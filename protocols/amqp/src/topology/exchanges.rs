//! Exchange declaration and deletion, and queue bindings.
//!
//! Deleting a missing exchange succeeds (as in RabbitMQ); an auto-delete exchange is deleted
//! when it loses its last binding as a source (unbind, queue or destination deletion).

use std::sync::Arc;

use bytes::Bytes;

use super::topics::binding_record;
use super::{Binding, Exchange, Topology};
use crate::codec::methods::ExchangeDeclare;
use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions::{
    self as defs, BINDING_NAMESPACE, EXCHANGE_BINDING_NAMESPACE, EXCHANGE_NAMESPACE,
};
use crate::error::{ACCESS_REFUSED, AmqpError, PRECONDITION_FAILED};
use crate::routing::ExchangeKind;

impl Topology {
    pub fn declare_exchange(
        &self,
        decl: &ExchangeDeclare,
    ) -> Result<Option<(String, Bytes)>, AmqpError> {
        let name = decl.exchange.as_str();
        if name.is_empty() {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            ));
        }
        let mut state = self.state.lock();
        if let Some(answer) = self.declare_topic_exchange(&state, decl) {
            return answer.map(|()| None);
        }
        if let Some(existing) = state.exchanges.get(name).filter(|e| !e.topic) {
            if decl.passive {
                return Ok(None);
            }
            let kind = ExchangeKind::parse(&decl.kind);
            if kind != Some(existing.kind) {
                return Err(self.inequivalent(
                    "exchange",
                    "type",
                    name,
                    &format!("'{}'", decl.kind),
                    &format!("'{}'", existing.kind.name()),
                ));
            }
            for (arg, new, old) in [
                ("durable", decl.durable, existing.durable),
                ("auto_delete", decl.auto_delete, existing.auto_delete),
                ("internal", decl.internal, existing.internal),
            ] {
                if new != old {
                    return Err(self.inequivalent(
                        "exchange",
                        arg,
                        name,
                        &format!("'{new}'"),
                        &format!("'{old}'"),
                    ));
                }
            }
            self.check_arguments("exchange", name, &decl.arguments, &existing.arguments)?;
            return Ok(None);
        }
        if decl.passive {
            return Err(self.not_found_exchange(name));
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format_args!("exchange name '{name}' contains reserved prefix 'amq.*'"),
            ));
        }
        // RabbitMQ's wording; the channel-level 406 is newer RabbitMQ's (3.10 closes the
        // connection with 503), see compat/amqp/FINDINGS.md.
        let Some(kind) = ExchangeKind::parse(&decl.kind) else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!("unknown exchange type '{}'", decl.kind),
            ));
        };
        state.exchanges.insert(
            name.to_owned(),
            Exchange {
                kind,
                durable: decl.durable,
                auto_delete: decl.auto_delete,
                internal: decl.internal,
                arguments: decl.arguments.clone(),
                bindings: Vec::new(),
                exchange_bindings: Vec::new(),
                topic: false,
            },
        );
        if !decl.durable {
            return Ok(None);
        }
        let mut record = FieldTable::default();
        record.insert(
            "type",
            FieldValue::LongString(Bytes::copy_from_slice(kind.name().as_bytes())),
        );
        record.insert("auto_delete", FieldValue::Bool(decl.auto_delete));
        record.insert("internal", FieldValue::Bool(decl.internal));
        record.insert("arguments", FieldValue::Table(decl.arguments.clone()));
        Ok(Some((
            defs::key(&[&self.vhost, name]),
            defs::encode(&record),
        )))
    }

    pub async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        if name.is_empty() {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            ));
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                format_args!(
                    "deletion of system exchange '{name}' in vhost '{}' not allowed",
                    self.vhost
                ),
            ));
        }
        {
            let state = self.state.lock();
            match state.exchanges.get(name) {
                // Deleting what is not there succeeds, as in RabbitMQ.
                None => return Ok(()),
                Some(exchange)
                    if if_unused
                        && !(exchange.bindings.is_empty()
                            && exchange.exchange_bindings.is_empty()) =>
                {
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        format_args!("exchange '{name}' in vhost '{}' in use", self.vhost),
                    ));
                }
                Some(_) => {}
            }
        }
        let sources = self.remove_exchange(name).await?;
        self.delete_unbound_auto_delete(sources).await
    }

    /// Removes an exchange, its bindings and the exchange bindings leading into it; returns
    /// the sources of those, which may now be unbound.
    async fn remove_exchange(&self, name: &str) -> Result<Vec<String>, AmqpError> {
        let (removed, inbound) = {
            let mut state = self.state.lock();
            let removed = state.exchanges.remove(name);
            let mut inbound = Vec::new();
            for (source, exchange) in state.exchanges.iter_mut() {
                exchange.exchange_bindings.retain(|b| {
                    let keep = b.destination != name;
                    if !keep {
                        inbound.push((source.clone(), self.binding_key(source, b)));
                    }
                    keep
                });
            }
            (removed, inbound)
        };
        for (_, key) in &inbound {
            self.store().delete(EXCHANGE_BINDING_NAMESPACE, key).await?;
        }
        if let Some(exchange) = removed.filter(|e| e.durable) {
            let key = defs::key(&[&self.vhost, name]);
            self.forget_stored(EXCHANGE_NAMESPACE, &key);
            self.store().delete(EXCHANGE_NAMESPACE, &key).await?;
            for binding in &exchange.bindings {
                let key = self.binding_key(name, binding);
                self.forget_stored(BINDING_NAMESPACE, &key);
                self.store().delete(BINDING_NAMESPACE, &key).await?;
            }
            for binding in &exchange.exchange_bindings {
                self.store()
                    .delete(EXCHANGE_BINDING_NAMESPACE, &self.binding_key(name, binding))
                    .await?;
            }
        }
        Ok(inbound.into_iter().map(|(source, _)| source).collect())
    }

    /// Deletes the auto-delete exchanges among `candidates` that have no binding left, as
    /// RabbitMQ does when an auto-delete exchange loses its last one (cascading to sources).
    pub(crate) async fn delete_unbound_auto_delete(
        &self,
        mut candidates: Vec<String>,
    ) -> Result<(), AmqpError> {
        while let Some(name) = candidates.pop() {
            let unbound = self.state.lock().exchanges.get(&name).is_some_and(|e| {
                e.auto_delete && e.bindings.is_empty() && e.exchange_bindings.is_empty()
            });
            if unbound {
                candidates.extend(self.remove_exchange(&name).await?);
            }
        }
        Ok(())
    }

    /// exchange.bind (`bind`) and exchange.unbind: `destination` receives what `source` routes.
    pub async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
        bind: bool,
    ) -> Result<(), AmqpError> {
        if destination.is_empty() || source.is_empty() {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            ));
        }
        let binding = Binding {
            destination: destination.to_owned(),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
            topic_start: None,
        };
        let (changed, durable) = {
            let mut state = self.state.lock();
            // A topic's exchange takes part in no exchange-to-exchange binding.
            let destination_durable = state
                .exchanges
                .get(destination)
                .filter(|e| !e.topic)
                .ok_or_else(|| self.not_found_exchange(destination))?
                .durable;
            let from = state
                .exchanges
                .get_mut(source)
                .filter(|e| !e.topic)
                .ok_or_else(|| self.not_found_exchange(source))?;
            let exists = from.exchange_bindings.contains(&binding);
            let changed = if bind && !exists {
                from.exchange_bindings.push(binding.clone());
                true
            } else if !bind && exists {
                from.exchange_bindings.retain(|b| *b != binding);
                true
            } else {
                false
            };
            (changed, from.durable && destination_durable)
        };
        let key = self.binding_key(source, &binding);
        match (changed, bind) {
            (true, true) if durable => {
                let mut table = FieldTable::default();
                table.insert("arguments", FieldValue::Table(arguments.clone()));
                self.store()
                    .put(EXCHANGE_BINDING_NAMESPACE, &key, defs::encode(&table))
                    .await?;
            }
            (true, false) => {
                self.store()
                    .delete(EXCHANGE_BINDING_NAMESPACE, &key)
                    .await?;
                self.delete_unbound_auto_delete(vec![source.to_owned()])
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    pub async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        connection: u64,
    ) -> Result<(), AmqpError> {
        if exchange.is_empty() {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            ));
        }
        let info = self.check_queue(queue, connection)?;
        // Read before the lock: a topic's exchange binding starts at the high watermarks.
        let topic = self.publish_topic(exchange);
        let topic_start = match &topic {
            Some(topic) => {
                self.check_topic_binding(queue, exchange, info.is_stream())?;
                Some(Arc::new(self.topic_start_now(topic)?))
            }
            None => None,
        };
        let mut binding = Binding {
            destination: queue.to_owned(),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
            topic_start,
        };
        let durable = {
            let mut state = self.state.lock();
            let target = self
                .bind_target(&mut state, exchange, topic.as_ref())
                .ok_or_else(|| self.not_found_exchange(exchange))?;
            if target.bindings.contains(&binding) {
                return Ok(());
            }
            if !target.topic {
                binding.topic_start = None;
            }
            target.bindings.push(binding.clone());
            target.durable && info.persisted()
        };
        if durable {
            let record = binding_record(arguments, binding.topic_start.as_ref());
            self.store()
                .put(
                    BINDING_NAMESPACE,
                    &self.binding_key(exchange, &binding),
                    record,
                )
                .await?;
        }
        Ok(())
    }

    pub async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
        connection: u64,
    ) -> Result<(), AmqpError> {
        if exchange.is_empty() {
            return Err(AmqpError::channel(
                ACCESS_REFUSED,
                "operation not permitted on the default exchange",
            ));
        }
        self.check_queue(queue, connection)?;
        let binding = Binding {
            destination: queue.to_owned(),
            routing_key: routing_key.to_owned(),
            arguments: arguments.clone(),
            topic_start: None,
        };
        let removed = {
            let mut state = self.state.lock();
            let Some(target) = state.exchanges.get_mut(exchange) else {
                // A topic's exchange without bindings: nothing to unbind.
                if self.exchange_topic(exchange).is_some() {
                    return Ok(());
                }
                return Err(self.not_found_exchange(exchange));
            };
            let before = target.bindings.len();
            target.bindings.retain(|b| *b != binding);
            let removed = target.bindings.len() != before;
            if target.topic && target.bindings.is_empty() {
                state.exchanges.remove(exchange);
            }
            removed
        };
        if removed {
            let key = self.binding_key(exchange, &binding);
            self.forget_stored(BINDING_NAMESPACE, &key);
            self.store().delete(BINDING_NAMESPACE, &key).await?;
            self.delete_unbound_auto_delete(vec![exchange.to_owned()])
                .await?;
        }
        Ok(())
    }
}
