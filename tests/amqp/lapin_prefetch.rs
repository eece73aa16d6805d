//! Channel-wide prefetch through lapin against the real binary: `basic.qos global=true` caps
//! the unacked deliveries of all the channel's consumers together while the per-consumer limit
//! (`global=false`) still applies to each, as in RabbitMQ; quorum queues refuse a consumer on
//! a channel with a global limit.

use crate::broker;
use crate::lapin_support;

use std::time::Duration;

use broker::TestBroker;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Consumer};
use lapin_support::{args, confirm_channel, connect, declare, publish, text};

/// Everything the consumer receives until it has been quiet for `quiet`.
async fn received_until_quiet(consumer: &mut Consumer, quiet: Duration) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(quiet, consumer.next()).await {
        out.push(delivery.expect("delivery"));
    }
    out
}

async fn consume(channel: &lapin::Channel, queue: &str, tag: &str) -> Consumer {
    channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume")
}

async fn qos(channel: &lapin::Channel, count: u16, global: bool) {
    channel
        .basic_qos(count, BasicQosOptions { global })
        .await
        .expect("basic.qos");
}

/// What two consumers received until both were quiet: (a's count, b's count, highest tag).
async fn both_received(a: &mut Consumer, b: &mut Consumer) -> (usize, usize, u64) {
    let quiet = Duration::from_millis(600);
    let (got_a, got_b) = tokio::join!(
        received_until_quiet(a, quiet),
        received_until_quiet(b, quiet)
    );
    let highest = got_a
        .iter()
        .chain(&got_b)
        .map(|d| d.delivery_tag)
        .max()
        .unwrap_or(0);
    (got_a.len(), got_b.len(), highest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_qos_caps_the_channel_and_the_per_consumer_limit_still_applies() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let setup = confirm_channel(&connection).await;
    for queue in ["ga", "gb"] {
        declare(&setup, queue, false).await;
        for index in 0..10u8 {
            publish(&setup, "", queue, &[index], BasicProperties::default()).await;
        }
    }
    let channel = connection.create_channel().await.expect("channel");
    qos(&channel, 2, false).await;
    qos(&channel, 3, true).await;
    let mut a = consume(&channel, "ga", "a").await;
    let mut b = consume(&channel, "gb", "b").await;

    let (got_a, got_b, highest) = both_received(&mut a, &mut b).await;
    assert_eq!(
        got_a + got_b,
        3,
        "the channel limit of 3 holds across both consumers"
    );
    assert!(
        got_a <= 2 && got_b <= 2,
        "each consumer within 2: {got_a}+{got_b}"
    );

    // Settling all three frees the channel for three more.
    channel
        .basic_ack(highest, BasicAckOptions { multiple: true })
        .await
        .expect("multi-ack");
    let (more_a, more_b, _) = both_received(&mut a, &mut b).await;
    assert_eq!(more_a + more_b, 3, "three more after the acks");
    assert!(more_a <= 2 && more_b <= 2, "{more_a}+{more_b}");

    // Lifting the channel limit leaves the per-consumer one: two unacked each.
    qos(&channel, 0, true).await;
    let (extra_a, extra_b, _) = both_received(&mut a, &mut b).await;
    assert_eq!(
        (more_a + extra_a, more_b + extra_b),
        (2, 2),
        "per-consumer prefetch alone once global=0"
    );

    // A channel limit set on a running channel applies at once, and alone when the running
    // consumers' own limit is lifted (as Tributary's running consumers follow basic.qos).
    qos(&channel, 5, true).await;
    qos(&channel, 0, false).await;
    let (last_a, last_b, _) = both_received(&mut a, &mut b).await;
    assert_eq!(last_a + last_b, 1, "4 unacked, channel limit 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_refuse_consumers_on_a_channel_with_global_qos() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let setup = connection.create_channel().await.expect("channel");
    setup
        .queue_declare(
            "qq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args(&[("x-queue-type", text("quorum"))]),
        )
        .await
        .expect("declare quorum queue");
    // A per-consumer limit is fine.
    let per_consumer = connection.create_channel().await.expect("channel");
    qos(&per_consumer, 4, false).await;
    consume(&per_consumer, "qq", "fine").await;

    let global = connection.create_channel().await.expect("channel");
    qos(&global, 4, true).await;
    let refused = global
        .basic_consume(
            "qq".into(),
            "refused".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("a quorum consumer under a global limit");
    let text = refused.to_string();
    assert!(
        text.contains("NOT_IMPLEMENTED - queue 'qq' in vhost '/' does not support global qos"),
        "{text}"
    );
}
