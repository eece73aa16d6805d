//! The per-connection state machine after the handshake: channels, frame dispatch, channel and
//! connection errors, and cleanup when the connection ends.
//!
//! Rules enforced here (RabbitMQ's codes): a method on an unopened channel or a second
//! `channel.open` is `504 CHANNEL_ERROR`; a channel id above `channel_max` is `504`; content
//! frames without a publish, or a method while content is expected, are `505 UNEXPECTED_FRAME`;
//! after the server closes a channel it drops everything on it but `close`/`close-ok`.
//! Every method is checked against the user's permissions on the vhost before it is handled
//! ([`crate::access::Grant`]); a publish while a resource alarm is on blocks the connection
//! ([`crate::alarm`]). A registered session ([`Session::attach`]) takes permissions swapped in
//! by the admin API before its next method and ends with `320` when the admin API closes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tributary_api::{CloseReason, Outbound};

use crate::Shared;
use crate::access::Grant;
use crate::admin::connections::Registered;
use crate::alarm::Alarms;
use crate::channel::{Channel, ChannelState, PartialBytes, by_queue};
use crate::codec::content::{BasicProperties, ContentHeader};
use crate::codec::methods::{Method, peek_id};
use crate::codec::{self, Frame, FrameKind};
use crate::connection::FrameReader;
use crate::error::{self, AmqpError, CHANNEL_ERROR, Reply, UNEXPECTED_FRAME};
use crate::handlers::consume::ConsumerFailure;
use crate::handlers::publish::Staged;
use crate::metrics as m;
use crate::reader::IdleLimit;

/// Reply code for a close forced by the broker (shutdown).
const CONNECTION_FORCED: u16 = 320;

/// Who a connection logged in as, and where: the outcome of the handshake.
#[derive(Debug)]
pub struct Login {
    pub shared: Arc<Shared>,
    pub vhost: String,
    /// The authenticated user; a published `user_id` must equal it.
    pub user: String,
    pub grant: Grant,
    /// The client announced the `connection.blocked` capability.
    pub blocked_capable: bool,
    pub alarms: watch::Receiver<Alarms>,
}

#[derive(Debug)]
pub struct Session {
    pub shared: Arc<Shared>,
    pub id: u64,
    pub vhost: String,
    pub user: String,
    grant: Grant,
    blocked_capable: bool,
    alarms: watch::Receiver<Alarms>,
    pub out: Outbound<Bytes>,
    pub frame_max: u32,
    pub channel_max: u16,
    pub channels: HashMap<u16, Channel>,
    /// Routed publishes not yet stored (see [`crate::handlers::publish`]).
    pub(crate) staged: Vec<Staged>,
    pub(crate) staged_bytes: usize,
    /// Acks not yet applied to the engine (see [`Session::flush_acks`]).
    pub(crate) staged_acks: Vec<crate::channel::Unacked>,
    method_metrics: m::MethodMetrics,
    /// Consumer tasks that must close their channel (see [`ConsumerFailure`]); the session
    /// reads them between frames.
    pub(crate) consumer_failures: mpsc::UnboundedSender<ConsumerFailure>,
    failed_consumers: mpsc::UnboundedReceiver<ConsumerFailure>,
    /// Bodies announced and not yet complete, over all channels.
    partial: PartialBytes,
    /// The admin API's handle on this connection, once registered.
    registration: Option<Registered>,
}

impl Session {
    /// `buffer_cap`: the most bytes of partly received messages the connection may hold
    /// (`limits.connection_buffer_bytes`; never below the message size limit).
    pub fn new(
        login: Login,
        out: Outbound<Bytes>,
        frame_max: u32,
        channel_max: u16,
        buffer_cap: u64,
    ) -> Self {
        let id = login.shared.next_connection_id();
        // A lone body is always admitted (its size limit bounds it); the cap bounds the
        // partly received bodies a connection holds at once beyond it.
        let partial = PartialBytes::new(buffer_cap);
        let (consumer_failures, failed_consumers) = mpsc::unbounded_channel();
        Self {
            shared: login.shared,
            id,
            vhost: login.vhost,
            user: login.user,
            grant: login.grant,
            blocked_capable: login.blocked_capable,
            alarms: login.alarms,
            out,
            frame_max,
            channel_max,
            channels: HashMap::new(),
            staged: Vec::new(),
            staged_bytes: 0,
            staged_acks: Vec::new(),
            method_metrics: m::MethodMetrics::default(),
            consumer_failures,
            failed_consumers,
            partial,
            registration: None,
        }
    }

