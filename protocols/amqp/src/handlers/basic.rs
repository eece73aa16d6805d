//! basic.get, basic.ack / nack / reject and basic.recover.

use bytes::BytesMut;

use crate::channel::{Unacked, by_queue, return_credit};
use crate::codec::{self, methods::Method};
use crate::deadletter::{REASON_REJECTED, dead_letter, take_live};
use crate::error::{AmqpError, NOT_IMPLEMENTED, PRECONDITION_FAILED};
use crate::expiry;
use crate::handlers::stream;
use crate::message::from_record;
use crate::session::Session;

/// Most acks staged before they are applied.
const STAGE_MAX_ACKS: usize = 1024;

impl Session {
    pub(crate) async fn basic_get(
        &mut self,
        channel: u16,
        queue: &str,
        no_ack: bool,
    ) -> Result<(), AmqpError> {
        self.shared.topology.refresh().await?;
        let info = self.shared.topology.check_queue(queue, self.id)?;
        if info.is_stream() {
            return Err(stream::basic_get_refused(queue));
        }
        self.shared.topology.touch(queue);
        let Some(state) = self.channels.get(&channel) else {
            return Ok(());
        };
        let deliveries = state.deliveries.clone();
        let queues = self.shared.engine.queues.clone();
        let keep_record = self
            .shared
            .topology
            .policy(queue)
            .is_some_and(|p| p.dead_letter_exchange.is_some());
        let Some(delivery) = take_live(&self.shared, queue, 1).await?.into_iter().next() else {
            self.shared.counters.get_empty.increment(1);
            return self.send_method(channel, &Method::BasicGetEmpty).await;
        };
        let message = match from_record(&delivery.record) {
            Ok(message) => message,
            Err(error) => {
                // Undeliverable: it stays at the head of the queue, and the client gets the error.
                queues.requeue(queue, &[delivery.id]).await?;
                return Err(error);
            }
        };
        if no_ack {
            queues.ack(queue, &[delivery.id]).await?;
        }
        let tag = {
            let mut guard = deliveries.lock().await;
            let tag = guard.tag();
            if !no_ack {
                let record = keep_record.then(|| Box::new(delivery.record.clone()));
                guard.unacked.insert(
                    tag,
                    Unacked {
                        queue: queue.into(),
                        id: delivery.id,
                        credit: None,
                        record,
                        stream: false,
                    },
                );
            }
            tag
        };
        let remaining = queues.depth(queue).await.map(|d| d.ready).unwrap_or(0);
        let properties =
            stream::delivered_properties(info.policy.kind, &delivery, &message.raw_properties);
        self.shared.counters.delivered.increment(1);
        match no_ack {
            true => self.shared.counters.delivered_get_auto_ack.increment(1),
            false => self.shared.counters.delivered_get_manual_ack.increment(1),
        }
        if delivery.redelivered {
            self.shared.counters.redelivered.increment(1);
        }
        if let Some(stats) = self.shared.topology.queue_stats(queue) {
            stats.delivered(1, u64::from(delivery.redelivered));
        }
        let method = Method::BasicGetOk {
            delivery_tag: tag,
            redelivered: delivery.redelivered,
            exchange: message.exchange,
            routing_key: message.routing_key,
            message_count: remaining.min(u64::from(u32::MAX)) as u32,
        };
        if message.body.len() >= codec::PIECED_BODY_BYTES {
            // As a consumer's delivery: frames that slice the stored body, not a copy of it.
            let pieces =
                codec::message_pieces(channel, &method, &properties, &message.body, self.frame_max);
            for piece in pieces {
                self.send_bytes(piece).await?;
            }
            return Ok(());
        }
        let mut out = BytesMut::new();
        codec::encode_message(
            &mut out,
            channel,
            &method,
            &properties,
            &message.body,
            self.frame_max,
        );
        self.send(out).await
    }

