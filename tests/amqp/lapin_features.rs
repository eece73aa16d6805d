//! AMQP features beyond the basic data path, through lapin against the real binary:
//! transactions, dead-lettering (rejected, expired, maxlen) with `x-death`, per-queue and
//! per-message TTL, `x-max-length` with drop-head and reject-publish, exclusive and
//! auto-delete queues, timely expiry in consumer-less queues, and `basic.qos` resizing
//! running consumers.

use crate::broker;
use crate::lapin_support;

use std::time::Duration;

use broker::TestBroker;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, ExchangeKind};
use lapin_support::{
    args, confirm_channel, connect, connect_to, declare, get, next, publish, text,
};

async fn declare_with_options(channel: &lapin::Channel, name: &str, options: QueueDeclareOptions) {
    channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .expect("queue.declare");
}

async fn declare_with(channel: &lapin::Channel, name: &str, arguments: FieldTable) {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare with arguments");
}

/// Bodies left in a queue, drained with basic.get and acked.
async fn drain(channel: &lapin::Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while let Some(message) = get(channel, queue).await {
        bodies.push(message.delivery.data.clone());
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_hold_publishes_and_acks_until_commit() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let setup = connection.create_channel().await.expect("channel");
    declare(&setup, "txq", false).await;
    let channel = connection.create_channel().await.expect("channel");
    channel.tx_select().await.expect("tx.select");
    channel
        .basic_publish(
            "".into(),
            "txq".into(),
            BasicPublishOptions::default(),
            b"rolled back",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    channel.tx_rollback().await.expect("tx.rollback");
    assert!(
        get(&setup, "txq").await.is_none(),
        "a rolled-back publish is not stored"
    );
    channel
        .basic_publish(
            "".into(),
            "txq".into(),
            BasicPublishOptions::default(),
            b"committed",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    assert!(
        get(&setup, "txq").await.is_none(),
        "nothing is stored before commit"
    );
    channel.tx_commit().await.expect("tx.commit");

    // An ack inside a transaction takes effect only on commit; rollback makes it unacked again.
    let message = get(&channel, "txq").await.expect("the committed message");
    assert_eq!(message.delivery.data, b"committed");
    message
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack in tx");
    channel.tx_rollback().await.expect("rollback the ack");
    channel
        .basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover puts the unacked message back");
    let again = get(&channel, "txq")
        .await
        .expect("still there after the rolled-back ack");
    assert!(again.delivery.redelivered);
    again
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    channel.tx_commit().await.expect("commit the ack");
    assert!(get(&setup, "txq").await.is_none());

    let err = channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect_err("confirm on a tx channel");
    assert!(
        err.to_string()
            .contains("cannot switch from tx to confirm mode"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_expired_messages_are_dead_lettered_with_x_death() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    channel
        .exchange_declare(
            "dlx".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("dlx");
    declare(&channel, "dead", false).await;
    channel
        .queue_bind(
            "dead".into(),
            "dlx".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    declare_with(
        &channel,
        "work",
        args(&[
            ("x-dead-letter-exchange", text("dlx")),
            ("x-message-ttl", AMQPValue::LongInt(200)),
        ]),
    )
    .await;

    // Rejected without requeue: dead-lettered with reason "rejected".
    publish(&channel, "", "work", b"bad", BasicProperties::default()).await;
    let mut consumer = channel
        .basic_consume(
            "work".into(),
            "w".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = next(&mut consumer).await;
    delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    channel
        .basic_cancel("w".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    let dead = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(message) = get(&channel, "dead").await {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the rejected message reaches the dead-letter queue");
    assert_eq!(dead.delivery.data, b"bad");
    assert_eq!(dead.delivery.exchange.as_str(), "dlx");
    let headers = dead.delivery.properties.headers().clone().expect("headers");
    let deaths = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().to_vec(),
        other => panic!("x-death missing: {other:?}"),
    };
    let AMQPValue::FieldTable(death) = &deaths[0] else {
        panic!("x-death entry is a table")
    };
    assert_eq!(death.inner().get("reason"), Some(&text("rejected")));
    assert_eq!(death.inner().get("queue"), Some(&text("work")));
    assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(
        headers.inner().get("x-first-death-reason"),
        Some(&text("rejected"))
    );
    dead.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");

    // Expired by the queue TTL, noticed when the message reaches the head.
    publish(&channel, "", "work", b"late", BasicProperties::default()).await;
    // Per-message expiration shorter than the queue's.
    publish(
        &channel,
        "",
        "work",
        b"later",
        BasicProperties::default().with_expiration("50".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        get(&channel, "work").await.is_none(),
        "both messages expired"
    );
    let expired = get(&channel, "dead")
        .await
        .expect("an expired message was dead-lettered");
    assert_eq!(expired.delivery.data, b"late");
    let headers = expired
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("x-death")
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("entry")
    };
    assert_eq!(death.inner().get("reason"), Some(&text("expired")));
    let second = get(&channel, "dead")
        .await
        .expect("the second expired message");
    assert_eq!(second.delivery.data, b"later");
    assert_eq!(
        second.delivery.properties.expiration(),
        &None,
        "expiration is removed on dead-lettering"
    );

    // An invalid expiration closes the channel with 406.
    let bad = connection.create_channel().await.expect("channel");
    bad.basic_publish(
        "".into(),
        "work".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_expiration("abc".into()),
    )
    .await
    .expect("publish is asynchronous");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !bad.status().connected(),
        "invalid expiration closes the channel"
    );
}

/// The "delayed retry" pattern: nobody consumes the TTL queue, so its messages must be
/// dead-lettered when they fall due (RabbitMQ's queue TTL timer), not when someone looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_less_ttl_queues_dead_letter_when_messages_fall_due() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "work", false).await;
    let to_work = [
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text("work")),
    ];
    let mut retry_args = to_work.to_vec();
    retry_args.push(("x-message-ttl", AMQPValue::LongInt(300)));
    declare_with(&channel, "retry", args(&retry_args)).await;
    // No queue TTL here: the per-message expiration alone arms the timer.
    declare_with(&channel, "hold", args(&to_work)).await;
    let mut consumer = channel
        .basic_consume(
            "work".into(),
            "worker".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume work");

    let started = std::time::Instant::now();
    publish(
        &channel,
        "",
        "retry",
        b"retried",
        BasicProperties::default(),
    )
    .await;
    let delivery = next(&mut consumer).await;
    let waited = started.elapsed();
    assert_eq!(delivery.data, b"retried");
    assert!(
        waited >= Duration::from_millis(250),
        "dead-lettered before its TTL: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "dead-lettered late: {waited:?}"
    );
    let headers = delivery.properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("x-death missing")
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!("x-death entry is a table")
    };
    assert_eq!(death.inner().get("reason"), Some(&text("expired")));
    assert_eq!(death.inner().get("queue"), Some(&text("retry")));

    publish(
        &channel,
        "",
        "hold",
        b"held",
        BasicProperties::default().with_expiration("100".into()),
    )
    .await;
    assert_eq!(next(&mut consumer).await.data, b"held");
    let depth = channel
        .queue_declare(
            "retry".into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(
        depth.message_count(),
        0,
        "the expired message left the queue"
    );
}

/// A persistent message waiting out its TTL when the broker is killed still falls due after
/// the restart, though no client touches its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_messages_recovered_after_a_restart_still_fall_due() {
    let mut broker = TestBroker::start();
    {
        let connection = connect(&mut broker).await;
        let channel = confirm_channel(&connection).await;
        declare(&channel, "work", true).await;
        channel
            .queue_declare(
                "retry".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args(&[
                    ("x-dead-letter-exchange", text("")),
                    ("x-dead-letter-routing-key", text("work")),
                    ("x-message-ttl", AMQPValue::LongInt(1000)),
                ]),
            )
            .await
            .expect("declare retry");
        let persistent = BasicProperties::default().with_delivery_mode(2);
        publish(&channel, "", "retry", b"survivor", persistent).await;
    }
    broker.kill_and_restart();
    let connection = connect(&mut broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            "work".into(),
            "after-restart".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume work");
    let delivery = tokio::time::timeout(Duration::from_secs(5), next(&mut consumer))
        .await
        .expect("dead-lettered within 5 s of the restart");
    assert_eq!(delivery.data, b"survivor");
}

/// kombu/Celery raise the prefetch with `basic.qos` while consuming (one more per held ETA
/// task) and expect the running consumer to receive more; lowering it holds deliveries back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_qos_resizes_the_prefetch_of_running_consumers() {
    use futures_lite::StreamExt;

    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "held", false).await;
    for body in [b"m1", b"m2", b"m3", b"m4"] {
        publish(&channel, "", "held", body, BasicProperties::default()).await;
    }
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos 1");
    let mut consumer = channel
        .basic_consume(
            "held".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = next(&mut consumer).await;
    assert_eq!(first.data, b"m1");
    let quiet = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(quiet.is_err(), "prefetch 1 held back the second message");

    channel
        .basic_qos(3, BasicQosOptions::default())
        .await
        .expect("qos 3");
    assert_eq!(
        next(&mut consumer).await.data,
        b"m2",
        "raised while consuming"
    );
    let third = next(&mut consumer).await;
    assert_eq!(third.data, b"m3");

    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos 1 again");
    first.ack(BasicAckOptions::default()).await.expect("ack m1");
    let quiet = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(quiet.is_err(), "two still unacked against a limit of one");
    third
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("ack m2 and m3");
    assert_eq!(
        next(&mut consumer).await.data,
        b"m4",
        "free again at the new limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_drops_head_or_rejects_publish() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare_with(
        &channel,
        "capped",
        args(&[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await;
    for body in [b"m1", b"m2", b"m3"] {
        assert_eq!(
            publish(&channel, "", "capped", body, BasicProperties::default()).await,
            Confirmation::Ack(None)
        );
    }
    assert_eq!(
        drain(&channel, "capped").await,
        [b"m2".to_vec(), b"m3".to_vec()],
        "the oldest was dropped"
    );

    declare_with(
        &channel,
        "strict",
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    assert_eq!(
        publish(&channel, "", "strict", b"s1", BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    assert!(
        matches!(
            publish(&channel, "", "strict", b"s2", BasicProperties::default()).await,
            Confirmation::Nack(_)
        ),
        "a full reject-publish queue nacks"
    );
    assert_eq!(drain(&channel, "strict").await, [b"s1".to_vec()]);

    let err = channel
        .queue_declare(
            "bogus".into(),
            QueueDeclareOptions::default(),
            args(&[("x-max-length", AMQPValue::LongInt(-1))]),
        )
        .await
        .expect_err("negative max length");
    assert!(
        err.to_string()
            .contains("PRECONDITION_FAILED - invalid arg 'x-max-length'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_and_auto_delete_queues() {
    let mut broker = TestBroker::start();
    let addr = broker.addr("amqp");
    let owner = connect_to(addr).await;
    let other = connect_to(addr).await;
    let channel = owner.create_channel().await.expect("channel");
    let private = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("server-named exclusive queue");
    let name = private.name().to_string();
    assert!(name.starts_with("amq.gen-"), "{name}");
    // Redeclaring an exclusive durable queue with the same flags is equivalent.
    let mine = QueueDeclareOptions {
        exclusive: true,
        durable: true,
        ..Default::default()
    };
    for _ in 0..2 {
        declare_with_options(&channel, "mine", mine).await;
    }

    let intruder = other.create_channel().await.expect("channel");
    let err = intruder
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("another connection cannot use an exclusive queue");
    assert!(
        err.to_string()
            .contains("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue"),
        "{err}"
    );

    // Auto-delete: gone when its last consumer is cancelled.
    declare_with_options(
        &channel,
        "temp",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
    )
    .await;
    channel
        .basic_consume(
            "temp".into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    channel
        .basic_cancel("t".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");

    owner.close(200, "bye".into()).await.expect("close");
    for queue in [name.as_str(), "temp"] {
        // A passive 404 closes the channel, so each check uses a fresh one.
        let checker = other.create_channel().await.expect("channel");
        let gone = checker
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect_err("deleted queue");
        assert!(gone.to_string().contains("NOT_FOUND"), "{queue}: {gone}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_cross_frames_and_oversized_ones_are_refused() {
    // A limit set lower than the 16 MiB default applies (`amqp.max_message_bytes`).
    let mut broker =
        TestBroker::start_with_env(&[], &[("TRIBUTARY_AMQP_MAX_MESSAGE_BYTES", "1048576")]);
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, "big", false).await;
    // 300 KB: three body frames at frame_max 131072 each way.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        publish(&channel, "", "big", &body, BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    let mut consumer = channel
        .basic_consume(
            "big".into(),
            "big-c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.data, body);
    delivery.ack(BasicAckOptions::default()).await.expect("ack");
    // Empty body: no body frame at all.
    assert_eq!(
        publish(&channel, "", "big", b"", BasicProperties::default()).await,
        Confirmation::Ack(None)
    );
    assert!(next(&mut consumer).await.data.is_empty());

    let oversized = connection.create_channel().await.expect("channel");
    oversized
        .basic_publish(
            "".into(),
            "big".into(),
            BasicPublishOptions::default(),
            &vec![0u8; 2 << 20],
            BasicProperties::default(),
        )
        .await
        .expect("publish is asynchronous");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !oversized.status().connected(),
        "a body over the limit closes the channel (406)"
    );
    assert!(connection.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_bindings_and_alternate_exchanges() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            "unrouted".into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("alternate exchange");
    channel
        .exchange_declare(
            "front".into(),
            ExchangeKind::Topic,
            durable,
            args(&[("alternate-exchange", text("unrouted"))]),
        )
        .await
        .expect("front with an alternate exchange");
    channel
        .exchange_declare(
            "back".into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("back");
    channel
        .exchange_bind(
            "back".into(),
            "front".into(),
            "orders.#".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.bind");
    // A cycle must not loop for ever.
    channel
        .exchange_bind(
            "front".into(),
            "back".into(),
            "orders.eu".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.bind back to front");
    for (queue, exchange, key) in [("eu", "back", "orders.eu"), ("lost", "unrouted", "")] {
        declare(&channel, queue, true).await;
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.bind");
    }
    publish(
        &channel,
        "front",
        "orders.eu",
        b"via back",
        BasicProperties::default(),
    )
    .await;
    publish(
        &channel,
        "front",
        "misc",
        b"via alternate",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(
        drain(&channel, "eu").await,
        [b"via back".to_vec()],
        "routed once through the cycle"
    );
    assert_eq!(drain(&channel, "lost").await, [b"via alternate".to_vec()]);

    // Durable definitions, bindings included, survive a SIGKILL.
    drop(channel);
    drop(connection);
    broker.kill_and_restart();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    publish(
        &channel,
        "front",
        "orders.eu",
        b"after restart",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(drain(&channel, "eu").await, [b"after restart".to_vec()]);
    channel
        .exchange_unbind(
            "back".into(),
            "front".into(),
            "orders.#".into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.unbind");
    publish(
        &channel,
        "front",
        "orders.eu",
        b"now unrouted",
        BasicProperties::default(),
    )
    .await;
    assert!(drain(&channel, "eu").await.is_empty());
    assert_eq!(
        drain(&channel, "lost").await,
        [b"now unrouted".to_vec()],
        "the alternate exchange takes it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reply_to_rpc_round_trip() {
    let mut broker = TestBroker::start();
    let addr = broker.addr("amqp");
    let client = connect_to(addr).await;
    let server = connect_to(addr).await;
    let server_channel = server.create_channel().await.expect("channel");
    declare(&server_channel, "rpc", false).await;
    let mut requests = server_channel
        .basic_consume(
            "rpc".into(),
            "server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume requests");

    let channel = client.create_channel().await.expect("channel");
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume amq.rabbitmq.reply-to");
    channel
        .basic_publish(
            "".into(),
            "rpc".into(),
            BasicPublishOptions::default(),
            b"2+2",
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("q1".into()),
        )
        .await
        .expect("request");

    let request = next(&mut requests).await;
    let reply_to = request
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .to_string();
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to."),
        "rewritten to a routable name: {reply_to}"
    );
    server_channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions::default(),
            b"4",
            BasicProperties::default().with_correlation_id("q1".into()),
        )
        .await
        .expect("reply");
    request
        .ack(BasicAckOptions::default())
        .await
        .expect("ack request");

    let reply = next(&mut replies).await;
    assert_eq!(reply.data, b"4");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("q1")
    );

    let acking = client.create_channel().await.expect("channel");
    let err = acking
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("reply consumers must be no-ack");
    assert!(
        err.to_string()
            .contains("reply consumer cannot acknowledge"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_hands_over_on_cancel() {
    use futures_lite::StreamExt;
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare_with(
        &channel,
        "sac",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let first_channel = connection.create_channel().await.expect("channel");
    let second_channel = connection.create_channel().await.expect("channel");
    let mut first = first_channel
        .basic_consume(
            "sac".into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("first consumer");
    let mut second = second_channel
        .basic_consume(
            "sac".into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("second consumer is accepted and waits");
    for body in [b"a", b"b", b"c"] {
        publish(&channel, "", "sac", body, BasicProperties::default()).await;
    }
    for expected in [b"a", b"b", b"c"] {
        let delivery = next(&mut first).await;
        assert_eq!(delivery.data, expected);
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let idle = tokio::time::timeout(Duration::from_millis(300), second.next()).await;
    assert!(idle.is_err(), "the waiting consumer received a message");
    first_channel
        .basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel the active consumer");
    publish(&channel, "", "sac", b"d", BasicProperties::default()).await;
    let delivery = next(&mut second).await;
    assert_eq!(delivery.data, b"d", "the next consumer took over");
}
