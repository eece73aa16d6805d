//! basic.consume / basic.cancel and push delivery.
//!
//! Each consumer is a task: it waits for prefetch credit ([`crate::credit`], `prefetch_count`
//! permits, resized by a later `basic.qos`, and one of the channel's `global` permits; none for
//! no-ack consumers), `take`s ready messages, registers their
//! delivery tags and queues the encoded deliveries for the writer while holding the channel's
//! deliveries lock, then sleeps on `wait_ready` when the queue is empty. A settle returns credit.
//! Holding the lock across the queueing keeps tags in wire order across the channel's consumers,
//! so a client's `multiple` ack never covers a tag it has not seen yet.
//! `take` is never cancelled half-way (its result would be lost); cancellation is checked under
//! the lock instead, and anything taken after it is requeued. A stream consumer runs the same
//! loop over the stream's topic from its own position ([`super::stream`]); when the stream
//! holds a batch it cannot deliver, the consumer stops and asks the session, through
//! [`ConsumerFailure`], to close its channel (the session owns the channel's state).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tributary_api::{EngineError, Outbound, QueueService};

use crate::Shared;
use crate::channel::{ConsumerHandle, SharedDeliveries, Unacked};
use crate::codec::{
    self,
    methods::{Consume, DeliverFields, Method},
};
use crate::credit::Credit;
use crate::deadletter::take_live;
use crate::error::{AmqpError, INTERNAL_ERROR, NOT_ALLOWED, NOT_IMPLEMENTED, Reply};
use crate::handlers::reply_to::REPLY_TO;
use crate::handlers::stream;
use crate::message::view_record;
use crate::metrics::{self as m, QueueStats};
use crate::policy::{QueueKind, QueueRef};
use crate::session::Session;
use crate::topology::generated_name;

/// Most messages taken per round when credit allows.
const BATCH: usize = 64;
/// About the message bytes taken per round: large messages are taken a few at a time, so a
/// consumer whose peer reads slowly holds little more than its connection's send budget.
const TAKE_BYTES: usize = 1 << 20;
/// Deliveries are queued for the socket in pieces of about this size, each waiting for the
/// connection's send budget.
const SEND_PIECE: usize = 256 << 10;
/// How long one `wait_ready` sleeps before re-checking.
const WAIT: Duration = Duration::from_secs(5);

/// A consumer that must close its channel: sent to the session, which closes the channel when
/// the consumer is still one of it (it may have been cancelled, or its channel closed, since).
#[derive(Debug)]
pub(crate) struct ConsumerFailure {
    pub channel: u16,
    pub tag: String,
    /// Broker-wide consumer id, telling this consumer from a later one with the same tag.
    pub consumer_id: u64,
    pub reply: Reply,
}

/// Where a consumer's messages come from.
#[derive(Debug)]
enum Source {
    Queue,
    /// A stream, read from this offset on.
    Stream {
        next: i64,
        /// Where a consumer that found nothing waits for the log to pass: past `next`, or past
        /// the high watermark while an open Kafka transaction holds `next` below it.
        wait_from: i64,
    },
}

#[derive(Debug)]
struct ConsumerTask {
    shared: Arc<Shared>,
    queues: Arc<dyn QueueService>,
    keep_records: bool,
    out: Outbound<Bytes>,
    deliveries: SharedDeliveries,
    channel: u16,
    tag: String,
    queue: Arc<str>,
    /// The queue's message counts for the admin API.
    stats: Arc<QueueStats>,
    kind: QueueKind,
    source: Source,
    no_ack: bool,
    credit: Option<Arc<Credit>>,
    /// On a single-active-consumer queue: this consumer's id and the active id.
    active: Option<(u64, watch::Receiver<u64>)>,
    cancel: CancellationToken,
    frame_max: u32,
    consumer_id: u64,
    /// Where a consumer that must close its channel says so (unbounded: each consumer sends
    /// at most one, then stops).
    failures: mpsc::UnboundedSender<ConsumerFailure>,
    /// The body size recent deliveries had: the largest, decaying by 1/8 per delivery (0
    /// before the first).
    message_bytes: usize,
}

