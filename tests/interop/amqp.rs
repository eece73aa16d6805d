//! lapin on the AMQP side: reading a topic as a stream queue (`x-queue-type=stream`, consumed
//! from `x-stream-offset=first` with a prefetch and manual acks) with exact counts, and
//! publishing through a topic exchange bound to a stream so routing keys vary per message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

use crate::lapin_support::{args, connect_to, stream_args, text};

const PREFETCH: u16 = 100;

/// What a stream consumer got for one delivery.
#[derive(Clone, Debug)]
pub(crate) struct Delivered {
    pub(crate) body: Vec<u8>,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) properties: BasicProperties,
    /// The `headers` table without the stream's own `x-stream-offset`.
    pub(crate) headers: BTreeMap<String, AMQPValue>,
    pub(crate) stream_offset: Option<i64>,
}

/// Declares `queue` as a durable stream (idempotent for an existing topic).
pub(crate) async fn declare_stream(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            stream_args(),
        )
        .await
        .unwrap_or_else(|err| panic!("declare stream {queue}: {err}"));
}

/// Declares stream `queue`, reads `count` deliveries from its first offset (acking each), then
/// makes sure no further delivery comes within a moment.
pub(crate) async fn read_stream(addr: SocketAddr, queue: &str, count: usize) -> Vec<Delivered> {
    let connection = connect_to(addr).await;
    let channel = connection.create_channel().await.expect("channel");
    declare_stream(&channel, queue).await;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "interop-reader".into(),
            BasicConsumeOptions::default(),
            args(&[("x-stream-offset", text("first"))]),
        )
        .await
        .unwrap_or_else(|err| panic!("consume stream {queue}: {err}"));
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await;
        let Ok(Some(delivery)) = next else {
            panic!(
                "stream {queue}: only {} of {count} deliveries within 10 s of the last",
                got.len()
            );
        };
        let delivery = delivery.expect("delivery");
        got.push(delivered(&delivery));
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(700), consumer.next()).await
    {
        let extra = extra.expect("delivery");
        panic!(
            "stream {queue}: more than {count} deliveries: {:?}",
            delivered(&extra)
        );
    }
    let _ = connection.close(200, "done".into()).await;
    got
}

fn delivered(delivery: &lapin::message::Delivery) -> Delivered {
    let mut headers: BTreeMap<String, AMQPValue> = delivery
        .properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let stream_offset = match headers.remove("x-stream-offset") {
        Some(AMQPValue::LongLongInt(offset)) => Some(offset),
        Some(other) => panic!("x-stream-offset is {other:?}"),
        None => None,
    };
    Delivered {
        body: delivery.data.clone(),
        exchange: delivery.exchange.to_string(),
        routing_key: delivery.routing_key.to_string(),
        properties: delivery.properties.clone(),
        headers,
        stream_offset,
    }
}

/// A confirm channel on a fresh connection, with stream `queue` declared and bound to topic
/// exchange `exchange` by `#` (every routing key, the empty one included).
pub(crate) async fn stream_publisher(
    addr: SocketAddr,
    exchange: &str,
    queue: &str,
) -> (Connection, Channel) {
    let connection = connect_to(addr).await;
    let channel = crate::lapin_support::confirm_channel(&connection).await;
    declare_stream(&channel, queue).await;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare exchange");
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    (connection, channel)
}

/// Publishes every `(routing key, body, properties)` in order and waits for all confirms.
pub(crate) async fn publish_all(
    channel: &Channel,
    exchange: &str,
    messages: &[(String, Vec<u8>, BasicProperties)],
) {
    let mut confirms = Vec::with_capacity(messages.len());
    for (routing_key, body, properties) in messages {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                properties.clone(),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for (n, confirm) in confirms.into_iter().enumerate() {
        let confirmation = confirm.await.expect("confirm");
        assert!(
            confirmation.is_ack(),
            "message {n} not confirmed: {confirmation:?}"
        );
    }
}
