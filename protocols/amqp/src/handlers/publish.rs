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
use crate::error::{AmqpError, NO_ROUTE, NOT_IMPLEMENTED};
use crate::message::{now_ms, to_record};
use crate::metrics as m;
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
            let record = to_record(
                &pending.exchange,
                &pending.routing_key,
                header.raw_properties.clone(),
                &properties,
                body,
                now_ms(),
            );
            let batch = build_batch(std::slice::from_ref(&record));
            for queue in &queues {
                if let Err(error) = self
                    .shared
                    .engine
                    .queues
                    .enqueue(queue, batch.clone())
                    .await
                {
                    tracing::warn!(queue, %error, "enqueue failed");
                    stored = false;
                }
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