    /// Registers the session with the broker's open connections (see [`crate::admin`]).
    pub(crate) fn attach(&mut self, registration: Registered) {
        self.registration = Some(registration);
    }

    /// Queues encoded frames for the writer; waits when the peer reads slowly.
    pub async fn send(&self, bytes: BytesMut) -> Result<(), AmqpError> {
        self.send_bytes(bytes.freeze()).await
    }

    /// [`Session::send`] for bytes that are already frozen (a piece of a large message).
    pub async fn send_bytes(&self, bytes: Bytes) -> Result<(), AmqpError> {
        let len = bytes.len();
        self.out
            .send(bytes, len)
            .await
            .map_err(|_| AmqpError::Io(std::io::ErrorKind::BrokenPipe.into()))
    }

    pub async fn send_method(&self, channel: u16, method: &Method) -> Result<(), AmqpError> {
        let mut out = BytesMut::new();
        codec::encode_method(&mut out, channel, method);
        self.send(out).await
    }

    /// Handles frames until the peer closes (`Ok(None)`), the connection must be closed with a
    /// reply (`Ok(Some)` or `Err(Connection)`), or I/O fails. `missed_heartbeats` (twice the
    /// negotiated interval) of silence ends the connection; with heartbeats off, the reader's
    /// idle timeout does while no channel is open.
    pub async fn run(
        &mut self,
        reader: &mut FrameReader,
        missed_heartbeats: Option<Duration>,
        shutdown: &CancellationToken,
    ) -> Result<Option<Reply>, AmqpError> {
        let unused = reader.timeouts().idle;
        let closing = match &self.registration {
            Some(registration) => registration.control.closing.clone(),
            None => CancellationToken::new(),
        };
        loop {
            if let Some(registration) = &self.registration {
                let open = self.channels.len();
                registration
                    .control
                    .channels
                    .store(open, std::sync::atomic::Ordering::Relaxed);
            }
            let idle = match missed_heartbeats {
                Some(limit) => Some(IdleLimit {
                    limit,
                    reason: CloseReason::Heartbeat,
                }),
                None => unused
                    .filter(|_| self.channels.is_empty())
                    .map(|limit| IdleLimit {
                        limit,
                        reason: CloseReason::Idle,
                    }),
            };
            let frame = tokio::select! {
                frame = reader.next(idle) => frame?,
                Some(failure) = self.failed_consumers.recv() => {
                    Box::pin(self.consumer_failed(failure)).await?;
                    continue;
                }
                () = shutdown.cancelled() => {
                    self.flush_publishes().await?;
                    return Ok(Some(Reply::new(CONNECTION_FORCED, "broker shutting down")));
                }
                // The writer failed or timed out on a peer that stopped reading: nothing more
                // can reach the peer, so the connection ends (the shell logs why).
                () = self.out.closed() => {
                    self.flush_publishes().await?;
                    return Err(AmqpError::Io(std::io::ErrorKind::BrokenPipe.into()));
                }
                () = closing.cancelled() => {
                    self.flush_publishes().await?;
                    let reason = self.registration.as_ref().map(|r| r.control.close_reason());
                    return Ok(Some(Reply::new(CONNECTION_FORCED, reason.unwrap_or_default())));
                }
            };
            let Some(frame) = frame else {
                self.flush_publishes().await?;
                return Ok(None);
            };
            let publish = matches!(&frame.kind, FrameKind::Method(payload)
                if peek_id(payload) == Some((60, 40)));
            if self.handle_frame(frame).await? {
                return Ok(None);
            }
            if publish && self.alarms.borrow().any() && self.stay_blocked(shutdown).await? {
                return Ok(Some(Reply::new(CONNECTION_FORCED, "broker shutting down")));
            }
            // Store what was staged once the client has nothing more queued up for us.
            if !reader.fill_ready() {
                self.flush_publishes().await?;
            }
        }
    }

