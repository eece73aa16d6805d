//! Direct reply-to (`amq.rabbitmq.reply-to`), RabbitMQ's queue-less RPC replies.
//!
//! A channel consumes the pseudo-queue `amq.rabbitmq.reply-to` in no-ack mode (acks are refused
//! with 406 as RabbitMQ does); the channel gets a token registered broker-wide. A request
//! published on that channel with `reply_to = amq.rabbitmq.reply-to` has the property rewritten
//! to `amq.rabbitmq.reply-to.<token>`; a reply published to the default exchange with that
//! routing key is delivered straight to the consumer, never stored. A reply to a token that is
//! gone is dropped (returned if mandatory).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tributary_api::Outbound;

use crate::channel::SharedDeliveries;
use crate::codec::content::BasicProperties;
use crate::codec::{self, methods::Method};
use crate::error::{AmqpError, PRECONDITION_FAILED};
use crate::session::Session;
use crate::topology::generated_name;

/// The pseudo-queue name.
pub(crate) const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Prefix of the routing keys replies are published with.
pub(crate) const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Where replies for one token go.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTarget {
    pub(crate) out: Outbound<Bytes>,
    pub(crate) channel: u16,
    pub(crate) consumer_tag: String,
    pub(crate) deliveries: SharedDeliveries,
    pub(crate) frame_max: u32,
}

impl Session {
    /// basic.consume on `amq.rabbitmq.reply-to`.
    pub(crate) async fn consume_reply_to(
        &mut self,
        channel: u16,
        tag: String,
        no_ack: bool,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        if !no_ack {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "reply consumer cannot acknowledge",
            ));
        }
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        if state.reply_to.is_some() {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "reply consumer already set",
            ));
        }
        let token = generated_name("");
        let target = ReplyTarget {
            out: self.out.clone(),
            channel,
            consumer_tag: tag.clone(),
            deliveries: state.deliveries.clone(),
            frame_max: self.frame_max,
        };
        state.reply_to = Some((tag.clone(), token.clone()));
        self.shared.reply_targets.lock().insert(token, target);
        if nowait {
            return Ok(());
        }
        self.send_method(channel, &Method::BasicConsumeOk { consumer_tag: tag })
            .await
    }

    /// Stops the channel's reply consumer if `tag` names it (or any tag when None).
    pub(crate) fn cancel_reply_to(&mut self, channel: u16, tag: Option<&str>) -> bool {
        let Some(state) = self.channels.get_mut(&channel) else {
            return false;
        };
        match &state.reply_to {
            Some((own, token)) if tag.is_none_or(|t| t == own) => {
                self.shared.reply_targets.lock().remove(token);
                state.reply_to = None;
                true
            }
            _ => false,
        }
    }

    /// Rewrites `reply_to = amq.rabbitmq.reply-to` on a request; `None` when nothing changes.
    pub(crate) fn rewrite_reply_to(
        &self,
        channel: u16,
        properties: &BasicProperties,
    ) -> Result<Option<(Bytes, BasicProperties)>, AmqpError> {
        if properties.reply_to.as_deref() != Some(REPLY_TO) {
            return Ok(None);
        }
        let Some((_, token)) = self
            .channels
            .get(&channel)
            .and_then(|s| s.reply_to.as_ref())
        else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "fast reply consumer does not exist",
            ));
        };
        let mut rewritten = properties.clone();
        rewritten.reply_to = Some(format!("{REPLY_TO_PREFIX}{token}"));
        Ok(Some((rewritten.encode(), rewritten)))
    }
}

/// Delivers a reply straight to its consumer; false when the token is unknown.
pub(crate) async fn deliver_reply(
    targets: &parking_lot::Mutex<std::collections::HashMap<String, ReplyTarget>>,
    routing_key: &str,
    raw_properties: &[u8],
    body: &[u8],
) -> bool {
    let Some(token) = routing_key.strip_prefix(REPLY_TO_PREFIX) else {
        return false;
    };
    let Some(target) = targets.lock().get(token).cloned() else {
        return false;
    };
    let mut deliveries = target.deliveries.lock().await;
    if deliveries.closed {
        return false;
    }
    let method = Method::BasicDeliver {
        consumer_tag: target.consumer_tag.clone(),
        delivery_tag: deliveries.tag(),
        redelivered: false,
        exchange: String::new(),
        routing_key: routing_key.to_owned(),
    };
    let mut out = BytesMut::new();
    codec::encode_message(
        &mut out,
        target.channel,
        &method,
        raw_properties,
        body,
        target.frame_max,
    );
    let len = out.len();
    target.out.send(out.freeze(), len).await.is_ok()
}

/// The broker-wide token table.
pub(crate) type ReplyTargets =
    Arc<parking_lot::Mutex<std::collections::HashMap<String, ReplyTarget>>>;
