//! Queue declaration (with the equivalence check), access checks and deletion.

use std::sync::Arc;

use super::{QueueInfo, Topology, generated_name};
use crate::codec::methods::QueueDeclare;
use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions::{self as defs, BINDING_NAMESPACE, QUEUE_NAMESPACE};
use crate::error::{ACCESS_REFUSED, AmqpError};
use crate::lease::{self, Lease};
use crate::metrics as m;
use crate::policy::{QueuePolicy, QueueRef};

impl Topology {
    /// Declares (or checks) a queue; returns its name and consumer count.
    pub async fn declare_queue(
        self: &Arc<Self>,
        decl: &QueueDeclare,
        connection: u64,
    ) -> Result<(String, u32), AmqpError> {
        let name = if decl.queue.is_empty() {
            generated_name("amq.gen-")
        } else {
            decl.queue.clone()
        };
        if !decl.passive {
            self.refresh_stream(&name).await?;
        }
        // A super stream's partitions exist with its topic: a passive declare of one that was
        // not declared yet declares it as a stream would be (creating nothing in the engine).
        let implied;
        let decl = if decl.passive && self.implied_partition(&name) {
            let mut arguments = FieldTable::default();
            arguments.insert("x-queue-type", FieldValue::LongString("stream".into()));
            implied = QueueDeclare {
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                arguments,
                ..decl.clone()
            };
            &implied
        } else {
            decl
        };
        let mut record = None;
        let (lease, storage_policy);
        {
            let mut state = self.state.lock();
            if let Some(existing) = state.queues.get(&name) {
                if existing
                    .exclusive_owner
                    .is_some_and(|owner| owner != connection)
                {
                    return Err(self.locked(&name));
                }
                if !decl.passive {
                    for (arg, new, old) in [
                        ("durable", decl.durable, existing.durable),
                        ("auto_delete", decl.auto_delete, existing.auto_delete),
                        (
                            "exclusive",
                            decl.exclusive,
                            existing.exclusive_owner.is_some(),
                        ),
                    ] {
                        if new != old {
                            return Err(self.inequivalent(
                                "queue",
                                arg,
                                &name,
                                &format!("'{new}'"),
                                &format!("'{old}'"),
                            ));
                        }
                    }
                    self.check_arguments("queue", &name, &decl.arguments, &existing.arguments)?;
                }
                if let Some(lease) = &existing.lease {
                    lease.touch();
                }
                metrics::counter!(m::QUEUES_DECLARED).increment(1);
                return Ok((name, existing.consumers as u32));
            }
            if decl.passive {
                return Err(self.not_found_queue(&name));
            }
            if name.starts_with("amq.") && !decl.queue.is_empty() {
                return Err(AmqpError::channel(
                    ACCESS_REFUSED,
                    format_args!("queue name '{name}' contains reserved prefix 'amq.*'"),
                ));
            }
            // Exclusive queues die with their connection, so they are never persisted; the
            // declared flag is kept for the equivalence check.
            let durable = decl.durable && !decl.exclusive;
            let queue = QueueRef {
                name: &name,
                vhost: &self.vhost,
            };
            let policy = QueuePolicy::parse(
                queue,
                &decl.arguments,
                decl.durable,
                decl.exclusive,
                decl.auto_delete,
            )?;
            lease = policy.expires_ms.map(Lease::new);
            storage_policy = policy.clone();
            state.queues.insert(
                name.clone(),
                QueueInfo {
                    durable: decl.durable,
                    exclusive_owner: decl.exclusive.then_some(connection),
                    auto_delete: decl.auto_delete,
                    arguments: decl.arguments.clone(),
                    policy,
                    consumers: 0,
                    exclusive_consumer: None,
                    waiting_consumers: Vec::new(),
                    active_consumer: None,
                    lease: lease.clone(),
                    stats: Arc::default(),
                },
            );
            if durable {
                let mut table = FieldTable::default();
                table.insert("auto_delete", FieldValue::Bool(decl.auto_delete));
                table.insert("arguments", FieldValue::Table(decl.arguments.clone()));
                record = Some((defs::key(&[&self.vhost, &name]), defs::encode(&table)));
            }
        }
        let durable = record.is_some();
        let declared = self.declare_storage(&name, &storage_policy, durable).await;
        if let Err(error) = declared {
            self.state.lock().queues.remove(&name);
            return Err(error);
        }
        self.persist(QUEUE_NAMESPACE, record).await?;
        if let Some(lease) = &lease {
            lease::watch(self, &name, lease);
        }
        metrics::counter!(m::QUEUES_DECLARED).increment(1);
        metrics::counter!(m::QUEUES_CREATED).increment(1);
        Ok((name, 0))
    }

    /// Checks that a queue exists and this connection may use it.
    pub fn check_queue(&self, name: &str, connection: u64) -> Result<QueueInfo, AmqpError> {
        let state = self.state.lock();
        let queue = state
            .queues
            .get(name)
            .ok_or_else(|| self.not_found_queue(name))?;
        if queue
            .exclusive_owner
            .is_some_and(|owner| owner != connection)
        {
            return Err(self.locked(name));
        }
        Ok(queue.clone())
    }

    /// Removes a queue's definition and bindings and deletes its messages; returns how many.
    /// Auto-delete exchanges left without bindings go too.
    pub async fn delete_queue(&self, name: &str) -> Result<u64, AmqpError> {
        self.check_stream_deletable(name)?;
        let (info, bindings) = {
            let mut state = self.state.lock();
            let Some(info) = state.queues.remove(name) else {
                return Err(self.not_found_queue(name));
            };
            let mut bindings = Vec::new();
            for (exchange_name, exchange) in state.exchanges.iter_mut() {
                exchange.bindings.retain(|b| {
                    let keep = b.destination != name;
                    if !keep {
                        bindings.push((exchange_name.clone(), self.binding_key(exchange_name, b)));
                    }
                    keep
                });
            }
            (info, bindings)
        };
        let unbound: Vec<String> = bindings.iter().map(|(e, _)| e.clone()).collect();
        let count = if info.is_stream() {
            self.delete_stream_topic(name).await?
        } else {
            match self.engine.queues.delete_queue(name).await {
                Ok(count) => count,
                Err(tributary_api::EngineError::UnknownQueue(_)) => 0,
                Err(error) => return Err(error.into()),
            }
        };
        self.delete_definition(name, &info, bindings).await?;
        metrics::counter!(m::QUEUES_DELETED).increment(1);
        self.delete_unbound_auto_delete(unbound).await?;
        Ok(count)
    }

    async fn delete_definition(
        &self,
        name: &str,
        info: &QueueInfo,
        bindings: Vec<(String, String)>,
    ) -> Result<(), AmqpError> {
        if info.persisted() {
            let key = defs::key(&[&self.vhost, name]);
            self.forget_stored(QUEUE_NAMESPACE, &key);
            self.store().delete(QUEUE_NAMESPACE, &key).await?;
            for (_, key) in bindings {
                self.forget_stored(BINDING_NAMESPACE, &key);
                self.store().delete(BINDING_NAMESPACE, &key).await?;
            }
        }
        Ok(())
    }

    /// Ready messages of a queue (declare-ok's message count); a stream reports none.
    pub async fn message_count(&self, name: &str, info: &QueueInfo) -> Result<u64, AmqpError> {
        if info.is_stream() {
            return Ok(0);
        }
        Ok(self.engine.queues.depth(name).await?.ready)
    }
}
