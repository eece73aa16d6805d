//! Messages up to `amqp.max_message_bytes` (RabbitMQ 4's `max_message_size`, 16 MiB by default)
//! through a durable classic queue with lapin: a 15 MiB persistent message is confirmed,
//! delivered byte for byte and acked, while the broker holds less than three times the message
//! in memory at once (peak resident growth); a body over the limit closes the channel with 406;
//! a stream queue takes the same 15 MiB message.

use crate::broker;
use crate::lapin_support;

use broker::TestBroker;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use lapin_support::{confirm_channel, connect, declare, next};

const MESSAGE_BYTES: usize = 15 << 20;

/// A body no codec or page-sharing could shrink: an xorshift sequence.
fn body(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A line of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// Publishes `body` persistent to `queue` through the default exchange; the broker's answer.
async fn publish_persistent(channel: &lapin::Channel, queue: &str, body: &[u8]) -> Confirmation {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm")
}

/// The first delivery of a consumer of `queue` started with `arguments`.
async fn first_delivery(
    channel: &lapin::Channel,
    queue: &str,
    arguments: FieldTable,
) -> lapin::message::Delivery {
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .expect("consume");
    next(&mut consumer).await
}

#[tokio::test]
async fn a_15_mib_message_goes_through_a_durable_queue_within_3x_its_size() {
    // The broker's own allocator settings: freed buffers may stay resident, as for a user.
    let mut broker = TestBroker::start();
    let pid = broker.pid();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "large", true).await;
    let sent = body(MESSAGE_BYTES);
    // The peak resident size counts from here (writing 5 to clear_refs resets VmHWM).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    let before = status_bytes(pid, "VmRSS:");
    let confirmation = publish_persistent(&channel, "large", &sent).await;
    assert!(
        matches!(confirmation, Confirmation::Ack(_)),
        "the 15 MiB publish is confirmed: {confirmation:?}"
    );
    let consumer_channel = connection.create_channel().await.expect("channel");
    let delivery = first_delivery(&consumer_channel, "large", FieldTable::default()).await;
    assert_eq!(delivery.data.len(), sent.len(), "delivered length");
    assert!(
        delivery.data == sent,
        "delivered bytes differ from the sent ones"
    );
    delivery.ack(BasicAckOptions::default()).await.expect("ack");
    let peak = status_bytes(pid, "VmHWM:");
    let growth = peak.saturating_sub(before);
    println!(
        "RSS before {} MiB, peak {} MiB: growth {:.2}x of the {} MiB message",
        before >> 20,
        peak >> 20,
        growth as f64 / MESSAGE_BYTES as f64,
        MESSAGE_BYTES >> 20
    );
    assert!(
        growth < 3 * MESSAGE_BYTES as u64,
        "the broker's RSS grew by {} MiB for one {} MiB message (limit 3x)",
        growth >> 20,
        MESSAGE_BYTES >> 20
    );
}

#[tokio::test]
async fn a_body_over_the_limit_closes_the_channel_with_406() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "too-large", false).await;
    let published = channel
        .basic_publish(
            "".into(),
            "too-large".into(),
            BasicPublishOptions::default(),
            &body((16 << 20) + 1),
            BasicProperties::default(),
        )
        .await;
    let outcome = match published {
        Ok(confirm) => confirm.await.map(|_| ()),
        Err(error) => Err(error),
    };
    let error = outcome.expect_err("a body over 16 MiB is refused");
    assert!(
        error.to_string().contains("PRECONDITION") || error.to_string().contains("406"),
        "{error}"
    );
    // The connection stays usable: a new channel works.
    let again = connection.create_channel().await.expect("a new channel");
    again
        .queue_declare(
            "too-large".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the connection is still open");
}

#[tokio::test]
async fn a_15_mib_message_goes_through_a_stream_queue() {
    use lapin::types::{AMQPValue, LongString};

    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    let mut stream = FieldTable::default();
    stream.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("stream")),
    );
    channel
        .queue_declare(
            "large-stream".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            stream,
        )
        .await
        .expect("declare the stream");
    let sent = body(MESSAGE_BYTES);
    let confirmation = publish_persistent(&channel, "large-stream", &sent).await;
    // A stream is a topic: it takes what a classic queue takes, not a Kafka topic's 1 MiB.
    assert!(
        matches!(confirmation, Confirmation::Ack(_)),
        "the 15 MiB publish to a stream is confirmed: {confirmation:?}"
    );
    let reader = connection.create_channel().await.expect("channel");
    reader
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut from_first = FieldTable::default();
    from_first.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString(LongString::from("first")),
    );
    let delivery = first_delivery(&reader, "large-stream", from_first).await;
    assert_eq!(delivery.data.len(), sent.len(), "delivered length");
    assert!(
        delivery.data == sent,
        "delivered bytes differ from the sent ones"
    );
    delivery.ack(BasicAckOptions::default()).await.expect("ack");
}
