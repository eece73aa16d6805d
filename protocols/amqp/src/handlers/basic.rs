//! basic.get, basic.ack / nack / reject and basic.recover.

use bytes::BytesMut;

use crate::channel::{Unacked, by_queue, return_credit};
use crate::codec::{self, methods::Method};
use crate::error::{AmqpError, NOT_IMPLEMENTED, PRECONDITION_FAILED};
use crate::message::from_record;
use crate::metrics as m;
use crate::session::Session;

impl Session {
    pub(crate) async fn basic_get(
        &mut self,
        channel: u16,
        queue: &str,
        no_ack: bool,
    ) -> Result<(), AmqpError> {
        self.shared.topology.check_queue(queue, self.id)?;
        let Some(state) = self.channels.get(&channel) else {
            return Ok(());
        };
        let deliveries = state.deliveries.clone();
        let queues = self.shared.engine.queues.clone();
        let taken = queues.take(queue, 1).await?;
        let Some(delivery) = taken.into_iter().next() else {
            return self.send_method(channel, &Method::BasicGetEmpty).await;
        };
        if no_ack {
            queues.ack(queue, &[delivery.id]).await?;
        }
        let tag = {
            let mut guard = deliveries.lock().await;
            let tag = guard.tag();
            if !no_ack {
                guard.unacked.insert(
                    tag,
                    Unacked {
                        queue: queue.to_owned(),
                        id: delivery.id,
                        credit: None,
                    },
                );
            }
            tag
        };
        let remaining = queues.depth(queue).map(|d| d.ready).unwrap_or(0);
        let message = from_record(&delivery.record);
        metrics::counter!(m::MESSAGES_DELIVERED).increment(1);
        if delivery.redelivered {
            metrics::counter!(m::MESSAGES_REDELIVERED).increment(1);
        }
        let method = Method::BasicGetOk {
            delivery_tag: tag,
            redelivered: delivery.redelivered,
            exchange: message.exchange,
            routing_key: message.routing_key,
            message_count: remaining.min(u64::from(u32::MAX)) as u32,
        };
        let mut out = BytesMut::new();
        codec::encode_message(
            &mut out,
            channel,
            &method,
            &message.raw_properties,
            &message.body,
            self.frame_max,
        );
        self.send(out).await
    }

    /// ack (`requeue` = None), nack and reject (`Some(requeue)`).
    pub(crate) async fn basic_settle(
        &mut self,
        channel: u16,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get(&channel) else {
            return Ok(());
        };
        let settled = state.deliveries.lock().await.settle(tag, multiple);
        let Some(settled) = settled else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!("unknown delivery tag {tag}"),
            ));
        };
        let queues = &self.shared.engine.queues;
        for (queue, ids) in by_queue(&settled) {
            match requeue {
                Some(true) => queues.requeue(queue, &ids).await?,
                // Rejected without requeue: dropped (dead-lettering is not implemented yet).
                None | Some(false) => queues.ack(queue, &ids).await?,
            }
        }
        if requeue.is_none() {
            metrics::counter!(m::MESSAGES_ACKNOWLEDGED).increment(settled.len() as u64);
        }
        return_credit(&settled);
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
        self.basic_settle(channel, 0, true, Some(true)).await?;
        self.send_method(channel, &Method::BasicRecoverOk).await
    }
}
