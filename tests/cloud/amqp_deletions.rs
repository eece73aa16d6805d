//! AMQP deletions followed across brokers (src: `tributary_amqp::topology::follow`): a queue,
//! an exchange and a binding deleted through broker A go from broker B's topology too, without
//! a restart: B's consumer of the queue gets basic.cancel, the exchange is unknown to B (404),
//! and a mandatory publish through B to the unbound routing key comes back unroutable. A queue
//! declared again through B afterwards is a new, working queue.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

use crate::queues::{channel, cluster, connect, declare};

const DOOMED: &str = "doomed-queue";
const KEPT: &str = "kept-queue";
const EXCHANGE: &str = "doomed-exchange";

/// A mandatory publish through `channel`: whether it was routed to some queue.
async fn routed(channel: &Channel, exchange: &str, key: &str) -> bool {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"probe",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    match confirm {
        Confirmation::Ack(None) => true,
        Confirmation::Ack(Some(returned)) => {
            assert_eq!(returned.reply_code, 312, "NO_ROUTE");
            false
        }
        other => panic!("unexpected confirmation {other:?}"),
    }
}

/// Whether exchange `name` exists as `channel`'s broker sees it (a passive declare; a 404
/// closes the channel, so each probe takes a fresh one).
async fn exchange_exists(connection: &lapin::Connection, name: &str) -> bool {
    let probe = connection.create_channel().await.expect("channel");
    probe
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_exchange_and_binding_deleted_through_one_broker_go_from_the_other() {
    let mut cluster = cluster(2, "").await;
    let on_a = connect(&mut cluster.brokers[0]).await.expect("connect A");
    let on_b = connect(&mut cluster.brokers[1]).await.expect("connect B");
    let a = channel(&on_a).await.expect("channel");
    a.exchange_declare(
        EXCHANGE.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    declare(&a, DOOMED).await.expect("declare");
    declare(&a, KEPT).await.expect("declare");
    for (queue, exchange, key) in [
        (DOOMED, EXCHANGE, "d"),
        (KEPT, EXCHANGE, "k"),
        (KEPT, "amq.direct", "unbound-later"),
    ] {
        a.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
    }
    // B learns all of it (its first use reads the store) and consumes the doomed queue.
    let b = channel(&on_b).await.expect("channel");
    declare(&b, DOOMED).await.expect("declare through B");
    assert!(
        exchange_exists(&on_b, EXCHANGE).await,
        "B knows the exchange"
    );
    assert!(routed(&b, "amq.direct", "unbound-later").await, "bound");
    let consuming = on_b.create_channel().await.expect("channel");
    let mut consumer = consuming
        .basic_consume(
            DOOMED.into(),
            "doomed-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");

    // A deletes; B follows.
    a.queue_unbind(
        KEPT.into(),
        "amq.direct".into(),
        "unbound-later".into(),
        FieldTable::default(),
    )
    .await
    .expect("queue.unbind");
    a.queue_delete(DOOMED.into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    a.exchange_delete(EXCHANGE.into(), Default::default())
        .await
        .expect("exchange.delete");

    let ended = tokio::time::timeout(Duration::from_secs(15), consumer.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "B's consumer of the deleted queue was cancelled by the broker: {ended:?}"
    );
    let mut followed = false;
    for _ in 0..50 {
        if !exchange_exists(&on_b, EXCHANGE).await {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(followed, "the exchange deleted through A is unknown to B");
    // Passive declares and publishes through B refresh nothing by themselves before this
    // point: the follower applied the deletions.
    assert!(
        !routed(&b, "amq.direct", "unbound-later").await,
        "the binding deleted through A no longer routes through B"
    );
    // Declared again through B: a new queue, usable through both brokers.
    assert_eq!(declare(&b, DOOMED).await.expect("declare again"), 0);
    b.queue_bind(
        DOOMED.into(),
        "amq.direct".into(),
        "again".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind again");
    assert!(routed(&b, "amq.direct", "again").await, "routes again");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        declare(&a, DOOMED).await.expect("declare through A"),
        1,
        "A sees the new queue and its message"
    );
}