impl ConsumerTask {
    /// Waits for credit; returns how many messages may be taken, or None when cancelled.
    async fn wanted(&self) -> Option<usize> {
        // The first round takes one message: its size is not known yet.
        let batch = match self.message_bytes {
            0 => 1,
            bytes => (TAKE_BYTES / bytes).clamp(1, BATCH),
        };
        let Some(credit) = &self.credit else {
            return Some(batch);
        };
        tokio::select! {
            acquired = credit.acquire_one() => acquired.ok()?,
            () = self.cancel.cancelled() => return None,
        }
        Some(1 + credit.try_take(batch - 1))
    }

    fn give_back(&self, permits: usize) {
        if let Some(credit) = &self.credit {
            credit.release(permits);
        }
    }

    /// Waits until this consumer may receive (always, unless single-active); false if cancelled.
    async fn await_turn(&mut self) -> bool {
        let Some((id, active)) = &mut self.active else {
            return true;
        };
        while *active.borrow_and_update() != *id {
            tokio::select! {
                changed = active.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
                () = self.cancel.cancelled() => return false,
            }
        }
        true
    }

    async fn run(mut self) {
        while self.await_turn().await
            && let Some(wanted) = self.wanted().await
        {
            let taken = match &mut self.source {
                Source::Queue => take_live(&self.shared, &self.queue, wanted).await,
                Source::Stream { next, wait_from } => {
                    match stream::read(&self.shared, &self.queue, next, wanted).await {
                        Ok(taken) if taken.deliveries.is_empty() => match taken.undeliverable {
                            Some(bad) => {
                                self.give_back(wanted);
                                self.fail(bad.refuse(&self.queue)).await;
                                return;
                            }
                            None => {
                                *wait_from = taken.wait_from;
                                Ok(Vec::new())
                            }
                        },
                        // Records before an undeliverable batch go out; the next read stops at it.
                        other => other.map(|taken| taken.deliveries),
                    }
                }
            };
            match taken {
                Ok(taken) if taken.is_empty() => {
                    self.give_back(wanted);
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        _ = self.wait_for_messages() => {}
                    }
                }
                Ok(taken) => {
                    self.give_back(wanted - taken.len());
                    if !self.deliver(taken).await {
                        return;
                    }
                }
                Err(EngineError::UnknownQueue(_)) => {
                    // The queue was deleted under us: tell the client (consumer_cancel_notify).
                    let mut out = BytesMut::new();
                    let cancel = Method::BasicCancel {
                        consumer_tag: self.tag.clone(),
                        nowait: true,
                    };
                    codec::encode_method(&mut out, self.channel, &cancel);
                    let guard = self.deliveries.lock().await;
                    if !guard.closed && !self.cancel.is_cancelled() {
                        let _ = self.send_piece(out.freeze()).await;
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(queue = %self.queue, %error, "consumer take failed; retrying");
                    self.give_back(wanted);
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Asks the session to close this consumer's channel with `reply`, unless the consumer was
    /// cancelled or the channel closed meanwhile.
    async fn fail(&self, reply: Reply) {
        let guard = self.deliveries.lock().await;
        if guard.closed || self.cancel.is_cancelled() {
            return;
        }
        let _ = self.failures.send(ConsumerFailure {
            channel: self.channel,
            tag: self.tag.clone(),
            consumer_id: self.consumer_id,
            reply,
        });
        drop(guard);
    }

    /// Sleeps until the source may have a message (or a while passed).
    async fn wait_for_messages(&self) {
        match &self.source {
            Source::Queue => {
                let _ = self.queues.wait_ready(&self.queue, WAIT).await;
            }
            Source::Stream { next, wait_from } => {
                // A stream that is gone is reported by the next read.
                let Ok(partition) = self.shared.topology.stream_partition(&self.queue) else {
                    return;
                };
                let _ = self
                    .shared
                    .engine
                    .log
                    .wait_for(&partition, (*next).max(*wait_from), WAIT)
                    .await;
            }
        }
    }

    /// Sends deliveries; false when the consumer must stop. A record that cannot be read as
    /// AMQP ends the delivery there: those before it are sent, it and those after it go back
    /// (a queue requeues them; a stream consumer, whose position the client keeps, stops), and
    /// the session closes the channel with the error (docs/interop.md).
    /// Queues `piece` for the connection's writer; false when the writer is gone.
    async fn send_piece(&self, piece: Bytes) -> bool {
        let len = piece.len();
        self.out.send(piece, len).await.is_ok()
    }

    async fn deliver(&mut self, mut taken: Vec<tributary_api::queue::Delivery>) -> bool {
        let mut guard = self.deliveries.lock().await;
        if guard.closed || self.cancel.is_cancelled() {
            drop(guard);
            self.give_back(taken.len());
            let ids: Vec<u64> = taken.iter().map(|d| d.id).collect();
            self.put_back(&ids).await;
            return false;
        }
        let mut out = BytesMut::new();
        let mut refused = None;
        let mut sent = true;
        let mut redelivered = 0u64;
        for (index, delivery) in taken.iter().enumerate() {
            let message = match view_record(&delivery.record) {
                Ok(message) => message,
                Err(error) => {
                    refused = Some((index, error));
                    break;
                }
            };
            let tag = guard.tag();
            if !self.no_ack {
                guard.unacked.insert(
                    tag,
                    Unacked {
                        queue: self.queue.clone(),
                        id: delivery.id,
                        credit: self.credit.clone(),
                        record: self.keep_records.then(|| Box::new(delivery.record.clone())),
                        stream: self.kind == QueueKind::Stream,
                    },
                );
            }
            let properties =
                stream::delivered_properties(self.kind, delivery, &message.raw_properties);
            let deliver = DeliverFields {
                consumer_tag: &self.tag,
                delivery_tag: tag,
                redelivered: delivery.redelivered,
                exchange: &message.exchange,
                routing_key: &message.routing_key,
            };
            let body_len = message.body.len();
            if body_len >= codec::PIECED_BODY_BYTES {
                // The frames slice the stored body instead of copying it (one copy of a large
                // message in memory, not two); what was encoded before goes out first.
                if !out.is_empty() {
                    sent &= self.send_piece(out.split().freeze()).await;
                }
                // `view_record`'s body is the record's value.
                let body = delivery.record.value.clone().unwrap_or_default();
                let pieces = codec::delivery_pieces(
                    self.channel,
                    &deliver,
                    &properties,
                    &body,
                    self.frame_max,
                );
                for piece in pieces {
                    sent &= self.send_piece(piece).await;
                }
            } else {
                codec::encode_delivery(
                    &mut out,
                    self.channel,
                    &deliver,
                    &properties,
                    message.body,
                    self.frame_max,
                );
            }
            // Follows a large message at once and forgets it slowly.
            self.message_bytes = body_len.max(self.message_bytes * 7 / 8).max(1);
            if out.len() >= SEND_PIECE {
                // A failed send means the writer is gone; what was recorded as unacked is
                // requeued when the connection's session ends.
                sent &= self.send_piece(out.split().freeze()).await;
            }
            if delivery.redelivered {
                self.shared.counters.redelivered.increment(1);
                redelivered += 1;
            }
        }
        let not_sent = refused.as_ref().map_or(Vec::new(), |(index, _)| {
            taken.split_off(*index).into_iter().map(|d| d.id).collect()
        });
        let ids: Vec<u64> = taken.iter().map(|d| d.id).collect();
        self.shared.counters.delivered.increment(ids.len() as u64);
        self.stats.delivered(ids.len() as u64, redelivered);
        match self.no_ack {
            true => &self.shared.counters.delivered_consume_auto_ack,
            false => &self.shared.counters.delivered_consume_manual_ack,
        }
        .increment(ids.len() as u64);
        if !not_sent.is_empty() {
            self.give_back(not_sent.len());
            self.put_back(&not_sent).await;
        }
        if !out.is_empty() {
            sent &= self.send_piece(out.freeze()).await;
        }
        drop(guard);
        let refusing = refused.is_some();
        if let Some((_, error)) = refused {
            tracing::warn!(queue = %self.queue, consumer = %self.tag, %error, "closing a consumer's channel: a record cannot be delivered over AMQP");
            let reply = match error {
                AmqpError::Channel(reply) | AmqpError::Connection(reply) => reply,
                other => Reply::new(INTERNAL_ERROR, other),
            };
            // After the deliveries above: the close follows them on the wire.
            self.fail(reply).await;
        }
        if self.no_ack
            && let Err(error) = self.queues.ack(&self.queue, &ids).await
        {
            tracing::warn!(queue = %self.queue, %error, "auto-ack failed");
        }
        sent && !refusing
    }

    /// Returns taken but undelivered messages to a queue (a stream has nothing to return).
    async fn put_back(&self, ids: &[u64]) {
        if ids.is_empty() || matches!(self.source, Source::Stream { .. }) {
            return;
        }
        if let Err(error) = self.queues.requeue(&self.queue, ids).await {
            tracing::warn!(queue = %self.queue, %error, "requeue of undelivered messages failed");
        }
        crate::expiry::arm_after_requeue(&self.shared, &self.queue);
    }
}

impl Session {
    pub(crate) async fn basic_consume(
        &mut self,
        channel: u16,
        consume: Consume,
    ) -> Result<(), AmqpError> {
        if consume.queue == REPLY_TO {
            let tag = if consume.consumer_tag.is_empty() {
                generated_name("amq.ctag-")
            } else {
                consume.consumer_tag.clone()
            };
            return self
                .consume_reply_to(channel, tag, consume.no_ack, consume.nowait)
                .await;
        }
        self.shared.topology.refresh().await?;
        let info = self.shared.topology.check_queue(&consume.queue, self.id)?;
        let Some((prefetch, global_prefetch)) = self
            .channels
            .get(&channel)
            .map(|c| (c.prefetch_count, c.global_prefetch_count))
        else {
            return Ok(());
        };
        if info.is_stream() {
            stream::check_consumer(&consume.queue, consume.no_ack, prefetch)?;
        }
        if global_prefetch > 0 && info.policy.kind != QueueKind::Classic {
            // RabbitMQ's quorum and stream queues refuse a channel with a global limit.
            return Err(AmqpError::connection(
                NOT_IMPLEMENTED,
                format_args!(
                    "{} does not support global qos",
                    QueueRef {
                        name: &consume.queue,
                        vhost: &self.vhost
                    }
                ),
            ));
        }
        let source = if info.is_stream() {
            let spec = consume.arguments.get("x-stream-offset");
            let next = stream::start_offset(&self.shared, &consume.queue, spec).await?;
            Source::Stream {
                next,
                wait_from: next,
            }
        } else {
            Source::Queue
        };
        self.shared.topology.touch(&consume.queue);
        let Some(state) = self.channels.get(&channel) else {
            return Ok(());
        };
        let tag = if consume.consumer_tag.is_empty() {
            generated_name("amq.ctag-")
        } else {
            consume.consumer_tag.clone()
        };
        if state.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(
                NOT_ALLOWED,
                format_args!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let credit = (!consume.no_ack).then(|| {
            Arc::new(Credit::within_channel(
                state.prefetch_count,
                state.channel_credit.clone(),
            ))
        });
        let deliveries = state.deliveries.clone();
        let consumer_id = self.shared.next_connection_id();
        let active = self
            .shared
            .topology
            .consumer_added(&consume.queue, consumer_id, consume.exclusive)?
            .map(|watch| (consumer_id, watch));
        if !consume.nowait {
            let ok = Method::BasicConsumeOk {
                consumer_tag: tag.clone(),
            };
            if let Err(error) = self.send_method(channel, &ok).await {
                self.shared
                    .topology
                    .consumer_removed(&consume.queue, consumer_id);
                return Err(error);
            }
        }
        metrics::gauge!(m::CONSUMERS).increment(1.0);
        let cancel = CancellationToken::new();
        let keep_records = self
            .shared
            .topology
            .policy(&consume.queue)
            .is_some_and(|p| p.dead_letter_exchange.is_some());
        let task = ConsumerTask {
            shared: self.shared.clone(),
            queues: self.shared.engine.queues.clone(),
            keep_records,
            out: self.out.clone(),
            deliveries,
            channel,
            tag: tag.clone(),
            queue: consume.queue.as_str().into(),
            stats: info.stats.clone(),
            kind: info.policy.kind,
            source,
            no_ack: consume.no_ack,
            credit: credit.clone(),
            active,
            cancel: cancel.clone(),
            frame_max: self.frame_max,
            consumer_id,
            failures: self.consumer_failures.clone(),
            message_bytes: 0,
        };
        let task = tokio::spawn(task.run());
        if let Some(state) = self.channels.get_mut(&channel) {
            state.consumers.insert(
                tag,
                ConsumerHandle {
                    id: consumer_id,
                    queue: consume.queue,
                    cancel,
                    task,
                    credit,
                },
            );
        }
        Ok(())
    }

    pub(crate) async fn basic_cancel(
        &mut self,
        channel: u16,
        tag: &str,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        if self.cancel_reply_to(channel, Some(tag)) {
            if nowait {
                return Ok(());
            }
            return self
                .send_method(
                    channel,
                    &Method::BasicCancelOk {
                        consumer_tag: tag.to_owned(),
                    },
                )
                .await;
        }
        let handle = self
            .channels
            .get_mut(&channel)
            .and_then(|state| state.consumers.remove(tag));
        if let Some(handle) = handle {
            handle.cancel.cancel();
            let _ = handle.task.await;
            self.consumer_gone(&handle.queue, handle.id).await;
        }
        if nowait {
            return Ok(());
        }
        self.send_method(
            channel,
            &Method::BasicCancelOk {
                consumer_tag: tag.to_owned(),
            },
        )
        .await
    }

    /// Closes the channel of a consumer that failed ([`ConsumerFailure`]), when the consumer is
    /// still one of that open channel.
    pub(crate) async fn consumer_failed(
        &mut self,
        failure: ConsumerFailure,
    ) -> Result<(), AmqpError> {
        let current = self.channels.get(&failure.channel).is_some_and(|state| {
            state.state == crate::channel::ChannelState::Open
                && state
                    .consumers
                    .get(&failure.tag)
                    .is_some_and(|c| c.id == failure.consumer_id)
        });
        if !current {
            return Ok(());
        }
        self.close_channel_with(failure.channel, failure.reply)
            .await
    }

    /// A consumer stopped: an auto-delete queue goes with its last consumer.
    pub(crate) async fn consumer_gone(&self, queue: &str, id: u64) {
        metrics::gauge!(m::CONSUMERS).decrement(1.0);
        if self.shared.topology.consumer_removed(queue, id)
            && let Err(error) = self.shared.topology.delete_queue(queue).await
        {
            tracing::warn!(queue, %error, "auto-delete failed");
        }
    }

    /// Stops this connection's consumers of a queue being deleted and tells their clients.
    pub(crate) async fn cancel_consumers_of(&mut self, queue: &str) -> Result<(), AmqpError> {
        let mut stopped = Vec::new();
        for (channel, state) in &mut self.channels {
            let tags: Vec<String> = state
                .consumers
                .iter()
                .filter(|(_, c)| c.queue == queue)
                .map(|(t, _)| t.clone())
                .collect();
            for tag in tags {
                if let Some(handle) = state.consumers.remove(&tag) {
                    handle.cancel.cancel();
                    stopped.push((*channel, tag, handle));
                }
            }
        }
        for (channel, tag, handle) in stopped {
            let _ = handle.task.await;
            metrics::gauge!(m::CONSUMERS).decrement(1.0);
            self.shared.topology.consumer_removed(queue, handle.id);
            self.send_method(
                channel,
                &Method::BasicCancel {
                    consumer_tag: tag,
                    nowait: true,
                },
            )
            .await?;
        }
        Ok(())
    }
}
