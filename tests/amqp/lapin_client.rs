//! The AMQP frontend end to end: the real `tributary` binary driven by lapin, a real RabbitMQ
//! client (declare, bind, publish with confirms, consume, ack / nack / reject, basic.get,
//! routing, prefetch, channel errors, durability across SIGKILL).

use crate::broker;
use crate::lapin_support;

use std::time::Duration;

use broker::TestBroker;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, ExchangeKind};
use lapin_support::{confirm_channel, connect, declare, get, next, publish, sample, scrape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_bind_publish_consume_ack_with_properties() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    channel
        .exchange_declare(
            "orders".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
    declare(&channel, "new-orders", false).await;
    channel
        .queue_bind(
            "new-orders".into(),
            "orders".into(),
            "new".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");

    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_correlation_id("c-1".into())
        .with_headers(headers);
    let confirm = publish(&channel, "orders", "new", b"{\"id\":1}", properties.clone()).await;
    assert_eq!(confirm, Confirmation::Ack(None));

    let mut consumer = channel
        .basic_consume(
            "new-orders".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.data, b"{\"id\":1}");
    assert_eq!(delivery.exchange.as_str(), "orders");
    assert_eq!(delivery.routing_key.as_str(), "new");
    assert!(!delivery.redelivered);
    assert_eq!(
        delivery.properties, properties,
        "properties come back exactly as published"
    );
    delivery.ack(BasicAckOptions::default()).await.expect("ack");

    channel
        .basic_cancel("c1".into(), BasicCancelOptions::default())
        .await
        .expect("basic.cancel");
    assert!(
        get(&channel, "new-orders").await.is_none(),
        "acked message is gone"
    );
    let declared = channel
        .queue_declare(
            "new-orders".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(declared.message_count(), 0);

    // Mandatory and unroutable: basic.return (312 NO_ROUTE) before the ack.
    let confirm = channel
        .basic_publish(
            "orders".into(),
            "nobody".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let Confirmation::Ack(Some(returned)) = confirm else {
        panic!("expected an ack carrying the returned message, got {confirm:?}");
    };
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"lost");
    connection.close(200, "bye".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_requeue_redelivers_and_reject_drops() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "work", false).await;
    for body in [b"one", b"two"] {
        assert_eq!(
            publish(&channel, "", "work", body, BasicProperties::default()).await,
            Confirmation::Ack(None)
        );
    }
    let first = get(&channel, "work").await.expect("a message");
    assert_eq!(first.delivery.data, b"one");
    assert!(!first.delivery.redelivered);
    assert_eq!(first.message_count, 1, "one message left ready");
    first
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .expect("nack");

    let mut consumer = channel
        .basic_consume(
            "work".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume with a server-generated tag");
    assert!(consumer.tag().as_str().starts_with("amq.ctag-"));
    let again = next(&mut consumer).await;
    assert_eq!(again.data, b"one", "a requeued message goes first");
    assert!(again.redelivered, "requeued message is flagged redelivered");
    let second = next(&mut consumer).await;
    assert_eq!(second.data, b"two");
    assert!(!second.redelivered);
    again
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    second.ack(BasicAckOptions::default()).await.expect("ack");
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    assert!(
        get(&channel, "work").await.is_none(),
        "rejected without requeue is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_topic_routing() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    channel
        .exchange_declare(
            "logs".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("topic exchange");
    for (queue, pattern) in [("errors", "*.error"), ("app", "app.#"), ("all", "#")] {
        declare(&channel, queue, false).await;
        channel
            .queue_bind(
                queue.into(),
                "logs".into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }
    for key in ["app.error", "db.error", "app.audit.login", "db.info"] {
        publish(
            &channel,
            "logs",
            key,
            key.as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let drain = |queue: &'static str| {
        let channel = channel.clone();
        async move {
            let mut keys = Vec::new();
            while let Some(message) = get(&channel, queue).await {
                keys.push(message.delivery.routing_key.to_string());
                message
                    .delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
            }
            keys
        }
    };
    assert_eq!(drain("errors").await, ["app.error", "db.error"]);
    assert_eq!(drain("app").await, ["app.error", "app.audit.login"]);
    assert_eq!(drain("all").await.len(), 4);

    declare(&channel, "f1", false).await;
    declare(&channel, "f2", false).await;
    for queue in ["f1", "f2"] {
        channel
            .queue_bind(
                queue.into(),
                "amq.fanout".into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind to amq.fanout");
    }
    publish(
        &channel,
        "amq.fanout",
        "ignored",
        b"to all",
        BasicProperties::default(),
    )
    .await;
    for queue in ["f1", "f2"] {
        let message = get(&channel, queue).await.expect("fanout copy");
        assert_eq!(message.delivery.data, b"to all");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_limits_unacked_deliveries() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "slow", false).await;
    for index in 0..5u8 {
        publish(&channel, "", "slow", &[index], BasicProperties::default()).await;
    }
    channel
        .basic_qos(2, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            "slow".into(),
            "slow-c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert_eq!(
        (first.data.as_slice(), second.data.as_slice()),
        (&[0u8][..], &[1u8][..])
    );
    let third = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(
        third.is_err(),
        "a third delivery arrived with prefetch 2 and nothing acked"
    );
    first.ack(BasicAckOptions::default()).await.expect("ack");
    let third = next(&mut consumer).await;
    assert_eq!(third.data, [2u8]);
    // Acking several at once with multiple=true returns all their credit.
    third
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("multi-ack");
    let fourth = next(&mut consumer).await;
    let fifth = next(&mut consumer).await;
    assert_eq!((fourth.data[0], fifth.data[0]), (3, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_errors_carry_rabbitmq_codes_and_the_connection_survives() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let missing = channel
        .queue_declare(
            "nope".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("passive declare of a missing queue fails");
    let text = missing.to_string();
    assert!(
        text.contains("NOT_FOUND - no queue 'nope' in vhost '/'"),
        "{text}"
    );

    let channel = connection
        .create_channel()
        .await
        .expect("a new channel on the same connection");
    let reserved = channel
        .exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("amq.* is reserved");
    assert!(
        reserved.to_string().contains("ACCESS_REFUSED"),
        "{reserved}"
    );

    let channel = connection.create_channel().await.expect("channel");
    declare(&channel, "typed", false).await;
    let inequivalent = channel
        .queue_declare(
            "typed".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("redeclare with another durable flag");
    assert!(
        inequivalent
            .to_string()
            .contains("PRECONDITION_FAILED - inequivalent arg 'durable'"),
        "{inequivalent}"
    );

    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_publish(
            "no-such-exchange".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish is asynchronous");
    // The 404 arrives asynchronously and closes the channel; the next call sees it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !channel.status().connected(),
        "channel closed after publishing to a missing exchange"
    );
    assert!(
        connection.status().connected(),
        "channel errors leave the connection open"
    );
    let channel = connection.create_channel().await.expect("channel");
    declare(&channel, "still-works", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_queue_and_unacked_messages_survive_sigkill() {
    let mut broker = TestBroker::start();
    {
        let connection = connect(&mut broker).await;
        let channel = confirm_channel(&connection).await;
        channel
            .exchange_declare(
                "durable-x".into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("durable exchange");
        declare(&channel, "jobs", true).await;
        channel
            .queue_bind(
                "jobs".into(),
                "durable-x".into(),
                "job".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let persistent = BasicProperties::default().with_delivery_mode(2);
        for body in [b"j1", b"j2", b"j3"] {
            assert_eq!(
                publish(&channel, "durable-x", "job", body, persistent.clone()).await,
                Confirmation::Ack(None)
            );
        }
        let taken = get(&channel, "jobs").await.expect("j1");
        assert_eq!(taken.delivery.data, b"j1");
        let acked = get(&channel, "jobs").await.expect("j2");
        acked
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack j2");
        // Make sure the ack was processed before the kill: a round trip on the same channel.
        declare(&channel, "jobs", true).await;
        broker.kill_and_restart();
    }
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    let declared = channel
        .queue_declare(
            "jobs".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("durable queue exists after SIGKILL");
    assert_eq!(
        declared.message_count(),
        2,
        "j1 (unacked at the kill) and j3"
    );
    let first = get(&channel, "jobs").await.expect("j1 again");
    assert_eq!(first.delivery.data, b"j1");
    assert!(
        first.delivery.redelivered,
        "unacked at the crash comes back redelivered"
    );
    let rest = get(&channel, "jobs").await.expect("j3");
    assert_eq!(rest.delivery.data, b"j3");
    assert_eq!(rest.delivery.properties.delivery_mode(), &Some(2));
    // The durable exchange and binding survived too.
    let confirm = channel
        .basic_publish(
            "durable-x".into(),
            "job".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"j4",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert_eq!(
        confirm,
        Confirmation::Ack(None),
        "routed through the recovered binding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_rabbitmq_names() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let http = broker.http_addr();
    let channel = confirm_channel(&connection).await;
    declare(&channel, "measured", false).await;
    for body in [b"a", b"b", b"c"] {
        publish(&channel, "", "measured", body, BasicProperties::default()).await;
    }
    let message = get(&channel, "measured").await.expect("a message");
    message
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    let unacked = get(&channel, "measured").await.expect("another");
    declare(&channel, "empty", false).await;
    assert!(get(&channel, "empty").await.is_none());
    // A round trip so the ack has been handled before scraping.
    declare(&channel, "measured", false).await;
    let exposition = tokio::task::spawn_blocking(move || scrape(http))
        .await
        .expect("scrape");
    assert_eq!(
        sample(&exposition, "rabbitmq_connections"),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(sample(&exposition, "rabbitmq_channels"), Some(1.0));
    assert_eq!(
        sample(&exposition, "rabbitmq_global_messages_received_total"),
        Some(3.0)
    );
    assert_eq!(
        sample(&exposition, "rabbitmq_global_messages_confirmed_total"),
        Some(3.0)
    );
    assert_eq!(
        sample(&exposition, "rabbitmq_global_messages_delivered_total"),
        Some(2.0)
    );
    assert_eq!(
        sample(&exposition, "rabbitmq_global_messages_acknowledged_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &exposition,
            "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"measured\"}"
        ),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        sample(
            &exposition,
            "rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"measured\"}"
        ),
        Some(1.0)
    );
    // RabbitMQ's breakdowns and churn counters (RabbitMQ-Overview reads them), and the
    // node's identity every panel of it joins on.
    for (series, expected) in [
        ("rabbitmq_global_messages_received_confirm_total", 3.0),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack_total",
            2.0,
        ),
        ("rabbitmq_global_messages_delivered_get_auto_ack_total", 0.0),
        ("rabbitmq_global_messages_get_empty_total", 1.0),
        ("rabbitmq_connections_opened_total", 1.0),
        ("rabbitmq_channels_opened_total", 1.0),
        ("rabbitmq_queues_declared_total", 3.0),
        ("rabbitmq_queues_created_total", 2.0),
        ("rabbitmq_queues", 2.0),
        (
            "rabbitmq_queue_messages{vhost=\"/\",queue=\"measured\"}",
            2.0,
        ),
    ] {
        assert_eq!(sample(&exposition, series), Some(expected), "{series}");
    }
    assert!(
        exposition.contains("rabbitmq_identity_info{rabbitmq_node=\"tributary@"),
        "{exposition}"
    );
    drop(unacked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_confirms_all_arrive_and_order_is_kept() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "burst", true).await;
    const COUNT: u32 = 2000;
    let started = std::time::Instant::now();
    let mut confirms = Vec::new();
    for index in 0..COUNT {
        let confirm = channel
            .basic_publish(
                "".into(),
                "burst".into(),
                BasicPublishOptions::default(),
                &index.to_be_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert_eq!(confirm.await.expect("confirm"), Confirmation::Ack(None));
    }
    eprintln!(
        "{COUNT} persistent publishes confirmed in {:?}",
        started.elapsed()
    );
    channel
        .basic_qos(500, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            "burst".into(),
            "b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for expected in 0..COUNT {
        let delivery = next(&mut consumer).await;
        assert_eq!(
            delivery.data,
            expected.to_be_bytes(),
            "publish order is delivery order"
        );
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
}
