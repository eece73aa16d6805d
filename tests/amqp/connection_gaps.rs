//! Connection- and channel-level behaviours real clients rely on, through lapin against the real
//! binary: `connection.update-secret` is answered `update-secret-ok` and the connection carries
//! on (RabbitMQ's internal user store behaves so), and closing a channel that still holds an
//! unacked delivery of a queue deleted since gets `channel.close-ok`, the connection staying up.

use crate::broker;
use crate::lapin_support;

use std::time::Duration;

use broker::TestBroker;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin_support::{confirm_channel, connect, declare, next, publish};

#[tokio::test]
async fn update_secret_is_acknowledged_and_the_connection_carries_on() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    connection
        .update_secret("guest".into(), "token refreshed".into())
        .await
        .expect("connection.update-secret answered update-secret-ok");
    let channel = confirm_channel(&connection).await;
    declare(&channel, "after-update-secret", false).await;
    publish(
        &channel,
        "",
        "after-update-secret",
        b"still here",
        BasicProperties::default(),
    )
    .await;
    let got = channel
        .basic_get(
            "after-update-secret".into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
        .expect("a message");
    assert_eq!(got.delivery.data, b"still here");
    assert!(connection.status().connected());
}

#[tokio::test]
async fn closing_a_channel_with_an_unacked_delivery_of_a_deleted_queue_is_clean() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let consuming = confirm_channel(&connection).await;
    declare(&consuming, "deleted-under-delivery", false).await;
    publish(
        &consuming,
        "",
        "deleted-under-delivery",
        b"held",
        BasicProperties::default(),
    )
    .await;
    let mut consumer = consuming
        .basic_consume(
            "deleted-under-delivery".into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.data, b"held");

    let other = connection.create_channel().await.expect("channel");
    other
        .queue_delete(
            "deleted-under-delivery".into(),
            QueueDeleteOptions::default(),
        )
        .await
        .expect("queue.delete");
    // Let the broker's cancel of the consumer reach the client before the close.
    tokio::time::sleep(Duration::from_millis(200)).await;

    consuming
        .close(200, "done".into())
        .await
        .expect("channel.close answered close-ok");
    assert!(connection.status().connected(), "the connection stays open");
    let after = connection.create_channel().await.expect("a new channel");
    declare(&after, "after-the-close", false).await;
    other
        .queue_delete("after-the-close".into(), QueueDeleteOptions::default())
        .await
        .expect("the other channel still works");
}

#[tokio::test]
async fn closing_a_channel_with_an_unacked_basic_get_of_a_deleted_queue_is_clean() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let getting = confirm_channel(&connection).await;
    declare(&getting, "deleted-under-get", false).await;
    publish(
        &getting,
        "",
        "deleted-under-get",
        b"held",
        BasicProperties::default(),
    )
    .await;
    let got = getting
        .basic_get(
            "deleted-under-get".into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .expect("basic.get")
        .expect("a message");
    assert_eq!(got.delivery.data, b"held");
    getting
        .queue_delete("deleted-under-get".into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete on the channel holding the delivery");
    getting
        .close(200, "done".into())
        .await
        .expect("channel.close answered close-ok");
    assert!(connection.status().connected(), "the connection stays open");
    let after = connection.create_channel().await.expect("a new channel");
    declare(&after, "after-the-get-close", false).await;
}

#[tokio::test]
async fn settling_a_delivery_of_a_deleted_queue_is_clean() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "deleted-then-settled", false).await;
    for body in [b"one", b"two"] {
        publish(
            &channel,
            "",
            "deleted-then-settled",
            body,
            BasicProperties::default(),
        )
        .await;
    }
    let mut tags = Vec::new();
    for _ in 0..2 {
        let got = channel
            .basic_get(
                "deleted-then-settled".into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .expect("basic.get")
            .expect("a message");
        tags.push(got.delivery.delivery_tag);
    }
    channel
        .queue_delete("deleted-then-settled".into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    channel
        .basic_ack(tags[0], BasicAckOptions::default())
        .await
        .expect("basic.ack");
    channel
        .basic_nack(
            tags[1],
            BasicNackOptions {
                requeue: true,
                ..Default::default()
            },
        )
        .await
        .expect("basic.nack");
    // A round trip: an error caused by the ack or the nack would have closed the channel.
    declare(&channel, "after-the-settles", false).await;
    channel
        .close(200, "done".into())
        .await
        .expect("channel.close answered close-ok");
    assert!(connection.status().connected(), "the connection stays open");
}
