//! queue.declare, bind, unbind, purge and delete.

use crate::codec::methods::{Binding, Method, QueueDeclare};
use crate::error::{AmqpError, NOT_FOUND, PRECONDITION_FAILED};
use crate::session::Session;

impl Session {
    pub(crate) async fn queue_declare(
        &mut self,
        channel: u16,
        decl: QueueDeclare,
    ) -> Result<(), AmqpError> {
        let topology = &self.shared.topology;
        topology.refresh().await?;
        let (queue, consumers) = topology.declare_queue(&decl, self.id).await?;
        let info = topology.check_queue(&queue, self.id)?;
        let ready = topology.message_count(&queue, &info).await?;
        if decl.nowait {
            return Ok(());
        }
        let reply = Method::QueueDeclareOk {
            queue,
            message_count: ready.min(u64::from(u32::MAX)) as u32,
            consumer_count: consumers,
        };
        self.send_method(channel, &reply).await
    }

    pub(crate) async fn queue_bind(
        &mut self,
        channel: u16,
        binding: Binding,
        bind: bool,
    ) -> Result<(), AmqpError> {
        let topology = &self.shared.topology;
        topology.refresh().await?;
        let Binding {
            destination,
            source,
            routing_key,
            nowait,
            arguments,
        } = binding;
        if bind {
            topology
                .bind(&destination, &source, &routing_key, &arguments, self.id)
                .await?;
            if !topology.topic_bindings(&source).is_empty() {
                crate::feed::ensure(&self.shared, &source);
            }
            if nowait {
                return Ok(());
            }
            self.send_method(channel, &Method::QueueBindOk).await
        } else {
            topology
                .unbind(&destination, &source, &routing_key, &arguments, self.id)
                .await?;
            self.send_method(channel, &Method::QueueUnbindOk).await
        }
    }

    pub(crate) async fn queue_purge(
        &mut self,
        channel: u16,
        queue: &str,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        self.shared.topology.refresh().await?;
        let info = self.shared.topology.check_queue(queue, self.id)?;
        // A stream's messages are a log: nothing is purged, as in RabbitMQ.
        let purged = match info.is_stream() {
            true => 0,
            false => self.shared.engine.queues.purge_queue(queue).await?,
        };
        if nowait {
            return Ok(());
        }
        self.send_method(
            channel,
            &Method::QueuePurgeOk {
                message_count: purged.min(u64::from(u32::MAX)) as u32,
            },
        )
        .await
    }

    pub(crate) async fn queue_delete(
        &mut self,
        channel: u16,
        queue: &str,
        if_unused: bool,
        if_empty: bool,
        nowait: bool,
    ) -> Result<(), AmqpError> {
        self.shared.topology.refresh().await?;
        let info = match self.shared.topology.check_queue(queue, self.id) {
            // Deleting a queue that is not there succeeds with a count of 0, as in RabbitMQ.
            Err(AmqpError::Channel(reply)) if reply.code == NOT_FOUND => {
                if nowait {
                    return Ok(());
                }
                let none = Method::QueueDeleteOk { message_count: 0 };
                return self.send_method(channel, &none).await;
            }
            checked => checked?,
        };
        if if_unused && info.consumers > 0 {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!("queue '{queue}' in vhost '{}' in use", self.vhost),
            ));
        }
        if if_empty && self.shared.topology.message_count(queue, &info).await? > 0 {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!("queue '{queue}' in vhost '{}' not empty", self.vhost),
            ));
        }
        self.shared.topology.check_stream_deletable(queue)?;
        self.cancel_consumers_of(queue).await?;
        let count = self.shared.topology.delete_queue(queue).await?;
        if nowait {
            return Ok(());
        }
        self.send_method(
            channel,
            &Method::QueueDeleteOk {
                message_count: count.min(u64::from(u32::MAX)) as u32,
            },
        )
        .await
    }
}