    /// A publish arrived while an alarm is on: stores what is staged, sends
    /// `connection.blocked` and reads nothing more until every alarm is off, then sends
    /// `connection.unblocked`. Returns true when the broker shuts down meanwhile.
    async fn stay_blocked(&mut self, shutdown: &CancellationToken) -> Result<bool, AmqpError> {
        self.flush_publishes().await?;
        let reason = self.alarms.borrow().reason();
        tracing::info!(
            connection = self.id,
            reason,
            "blocking a publishing connection"
        );
        metrics::gauge!(m::BLOCKED_CONNECTIONS).increment(1.0);
        if self.blocked_capable {
            let blocked = Method::ConnectionBlocked {
                reason: reason.to_owned(),
            };
            self.send_method(0, &blocked).await?;
        }
        let cleared = async {
            while self.alarms.borrow_and_update().any() {
                if self.alarms.changed().await.is_err() {
                    // No monitor any more: the alarm can never clear.
                    std::future::pending::<()>().await;
                }
            }
        };
        let shutting_down = tokio::select! {
            () = cleared => false,
            () = shutdown.cancelled() => true,
        };
        metrics::gauge!(m::BLOCKED_CONNECTIONS).decrement(1.0);
        if shutting_down {
            return Ok(true);
        }
        tracing::info!(connection = self.id, "alarms cleared; unblocking");
        if self.blocked_capable {
            self.send_method(0, &Method::ConnectionUnblocked).await?;
        }
        Ok(false)
    }

    /// Returns true when the client closed the connection cleanly.
    async fn handle_frame(&mut self, frame: Frame) -> Result<bool, AmqpError> {
        let channel = frame.channel;
        // Any method but a publish or an ack may observe stored messages or queue state (get,
        // delete, close...): apply the staged ones first so the client sees its own effects.
        if let FrameKind::Method(payload) = &frame.kind
            && !matches!(peek_id(payload), Some((60, 40 | 80)))
        {
            Box::pin(self.flush_publishes()).await?;
        }
        if channel == 0 {
            return Box::pin(self.handle_channel_zero(frame.kind)).await;
        }
        if channel > self.channel_max {
            return Err(AmqpError::connection(
                CHANNEL_ERROR,
                format_args!(
                    "channel id {channel} exceeds channel_max {}",
                    self.channel_max
                ),
            ));
        }
        let result = match frame.kind {
            FrameKind::Method(payload) => self.handle_method(channel, &payload).await,
            FrameKind::Header(payload) => self.handle_header(channel, &payload).await,
            FrameKind::Body(payload) => self.handle_body(channel, payload).await,
            FrameKind::Heartbeat => Ok(()),
        };
        match result {
            Err(AmqpError::Channel(reply)) => {
                Box::pin(self.close_channel_with(channel, reply)).await?;
                Ok(false)
            }
            other => other.map(|()| false),
        }
    }

    async fn handle_channel_zero(&mut self, kind: FrameKind) -> Result<bool, AmqpError> {
        let payload = match kind {
            FrameKind::Heartbeat => return Ok(false),
            FrameKind::Method(payload) => payload,
            FrameKind::Header(_) | FrameKind::Body(_) => {
                return Err(AmqpError::connection(
                    UNEXPECTED_FRAME,
                    "content frame on channel 0",
                ));
            }
        };
        let method = Method::decode(&payload).map_err(|e| {
            error::method_error(&e, &payload).caused_by(peek_id(&payload).unwrap_or((0, 0)))
        })?;
        match method {
            Method::ConnectionClose {
                reply_code,
                reply_text,
                ..
            } => {
                tracing::debug!(
                    connection = self.id,
                    reply_code,
                    reply_text,
                    "client closed the connection"
                );
                self.cleanup().await;
                self.send_method(0, &Method::ConnectionCloseOk).await?;
                Ok(true)
            }
            Method::ConnectionCloseOk => Ok(true),
            // Users are stored with passwords, which do not expire: like RabbitMQ's internal
            // backend, the session keeps its login and permissions and the secret is not kept.
            Method::ConnectionUpdateSecret { reason, .. } => {
                tracing::info!(
                    connection = self.id,
                    reason,
                    "client updated its secret; stored-password logins do not expire, nothing to re-check"
                );
                self.send_method(0, &Method::ConnectionUpdateSecretOk)
                    .await?;
                Ok(false)
            }
            other => Err(AmqpError::connection(
                error::COMMAND_INVALID,
                format_args!("unexpected method {:?} on channel 0", other.id()),
            )
            .caused_by(other.id())),
        }
    }

