//! Queue declaration (with the equivalence check), access checks and deletion.

use tributary_api::queue::QueueOptions;

use super::{QueueInfo, Topology, generated_name};
use crate::codec::methods::QueueDeclare;
use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions::{self as defs, BINDING_NAMESPACE, QUEUE_NAMESPACE};
use crate::error::{ACCESS_REFUSED, AmqpError};
use crate::policy::QueuePolicy;

impl Topology {
    /// Declares (or checks) a queue; returns its name and consumer count.
    pub async fn declare_queue(
        &self,
        decl: &QueueDeclare,
        connection: u64,
    ) -> Result<(String, u32), AmqpError> {
        let name = if decl.queue.is_empty() {
            generated_name("amq.gen-")
        } else {
            decl.queue.clone()
        };
        let mut record = None;
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
            let policy = QueuePolicy::parse(&name, &decl.arguments, decl.durable, decl.exclusive)?;
            state.queues.insert(
                name.clone(),
                QueueInfo {
                    durable: decl.durable,
                    exclusive_owner: decl.exclusive.then_some(connection),
                    auto_delete: decl.auto_delete,
                    arguments: decl.arguments.clone(),
                    policy,
                    consumers: 0,
                    waiting_consumers: Vec::new(),
                    active_consumer: None,
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
        let declared = self
            .engine
            .queues
            .declare_queue(
                &name,
                QueueOptions {
                    durable,
                    durability: None,
                },
            )
            .await;
        if let Err(error) = declared {
            self.state.lock().queues.remove(&name);
            return Err(error.into());
        }
        self.persist(QUEUE_NAMESPACE, record).await?;
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
    pub async fn delete_queue(&self, name: &str) -> Result<u64, AmqpError> {
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
                        bindings.push(self.binding_key(exchange_name, b));
                    }
                    keep
                });
            }
            (info, bindings)
        };
        let count = match self.engine.queues.delete_queue(name).await {
            Ok(count) => count,
            Err(tributary_api::EngineError::UnknownQueue(_)) => 0,
            Err(error) => return Err(error.into()),
        };
        if info.persisted() {
            self.store()
                .delete(QUEUE_NAMESPACE, &defs::key(&[&self.vhost, name]))
                .await?;
            for key in bindings {
                self.store().delete(BINDING_NAMESPACE, &key).await?;
            }
        }
        Ok(count)
    }
}
