//! RabbitMQ's per-queue `message_stats` from the broker's counters: counts and rates move
//! while a lapin publisher and consumer run.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use serde_json::Value;

use crate::broker::TestBroker;
use crate::lapin_support::{confirm_channel, connect, declare, get, publish};
use crate::{call, guest};

async fn stats(admin: &tributary::admin_client::AdminClient) -> Value {
    let answer = call(admin, "GET", &["queues", "/", "rated"], None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["message_stats"].clone()
}

fn count(stats: &Value, what: &str) -> u64 {
    stats[what]
        .as_u64()
        .unwrap_or_else(|| panic!("no {what}: {stats}"))
}

fn rate(stats: &Value, what: &str) -> f64 {
    stats[format!("{what}_details")]["rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {what} rate: {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stats_count_and_rate_while_a_publisher_runs() {
    let mut broker = TestBroker::start();
    let admin = guest(&mut broker);
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "rated", false).await;
    let first = stats(&admin).await;
    assert_eq!(count(&first, "publish"), 0, "{first}");

    // A publisher runs for at most 4 s (bounded), confirming each message.
    let publisher = {
        let channel = confirm_channel(&connection).await;
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(4);
            let mut sent = 0u64;
            while tokio::time::Instant::now() < until && sent < 20_000 {
                publish(&channel, "", "rated", b"tick", BasicProperties::default()).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats(&admin).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = stats(&admin).await;
    assert!(
        count(&after, "publish") > count(&before, "publish"),
        "{before} then {after}"
    );
    assert!(rate(&after, "publish") > 0.0, "{after}");
    let sent = publisher.await.expect("publisher");
    let published = stats(&admin).await;
    assert_eq!(count(&published, "publish"), sent, "{published}");

    // A transaction's publishes count when committed, not when rolled back.
    let tx = connection.create_channel().await.expect("channel");
    tx.tx_select().await.expect("tx.select");
    let plain = BasicProperties::default();
    tx.basic_publish(
        "".into(),
        "rated".into(),
        Default::default(),
        b"gone",
        plain.clone(),
    )
    .await
    .expect("publish");
    tx.tx_rollback().await.expect("tx.rollback");
    tx.basic_publish(
        "".into(),
        "rated".into(),
        Default::default(),
        b"kept",
        plain,
    )
    .await
    .expect("publish");
    tx.tx_commit().await.expect("tx.commit");
    let committed = stats(&admin).await;
    assert_eq!(count(&committed, "publish"), sent + 1, "{committed}");

    // Deliveries, acks and a redelivery are counted too.
    for _ in 0..3 {
        let message = get(&channel, "rated").await.expect("a message");
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
    let message = get(&channel, "rated").await.expect("a message");
    message
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .expect("nack");
    let again = get(&channel, "rated").await.expect("the requeued message");
    assert!(again.delivery.redelivered);
    // Acks are applied in batches: wait for them, within a bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let settled = stats(&admin).await;
        if count(&settled, "ack") >= 3 || tokio::time::Instant::now() > deadline {
            break settled;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count(&settled, "deliver_get"), 5, "{settled}");
    assert_eq!(count(&settled, "ack"), 3, "{settled}");
    assert_eq!(count(&settled, "redeliver"), 1, "{settled}");
}