    async fn handle_method(&mut self, channel: u16, payload: &Bytes) -> Result<(), AmqpError> {
        let id = peek_id(payload).unwrap_or((0, 0));
        let method =
            Method::decode(payload).map_err(|e| error::method_error(&e, payload).caused_by(id))?;
        let metric = self.method_metrics.index(method_name(id));
        self.method_metrics.counter(metric).increment(1);
        let Some(state) = self.channels.get(&channel).map(|c| c.state) else {
            if method == Method::ChannelOpen {
                self.channels.insert(channel, Channel::default());
                metrics::gauge!(m::CHANNELS).increment(1.0);
                metrics::counter!(m::CHANNELS_OPENED).increment(1);
                return self.send_method(channel, &Method::ChannelOpenOk).await;
            }
            return Err(
                AmqpError::connection(CHANNEL_ERROR, "expected 'channel.open'").caused_by(id),
            );
        };
        if state == ChannelState::Closing {
            match method {
                Method::ChannelCloseOk => self.drop_channel(channel).await,
                Method::ChannelClose { .. } => {
                    self.drop_channel(channel).await;
                    self.send_method(channel, &Method::ChannelCloseOk).await?;
                }
                _ => {}
            }
            return Ok(());
        }
        // RabbitMQ names the publish still waiting for its content, not the intruding method.
        if let Some(waiting) = self
            .channels
            .get(&channel)
            .and_then(|c| c.pending.as_ref())
            .map(|p| p.method)
        {
            return Err(AmqpError::connection(
                UNEXPECTED_FRAME,
                "expected content header for class 60, got non content header frame instead",
            )
            .caused_by(waiting));
        }
        self.check_permitted(&method).map_err(|e| e.caused_by(id))?;
        let started = Instant::now();
        let result = match method {
            // basic.publish, the method of every message, runs in this future; the rest are
            // boxed, so the large future of `dispatch` is not part of (and moved with) the
            // future of every frame.
            Method::BasicPublish {
                exchange,
                routing_key,
                mandatory,
                immediate,
            } => self.basic_publish(channel, exchange, routing_key, mandatory, immediate),
            method => Box::pin(self.dispatch(channel, method)).await,
        }
        .map_err(|e| e.caused_by(id));
        self.method_metrics
            .histogram(metric)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Refuses a method the user's permissions do not allow. RabbitMQ checks a server-named queue's
    /// configure permission on its generated name; the topology draws that name later, so the
    /// check uses one of the same form (`amq.gen-` and 22 random characters).
    fn check_permitted(&mut self, method: &Method) -> Result<(), AmqpError> {
        if let Some(registration) = &mut self.registration
            && registration.grant.has_changed().unwrap_or(false)
        {
            self.grant = registration.grant.borrow_and_update().clone();
        }
        if let Method::QueueDeclare(decl) = method {
            // U+001F separates vhost and queue in engine names (see crate::vhost).
            if decl.queue.contains('\u{1f}') {
                return Err(AmqpError::channel(
                    error::PRECONDITION_FAILED,
                    "queue names cannot contain U+001F",
                ));
            }
            if decl.queue.is_empty() && !decl.passive {
                let mut named = decl.clone();
                named.queue = crate::topology::generated_name("amq.gen-");
                let named = Method::QueueDeclare(named);
                return self.grant.check(&named, &self.vhost, &self.user);
            }
        }
        self.grant.check(method, &self.vhost, &self.user)
    }

    /// Runs every method but `basic.publish` (see `handle_method`).
    async fn dispatch(&mut self, channel: u16, method: Method) -> Result<(), AmqpError> {
        match method {
            Method::ChannelOpen => Err(AmqpError::connection(
                CHANNEL_ERROR,
                "second 'channel.open' seen",
            )),
            Method::ChannelClose { .. } => {
                self.drop_channel(channel).await;
                self.send_method(channel, &Method::ChannelCloseOk).await
            }
            Method::ChannelCloseOk => Ok(()),
            Method::ChannelFlow { active } => self.channel_flow(channel, active).await,
            Method::BasicQos {
                prefetch_size,
                prefetch_count,
                global,
            } => {
                self.basic_qos(channel, prefetch_size, prefetch_count, global)
                    .await
            }
            Method::ConfirmSelect { nowait } => self.confirm_select(channel, nowait).await,
            Method::TxSelect => self.tx_select(channel).await,
            Method::TxCommit => self.tx_commit(channel).await,
            Method::TxRollback => self.tx_rollback(channel).await,
            Method::ExchangeDeclare(decl) => self.exchange_declare(channel, decl).await,
            Method::ExchangeDelete {
                exchange,
                if_unused,
                nowait,
            } => {
                self.exchange_delete(channel, &exchange, if_unused, nowait)
                    .await
            }
            Method::ExchangeBind(binding) => self.exchange_bind(channel, binding, true).await,
            Method::ExchangeUnbind(binding) => self.exchange_bind(channel, binding, false).await,
            Method::QueueDeclare(decl) => self.queue_declare(channel, decl).await,
            Method::QueueBind(binding) => self.queue_bind(channel, binding, true).await,
            Method::QueueUnbind(binding) => self.queue_bind(channel, binding, false).await,
            Method::QueuePurge { queue, nowait } => self.queue_purge(channel, &queue, nowait).await,
            Method::QueueDelete {
                queue,
                if_unused,
                if_empty,
                nowait,
            } => {
                self.queue_delete(channel, &queue, if_unused, if_empty, nowait)
                    .await
            }
            Method::BasicConsume(consume) => self.basic_consume(channel, consume).await,
            Method::BasicCancel {
                consumer_tag,
                nowait,
            } => self.basic_cancel(channel, &consumer_tag, nowait).await,
            Method::BasicCancelOk { .. } => Ok(()),
            Method::BasicGet { queue, no_ack } => self.basic_get(channel, &queue, no_ack).await,
            Method::BasicAck {
                delivery_tag,
                multiple,
            } => {
                self.basic_settle(channel, delivery_tag, multiple, None)
                    .await
            }
            Method::BasicNack {
                delivery_tag,
                multiple,
                requeue,
            } => {
                self.basic_settle(channel, delivery_tag, multiple, Some(requeue))
                    .await
            }
            Method::BasicReject {
                delivery_tag,
                requeue,
            } => {
                self.basic_settle(channel, delivery_tag, false, Some(requeue))
                    .await
            }
            Method::BasicRecover { requeue } | Method::BasicRecoverAsync { requeue } => {
                self.basic_recover(channel, requeue).await
            }
            other => Err(AmqpError::connection(
                error::COMMAND_INVALID,
                format_args!("method {:?} is not valid from a client", other.id()),
            )),
        }
    }

    async fn handle_header(&mut self, channel: u16, payload: &Bytes) -> Result<(), AmqpError> {
        let pending = self
            .channels
            .get_mut(&channel)
            .filter(|c| c.state == ChannelState::Open)
            .and_then(|c| c.pending.as_mut().filter(|p| p.header.is_none()));
        let Some(pending) = pending else {
            if self
                .channels
                .get(&channel)
                .is_some_and(|c| c.state == ChannelState::Closing)
            {
                return Ok(());
            }
            return Err(AmqpError::connection(
                UNEXPECTED_FRAME,
                "expected method frame, got non method frame instead",
            ));
        };
        let header = ContentHeader::decode(payload).map_err(|e| error::codec_error(&e))?;
        let properties =
            BasicProperties::parse(&header.raw_properties).map_err(|e| error::codec_error(&e))?;
        let size = header.body_size;
        if size > self.shared.settings.max_message_bytes {
            return Err(AmqpError::channel(
                error::PRECONDITION_FAILED,
                format_args!(
                    "message size {size} is larger than configured max size {}",
                    self.shared.settings.max_message_bytes
                ),
            ));
        }
        if size > 0 {
            let Some(held) = self.partial.hold(size) else {
                tributary_api::guard::count_close("amqp", CloseReason::BufferLimit);
                return Err(AmqpError::connection(
                    error::RESOURCE_ERROR,
                    format_args!(
                        "a message of {size} bytes would take this connection's partly received \
                         messages over {} bytes (limits.connection_buffer_bytes)",
                        self.partial.cap()
                    ),
                ));
            };
            pending.held = Some(held);
        }
        pending.header = Some((header, properties));
        if size == 0 {
            return self.complete_publish(channel).await;
        }
        Ok(())
    }

    async fn handle_body(&mut self, channel: u16, payload: Bytes) -> Result<(), AmqpError> {
        let pending = self
            .channels
            .get_mut(&channel)
            .filter(|c| c.state == ChannelState::Open)
            .and_then(|c| c.pending.as_mut())
            .filter(|p| p.header.is_some());
        let Some(pending) = pending else {
            if self
                .channels
                .get(&channel)
                .is_some_and(|c| c.state == ChannelState::Closing)
            {
                return Ok(());
            }
            return Err(AmqpError::connection(
                UNEXPECTED_FRAME,
                "expected method frame, got non method frame instead",
            ));
        };
        let expected = pending.header.as_ref().map_or(0, |(h, _)| h.body_size);
        let received = pending.body.len() as u64 + payload.len() as u64;
        if received > expected {
            return Err(AmqpError::connection(
                error::FRAME_ERROR,
                format_args!("body of {received} bytes exceeds the declared {expected}"),
            ));
        }
        pending.body.push(payload, expected as usize);
        if received == expected {
            return self.complete_publish(channel).await;
        }
        Ok(())
    }

    /// Sends `channel.close` for a channel error and releases the channel's resources; the
    /// channel stays reserved until the client's `close-ok`.
    pub(crate) async fn close_channel_with(
        &mut self,
        channel: u16,
        reply: Reply,
    ) -> Result<(), AmqpError> {
        tracing::info!(connection = self.id, channel, %reply, "closing AMQP channel");
        metrics::counter!(m::CHANNEL_ERRORS, "code" => reply.code.to_string()).increment(1);
        // Earlier publishes on this channel are confirmed before the close, never after it.
        self.flush_publishes().await?;
        self.release_channel(channel).await;
        if let Some(state) = self.channels.get_mut(&channel) {
            state.state = ChannelState::Closing;
            state.pending = None;
        }
        let close = Method::ChannelClose {
            reply_code: reply.code,
            reply_text: reply.text,
            class_id: reply.method.0,
            method_id: reply.method.1,
        };
        self.send_method(channel, &close).await
    }

    /// Stops a channel's consumers and requeues its unacked deliveries.
    async fn release_channel(&mut self, channel: u16) {
        self.cancel_reply_to(channel, None);
        let Some(state) = self.channels.get_mut(&channel) else {
            return;
        };
        let consumers: Vec<_> = state.consumers.drain().collect();
        let deliveries = state.deliveries.clone();
        for (_, consumer) in &consumers {
            consumer.cancel.cancel();
        }
        let unacked: Vec<_> = {
            let mut guard = deliveries.lock().await;
            guard.closed = true;
            guard
                .unacked
                .take_all()
                .into_iter()
                .map(|(_, one)| one)
                .collect()
        };
        for (_, consumer) in consumers {
            let _ = consumer.task.await;
            self.consumer_gone(&consumer.queue, consumer.id).await;
        }
        for (queue, ids) in by_queue(&unacked) {
            match self.shared.engine.queues.requeue(queue, &ids).await {
                Ok(()) => crate::expiry::arm_after_requeue(&self.shared, queue),
                // Deleted meanwhile: its messages went with it, as in RabbitMQ.
                Err(tributary_api::EngineError::UnknownQueue(_)) => {}
                Err(error) => tracing::warn!(queue, %error, "requeue on channel close failed"),
            }
        }
    }

    async fn drop_channel(&mut self, channel: u16) {
        self.release_channel(channel).await;
        if self.channels.remove(&channel).is_some() {
            metrics::gauge!(m::CHANNELS).decrement(1.0);
            metrics::counter!(m::CHANNELS_CLOSED).increment(1);
        }
    }

    /// Releases everything the connection holds: channels, then its exclusive queues.
    pub async fn cleanup(&mut self) {
        if let Err(error) = self.flush_publishes().await {
            tracing::debug!(connection = self.id, %error, "confirms after the peer left were not sent");
        }
        let channels: Vec<u16> = self.channels.keys().copied().collect();
        for channel in channels {
            self.drop_channel(channel).await;
        }
        for queue in self.shared.topology.exclusive_queues(self.id) {
            if let Err(error) = self.shared.topology.delete_queue(&queue).await {
                tracing::warn!(queue, %error, "deleting an exclusive queue failed");
            }
        }
    }
}

/// A readable method name for metric labels.
pub fn method_name(id: (u16, u16)) -> &'static str {
    match id {
        (20, 10) => "channel.open",
        (20, 40) => "channel.close",
        (40, 10) => "exchange.declare",
        (40, 20) => "exchange.delete",
        (50, 10) => "queue.declare",
        (50, 20) => "queue.bind",
        (50, 30) => "queue.purge",
        (50, 40) => "queue.delete",
        (50, 50) => "queue.unbind",
        (60, 10) => "basic.qos",
        (60, 20) => "basic.consume",
        (60, 30) => "basic.cancel",
        (60, 40) => "basic.publish",
        (60, 70) => "basic.get",
        (60, 80) => "basic.ack",
        (60, 90) => "basic.reject",
        (60, 110) => "basic.recover",
        (60, 120) => "basic.nack",
        (85, 10) => "confirm.select",
        (90, _) => "tx",
        _ => "other",
    }
}
