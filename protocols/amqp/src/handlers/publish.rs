//! basic.publish: assembling content, routing, storing, `basic.return` for unroutable mandatory
//! messages and publisher confirms.
//!
//! A confirm (`basic.ack` with the channel's publish sequence number) is sent only after every
//! target queue's `enqueue` returned, i.e. after the queue's durability policy was met; a failed
//! enqueue is confirmed with `basic.nack`. For an unroutable mandatory message `basic.return`
//! comes first, then the ack, as RabbitMQ orders them.

use bytes::{Bytes, BytesMut};
use tributary_api::batch::build_batch;

use crate::channel::PendingPublish;
use crate::codec::{self, methods::Method};
use crate::deadletter::{REASON_MAXLEN, dead_letter, parse_expiration, with_expiry};
use crate::error::{AmqpError, NO_ROUTE, NOT_IMPLEMENTED, PRECONDITION_FAILED};
use crate::message::{now_ms, to_record};
use crate::metrics as m;
use crate::policy::Overflow;
use crate::session::Session;

impl Session {
    pub(crate) fn basic_publish(
        &mut self,
        channel: u16,
        exchange: String,
        routing_key: String,
        mandatory: bool,
        immediate: bool,
    ) -> Result<(), AmqpError> {
        if immediate {
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "immediate=true"));
        }
        if let Some(state) = self.channels.get_mut(&channel) {
            state.pending = Some(PendingPublish {
                exchange,
                routing_key,
                mandatory,
                method: (60, 40),
                header: None,
                body: BytesMut::new(),
            });
        }
        Ok(())
    }

    /// Routes and stores the message now complete on `channel`.
    pub(crate) async fn complete_publish(&mut self, channel: u16) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let Some(pending) = state.pending.take() else {
            return Ok(());
        };
        let confirm = state.confirm.then(|| {
            state.publish_seq += 1;
            state.publish_seq
        });
        let Some((header, properties)) = pending.header else {
            return Ok(());
        };
        metrics::counter!(m::MESSAGES_RECEIVED).increment(1);
        let body: Bytes = pending.body.freeze();
        let headers = properties.headers.as_ref();
        let queues = self
            .shared
            .topology
            .route(&pending.exchange, &pending.routing_key, headers)
            .map_err(|e| e.caused_by(pending.method))?;
        let mut stored = true;
        if queues.is_empty() {
            if pending.mandatory {
                metrics::counter!(m::MESSAGES_UNROUTABLE_RETURNED).increment(1);
                let mut out = BytesMut::new();
                let method = Method::BasicReturn {
                    reply_code: NO_ROUTE,
                    reply_text: "NO_ROUTE".into(),
                    exchange: pending.exchange.clone(),
                    routing_key: pending.routing_key.clone(),
                };
                codec::encode_message(
                    &mut out,
                    channel,
                    &method,
                    &header.raw_properties,
                    &body,
                    self.frame_max,
                );
                self.send(out).await?;
            } else {
                metrics::counter!(m::MESSAGES_UNROUTABLE_DROPPED).increment(1);
            }
        } else {
            metrics::counter!(m::MESSAGES_ROUTED).increment(1);
            let expiration = match properties
                .expiration
                .as_deref()
                .map(parse_expiration)
                .transpose()
            {
                Ok(expiration) => expiration,
                Err(text) => {
                    return Err(AmqpError::Channel(crate::error::Reply {
                        code: PRECONDITION_FAILED,
                        text: format!("PRECONDITION_FAILED - {text}"),
                        method: pending.method,
                    }));
                }
            };
            let now = now_ms();
            let record = to_record(
                &pending.exchange,
                &pending.routing_key,
                header.raw_properties.clone(),
                &properties,
                body,
                now,
            );
            let plain = build_batch(std::slice::from_ref(&record));
            let targets = queues
                .into_iter()
                .map(|queue| {
                    let ttl = self
                        .shared
                        .topology
                        .policy(&queue)
                        .and_then(|p| p.message_ttl_ms);
                    let batch = match ttl.into_iter().chain(expiration).min() {
                        Some(ms) => build_batch(&[with_expiry(
                            &record,
                            now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)),
                        )]),
                        None => plain.clone(),
                    };
                    (queue, batch)
                })
                .collect::<Vec<_>>();
            match self.channels.get_mut(&channel) {
                Some(state) if state.tx => state.tx_work.publishes.push(targets),
                _ => stored = self.store(targets).await,
            }
        }
        if let Some(seq) = confirm {
            let method = if stored {
                metrics::counter!(m::MESSAGES_CONFIRMED).increment(1);
                Method::BasicAck {
                    delivery_tag: seq,
                    multiple: false,
                }
            } else {
                Method::BasicNack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                }
            };
            self.send_method(channel, &method).await?;
        }
        Ok(())
    }
}

impl Session {
    /// Enqueues a message in each target queue, applying `x-max-length`: `reject-publish`
    /// refuses it when the queue is full, `drop-head` drops (or dead-letters) the oldest after.
    /// Returns false when any queue refused it or the engine failed.
    pub(crate) async fn store(&self, targets: Vec<(String, Bytes)>) -> bool {
        let mut stored = true;
        let queues = &self.shared.engine.queues;
        for (queue, batch) in targets {
            let Some(policy) = self.shared.topology.policy(&queue) else {
                continue;
            };
            let ready = || queues.depth(&queue).map(|d| d.ready).unwrap_or(0);
            if let Some(max) = policy.max_length
                && policy.overflow == Overflow::RejectPublish
                && ready() >= max
            {
                stored = false;
                continue;
            }
            if let Err(error) = queues.enqueue(&queue, batch).await {
                tracing::warn!(queue, %error, "enqueue failed");
                stored = false;
                continue;
            }
            m::record_depth(queues.as_ref(), &queue);
            if let Some(max) = policy.max_length
                && policy.overflow == Overflow::DropHead
            {
                let excess = ready().saturating_sub(max);
                if excess > 0
                    && let Err(error) = self.drop_head(&queue, excess as usize).await
                {
                    tracing::warn!(queue, %error, "dropping over-length messages failed");
                }
            }
        }
        stored
    }

    async fn drop_head(&self, queue: &str, count: usize) -> tributary_api::EngineResult<()> {
        let taken = self.shared.engine.queues.take(queue, count).await?;
        let dropped: Vec<_> = taken.into_iter().map(|d| (d.id, Some(d.record))).collect();
        dead_letter(&self.shared, queue, &dropped, REASON_MAXLEN).await
    }
}
