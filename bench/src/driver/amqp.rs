//! AMQP 0-9-1 through lapin. Per topic a direct exchange; partition `n` is routing key `n`;
//! per subscription one durable queue per partition, `<topic>.<subscription>.<n>`. See the
//! mapping in [`crate::driver`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use super::{Consumer, Driver, OnMessage, Producer, Protocol, partition_of};
use crate::Error;

/// Unacknowledged deliveries per consumer channel.
const PREFETCH: u16 = 1000;

fn err(e: impl std::fmt::Display) -> Error {
    Error::driver("amqp", e)
}

/// The queue of `subscription` that holds partition `partition` of `topic`.
pub fn queue_name(topic: &str, subscription: &str, partition: u32) -> String {
    format!("{topic}.{subscription}.{partition}")
}

#[derive(Debug)]
pub struct AmqpDriver {
    connection: Connection,
}

impl AmqpDriver {
    pub async fn connect(uri: &str) -> Result<Self, Error> {
        let connection = Connection::connect(uri, ConnectionProperties::default())
            .await
            .map_err(|e| err(format!("connect to {uri}: {e}")))?;
        Ok(Self { connection })
    }

    async fn channel(&self) -> Result<Channel, Error> {
        self.connection.create_channel().await.map_err(err)
    }
}

#[async_trait]
impl Driver for AmqpDriver {
    fn protocol(&self) -> Protocol {
        Protocol::Amqp
    }

    async fn create_topic(&self, topic: &str, _: u32) -> Result<(), Error> {
        let channel = self.channel().await?;
        let options = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                topic.into(),
                ExchangeKind::Direct,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    async fn create_subscription(
        &self,
        topic: &str,
        partitions: u32,
        subscription: &str,
    ) -> Result<(), Error> {
        let channel = self.channel().await?;
        for n in 0..partitions {
            let queue = queue_name(topic, subscription, n);
            let options = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(queue.as_str().into(), options, FieldTable::default())
                .await
                .map_err(err)?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topic.into(),
                    n.to_string().as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }

    async fn producer(&self, topic: &str, partitions: u32) -> Result<Arc<dyn Producer>, Error> {
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        Ok(Arc::new(AmqpProducer {
            channel,
            exchange: topic.to_owned(),
            partitions: partitions.max(1),
            next: AtomicU32::new(0),
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        partitions: u32,
        subscription: &str,
        index: u32,
        consumers: u32,
        on_message: OnMessage,
    ) -> Result<Box<dyn Consumer>, Error> {
        let channel = self.channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let consumers = consumers.max(1);
        // Consumer i takes the partitions n with n % consumers == i; with more consumers than
        // partitions, consumer i shares partition i % partitions with others.
        let mine: Vec<u32> = if consumers <= partitions {
            (0..partitions).filter(|n| n % consumers == index).collect()
        } else {
            vec![index % partitions.max(1)]
        };
        let mut tasks = Vec::new();
        for n in mine {
            let queue = queue_name(topic, subscription, n);
            let mut stream = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("bench-{index}-{n}").as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(err)?;
            let on_message = Arc::clone(&on_message);
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(delivery)) = stream.next().await {
                    on_message(&delivery.data);
                    // One ack per delivery, not awaited here: lapin resolves an ack once its
                    // I/O loop has written it, so awaiting each before taking the next
                    // delivery measured that loop's round trip (about 8k msg/s beside a
                    // publisher on the same connection), not the broker. A failed ack means
                    // the channel is gone, and the stream ends with it.
                    tokio::spawn(async move {
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                    });
                }
            }));
        }
        Ok(Box::new(AmqpConsumer { channel, tasks }))
    }

    async fn close(&self) {
        let _ = self.connection.close(200, "bench done".into()).await;
    }
}

struct AmqpProducer {
    channel: Channel,
    exchange: String,
    partitions: u32,
    next: AtomicU32,
}

#[async_trait]
impl Producer for AmqpProducer {
    async fn send(&self, key: Option<String>, body: Vec<u8>) -> Result<(), Error> {
        let partition = match &key {
            Some(key) => partition_of(key, self.partitions),
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.partitions,
        };
        let properties = BasicProperties::default().with_delivery_mode(2);
        let confirmation = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                partition.to_string().as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(err)?
            .await
            .map_err(err)?;
        match confirmation {
            Confirmation::Nack(_) => Err(err("the broker refused the message (basic.nack)")),
            _ => Ok(()),
        }
    }

    async fn close(&self) {
        let _ = self.channel.close(200, "done".into()).await;
    }
}

struct AmqpConsumer {
    channel: Channel,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn close(self: Box<Self>) {
        let _ = self.channel.close(200, "done".into()).await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}