    /// ack (`requeue` = None), nack and reject (`Some(requeue)`). In a transaction the settle
    /// is held until `tx.commit`.
    pub(crate) async fn basic_settle(
        &mut self,
        channel: u16,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let settled = state.deliveries.lock().await.settle(tag, multiple);
        let Some(settled) = settled else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!("unknown delivery tag {tag}"),
            ));
        };
        if requeue.is_some()
            && let Some((_, one)) = settled.iter().find(|(_, one)| one.stream)
        {
            return Err(stream::nack_refused(&one.queue));
        }
        if state.tx {
            state
                .tx_work
                .settles
                .extend(settled.into_iter().map(|(tag, one)| (tag, one, requeue)));
            return Ok(());
        }
        if requeue.is_none() {
            // Plain acks are batched like publishes: one engine call (and journal fsync) per
            // queue for a burst of acks. See `flush_acks`.
            self.staged_acks
                .extend(settled.into_iter().map(|(_, one)| one));
            if self.staged_acks.len() >= STAGE_MAX_ACKS {
                self.flush_acks().await;
            }
            return Ok(());
        }
        self.apply_settles(
            &settled.into_iter().map(|(_, one)| one).collect::<Vec<_>>(),
            requeue,
        )
        .await
    }

    /// Applies the staged acks. An engine failure here (the queue was deleted meanwhile) only
    /// loses acks of messages that are gone, so it is logged, not reported to the client.
    pub(crate) async fn flush_acks(&mut self) {
        if self.staged_acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.staged_acks);
        if let Err(error) = self.apply_settles(&acks, None).await {
            tracing::warn!(connection = self.id, %error, "applying acks failed");
        }
    }

    /// Tells the engine about settled deliveries and returns their prefetch credit.
    pub(crate) async fn apply_settles(
        &self,
        settled: &[Unacked],
        requeue: Option<bool>,
    ) -> Result<(), AmqpError> {
        let queues = &self.shared.engine.queues;
        let grouped = by_queue(settled);
        for (queue, ids) in &grouped {
            let queue = *queue;
            let outcome = match requeue {
                Some(true) => queues.requeue(queue, ids).await.map(|()| {
                    expiry::arm_after_requeue(&self.shared, queue);
                }),
                None => queues.ack(queue, ids).await.map(|()| {
                    if let Some(stats) = self.shared.topology.queue_stats(queue) {
                        stats.acked(ids.len() as u64);
                    }
                }),
                Some(false) => {
                    let rejected: Vec<_> = settled
                        .iter()
                        .filter(|one| &*one.queue == queue)
                        .map(|one| (one.id, one.record.as_deref().cloned()))
                        .collect();
                    Box::pin(dead_letter(&self.shared, queue, &rejected, REASON_REJECTED)).await
                }
            };
            match outcome {
                Ok(()) => {}
                // Deleted since the delivery: its messages went with it, so there is nothing
                // left to settle; RabbitMQ accepts the ack, nack or reject as well.
                Err(tributary_api::EngineError::UnknownQueue(_)) => {
                    tracing::debug!(
                        queue,
                        count = ids.len(),
                        "settled deliveries of a deleted queue"
                    );
                }
                Err(error) => return Err(error.into()),
            }
        }
        if requeue.is_none() {
            self.shared
                .counters
                .acknowledged
                .increment(settled.len() as u64);
        }
        return_credit(settled);
        Ok(())
    }

    pub(crate) async fn basic_recover(
        &mut self,
        channel: u16,
        requeue: bool,
    ) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "requeue=false"));
        }
        // Not part of a transaction: every unacked delivery goes back now.
        if let Some(state) = self.channels.get(&channel) {
            let settled = state
                .deliveries
                .lock()
                .await
                .settle(0, true)
                .unwrap_or_default();
            let settled: Vec<Unacked> = settled.into_iter().map(|(_, one)| one).collect();
            self.apply_settles(&settled, Some(true)).await?;
        }
        self.send_method(channel, &Method::BasicRecoverOk).await
    }
}
