//! AMQP queue types and queue arguments through lapin against the real binary: priority queues
//! (order, clamping, requeue, SIGKILL survival), `x-expires`, `x-max-length-bytes`,
//! `x-overflow=reject-publish-dlx`, quorum queues with `x-delivery-limit` (counts kept across
//! SIGKILL), and streams read with `x-stream-offset` (first, numeric,
//! timestamp, next) and through Kafka, and Kafka topics of several partitions read as super
//! streams (`super_streams`).

use crate::broker;
use crate::lapin_support;
mod super_streams;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;

use broker::TestBroker;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};
use lapin_support::{
    args, confirm_channel, connect, connect_to, consume_stream, get, next, publish, stream_args,
    text,
};

async fn declare_with(channel: &lapin::Channel, name: &str, durable: bool, arguments: FieldTable) {
    let options = QueueDeclareOptions {
        durable,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .expect("queue.declare with arguments");
}

/// The error text a declare with `arguments` gets (on a fresh channel of `connection`).
async fn declare_error(
    connection: &lapin::Connection,
    durable: bool,
    arguments: FieldTable,
) -> String {
    let channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        durable,
        ..Default::default()
    };
    channel
        .queue_declare("refused".into(), options, arguments)
        .await
        .expect_err("declare is refused")
        .to_string()
}

async fn get_body(channel: &lapin::Channel, queue: &str) -> Option<(Vec<u8>, bool)> {
    let message = get(channel, queue).await?;
    let out = (message.delivery.data.clone(), message.delivery.redelivered);
    message
        .delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    Some(out)
}

fn header<'a>(delivery: &'a lapin::message::Delivery, name: &str) -> Option<&'a AMQPValue> {
    delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(&ShortString::from(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_queue_delivers_highest_first_and_survives_sigkill() {
    let mut broker = TestBroker::start();
    {
        let connection = connect(&mut broker).await;
        let refused = declare_error(
            &connection,
            false,
            args(&[("x-max-priority", AMQPValue::LongInt(256))]),
        )
        .await;
        assert!(
            refused.contains(
                "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'refused' in vhost '/': {max_value_exceeded,256}"
            ),
            "{refused}"
        );
        let channel = confirm_channel(&connection).await;
        declare_with(
            &channel,
            "prio",
            true,
            args(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
        )
        .await;
        let sent: [(&[u8], Option<u8>); 6] = [
            (b"none", None),
            (b"p3a", Some(3)),
            (b"p9", Some(9)),
            (b"p3b", Some(3)),
            (b"p200", Some(200)),
            (b"p1", Some(1)),
        ];
        for (body, priority) in sent {
            let mut properties = BasicProperties::default().with_delivery_mode(2);
            if let Some(priority) = priority {
                properties = properties.with_priority(priority);
            }
            assert_eq!(
                publish(&channel, "", "prio", body, properties).await,
                Confirmation::Ack(None)
            );
        }
        // Above x-max-priority counts as the maximum: p200 is first.
        assert_eq!(
            get_body(&channel, "prio").await,
            Some((b"p200".to_vec(), false))
        );
        // A requeued message goes back to its place within its priority.
        let p9 = get(&channel, "prio").await.expect("p9");
        assert_eq!(p9.delivery.data, b"p9");
        let p3a = get(&channel, "prio").await.expect("p3a");
        assert_eq!(p3a.delivery.data, b"p3a");
        p3a.delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack requeue");
        // p9 stays unacked across the kill; a round trip makes sure the nack was applied.
        declare_with(
            &channel,
            "prio",
            true,
            args(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
        )
        .await;
        broker.kill_and_restart();
    }
    let connection = connect(&mut broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let mut order = Vec::new();
    while let Some((body, redelivered)) = get_body(&channel, "prio").await {
        order.push((String::from_utf8(body).unwrap(), redelivered));
    }
    let bodies: Vec<&str> = order.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, ["p9", "p3a", "p3b", "p1", "none"]);
    // Handed out before the kill: redelivered. (Everything below the highest offset handed
    // out is flagged after a restart, which the spec allows; p1 came after it.)
    assert!(order[0].1 && order[1].1, "{order:?}");
    assert!(!order[3].1, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_expires_deletes_an_unused_queue_and_use_renews_the_lease() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let refused = declare_error(
        &connection,
        false,
        args(&[("x-expires", AMQPValue::LongInt(0))]),
    )
    .await;
    assert!(
        refused.contains("'x-expires'") && refused.contains("{value_zero,0}"),
        "{refused}"
    );
    let channel = connection.create_channel().await.expect("channel");
    let lease = || args(&[("x-expires", AMQPValue::LongInt(600))]);
    declare_with(&channel, "leased", false, lease()).await;
    declare_with(&channel, "idle", false, lease()).await;
    // basic.get every 200 ms keeps `leased` in use well past its 600 ms lease.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(get(&channel, "leased").await.is_none());
    }
    // A consumer keeps it in use too.
    let consumer = channel
        .basic_consume(
            "leased".into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    channel
        .basic_cancel("holder".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    drop(consumer);
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare("leased".into(), passive, FieldTable::default())
        .await
        .expect("still there while in use");
    let gone = connection.create_channel().await.expect("channel");
    let error = gone
        .queue_declare("idle".into(), passive, FieldTable::default())
        .await
        .expect_err("the idle queue expired");
    assert!(
        error.to_string().contains("NOT_FOUND - no queue 'idle'"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let gone = connection.create_channel().await.expect("channel");
    let error = gone
        .queue_declare("leased".into(), passive, FieldTable::default())
        .await
        .expect_err("unused after the cancel, it expired too");
    assert!(error.to_string().contains("NOT_FOUND"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_max_length_bytes_drops_the_head_or_rejects_the_publish() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare_with(&channel, "dead", false, FieldTable::default()).await;
    declare_with(
        &channel,
        "by-bytes",
        false,
        args(&[
            ("x-max-length-bytes", AMQPValue::LongInt(10)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("dead")),
        ]),
    )
    .await;
    for body in [&b"aaaa"[..], b"bbbb", b"cccc"] {
        publish(&channel, "", "by-bytes", body, BasicProperties::default()).await;
    }
    // 12 bytes > 10: the oldest went to the dead-letter queue with reason maxlen.
    assert_eq!(
        get_body(&channel, "by-bytes").await.map(|m| m.0),
        Some(b"bbbb".to_vec())
    );
    assert_eq!(
        get_body(&channel, "by-bytes").await.map(|m| m.0),
        Some(b"cccc".to_vec())
    );
    let dropped = get(&channel, "dead").await.expect("dead-lettered head");
    assert_eq!(dropped.delivery.data, b"aaaa");
    let Some(AMQPValue::LongString(reason)) = header(&dropped.delivery, "x-first-death-reason")
    else {
        panic!("no x-first-death-reason");
    };
    assert_eq!(String::from_utf8_lossy(reason.as_bytes()), "maxlen");

    declare_with(
        &channel,
        "bytes-reject",
        false,
        args(&[
            ("x-max-length-bytes", AMQPValue::LongInt(6)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    let outcomes = [
        publish(
            &channel,
            "",
            "bytes-reject",
            b"12345",
            BasicProperties::default(),
        )
        .await,
        publish(
            &channel,
            "",
            "bytes-reject",
            b"678",
            BasicProperties::default(),
        )
        .await,
        publish(
            &channel,
            "",
            "bytes-reject",
            b"9",
            BasicProperties::default(),
        )
        .await,
    ];
    assert_eq!(outcomes[0], Confirmation::Ack(None));
    assert!(
        matches!(outcomes[1], Confirmation::Nack(_)),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(
        outcomes[2],
        Confirmation::Ack(None),
        "a message that fits is taken"
    );
    assert_eq!(
        get_body(&channel, "bytes-reject").await.map(|m| m.0),
        Some(b"12345".to_vec())
    );
    assert_eq!(
        get_body(&channel, "bytes-reject").await.map(|m| m.0),
        Some(b"9".to_vec())
    );
}

/// The text of a long-string header or of a long-string field of a table.
fn long_text(value: Option<&AMQPValue>) -> Option<String> {
    match value? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_dlx_nacks_and_dead_letters_the_refused_message() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    declare_with(&channel, "full-dead", false, FieldTable::default()).await;
    declare_with(
        &channel,
        "full",
        false,
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish-dlx")),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("full-dead")),
        ]),
    )
    .await;
    let kept = publish(&channel, "", "full", b"kept", BasicProperties::default()).await;
    assert_eq!(kept, Confirmation::Ack(None));
    let refused = publish(
        &channel,
        "",
        "full",
        b"refused",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    assert!(
        matches!(refused, Confirmation::Nack(_)),
        "the publisher is told: {refused:?}"
    );
    assert_eq!(
        get_body(&channel, "full").await.map(|m| m.0),
        Some(b"kept".to_vec())
    );
    assert!(
        get(&channel, "full").await.is_none(),
        "the refused message was not stored"
    );

    let dead = get(&channel, "full-dead")
        .await
        .expect("the refused message was dead-lettered");
    assert_eq!(dead.delivery.data, b"refused");
    assert_eq!(dead.delivery.routing_key.as_str(), "full-dead");
    assert_eq!(
        dead.delivery.properties.expiration(),
        &None,
        "expiration removed, as on any dead-lettering"
    );
    for (name, value) in [
        ("x-first-death-reason", "maxlen"),
        ("x-first-death-queue", "full"),
        ("x-first-death-exchange", ""),
    ] {
        assert_eq!(
            long_text(header(&dead.delivery, name)).as_deref(),
            Some(value),
            "{name}"
        );
    }
    let Some(AMQPValue::FieldArray(deaths)) = header(&dead.delivery, "x-death") else {
        panic!("no x-death array");
    };
    let [AMQPValue::FieldTable(death)] = deaths.as_slice() else {
        panic!("one x-death entry: {deaths:?}");
    };
    let field = |key: &str| death.inner().get(&ShortString::from(key));
    assert_eq!(long_text(field("reason")).as_deref(), Some("maxlen"));
    assert_eq!(long_text(field("queue")).as_deref(), Some("full"));
    assert_eq!(long_text(field("exchange")).as_deref(), Some(""));
    assert_eq!(
        long_text(field("original-expiration")).as_deref(),
        Some("60000")
    );
    assert_eq!(field("count"), Some(&AMQPValue::LongLongInt(1)));
    assert!(matches!(field("time"), Some(AMQPValue::Timestamp(_))));
    let Some(AMQPValue::FieldArray(keys)) = field("routing-keys") else {
        panic!("no routing-keys");
    };
    assert_eq!(keys.as_slice(), [text("full")]);

    // A quorum queue does not take reject-publish-dlx (RabbitMQ 3.10 falls back to drop-head).
    declare_with(
        &channel,
        "full-quorum",
        true,
        args(&[
            ("x-queue-type", text("quorum")),
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", text("reject-publish-dlx")),
        ]),
    )
    .await;
    for body in [&b"old"[..], b"new"] {
        let outcome = publish(
            &channel,
            "",
            "full-quorum",
            body,
            BasicProperties::default(),
        )
        .await;
        assert_eq!(outcome, Confirmation::Ack(None));
    }
    assert_eq!(
        get_body(&channel, "full-quorum").await.map(|m| m.0),
        Some(b"new".to_vec()),
        "the head was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queue_counts_deliveries_and_dead_letters_past_the_limit() {
    let mut broker = TestBroker::start();
    let connection = connect(&mut broker).await;
    let quorum = || ("x-queue-type", text("quorum"));
    let exclusive = connection.create_channel().await.expect("channel");
    let error = exclusive
        .queue_declare(
            "q-excl".into(),
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            args(&[quorum()]),
        )
        .await
        .expect_err("exclusive quorum queue");
    assert!(
        error
            .to_string()
            .contains("invalid property 'exclusive-owner' for queue 'q-excl'"),
        "{error}"
    );
    let refused = declare_error(
        &connection,
        true,
        args(&[quorum(), ("x-max-priority", AMQPValue::LongInt(3))]),
    )
    .await;
    assert!(
        refused.contains("of queue type rabbit_quorum_queue"),
        "{refused}"
    );

    let channel = confirm_channel(&connection).await;
    declare_with(&channel, "poison-dlq", true, FieldTable::default()).await;
    declare_with(
        &channel,
        "work",
        true,
        args(&[
            quorum(),
            ("x-delivery-limit", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("poison-dlq")),
        ]),
    )
    .await;
    publish(&channel, "", "work", b"poison", BasicProperties::default()).await;
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            "work".into(),
            "worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    // Delivered once, then redelivered twice (the limit) with a growing x-delivery-count.
    let mut counts = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut consumer).await;
        counts.push(header(&delivery, "x-delivery-count").cloned());
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack requeue");
    }
    assert_eq!(
        counts,
        vec![
            None,
            Some(AMQPValue::LongLongInt(1)),
            Some(AMQPValue::LongLongInt(2))
        ]
    );
    // The third requeue is over the limit: dead-lettered, not delivered again.
    let mut dead = None;
    for _ in 0..50 {
        dead = get(&channel, "poison-dlq").await;
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = dead.expect("the poison message reached the dead-letter queue");
    let Some(AMQPValue::LongString(reason)) = header(&dead.delivery, "x-first-death-reason") else {
        panic!("no x-first-death-reason");
    };
    assert_eq!(String::from_utf8_lossy(reason.as_bytes()), "delivery_limit");
    assert!(get(&channel, "work").await.is_none());
}

/// A quorum queue's `x-delivery-count` is journaled with the requeue: after a SIGKILL the
/// message keeps its count, and the delivery limit counts on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_delivery_counts_survive_sigkill() {
    let mut broker = TestBroker::start();
    let declare_counted = |channel: lapin::Channel| async move {
        declare_with(&channel, "counted-dlq", true, FieldTable::default()).await;
        declare_with(
            &channel,
            "counted",
            true,
            args(&[
                ("x-queue-type", text("quorum")),
                ("x-delivery-limit", AMQPValue::LongInt(3)),
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text("counted-dlq")),
            ]),
        )
        .await;
        channel
    };
    let requeue = |delivery: lapin::message::Delivery| async move {
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack requeue");
    };
    let count_of =
        |delivery: &lapin::message::Delivery| header(delivery, "x-delivery-count").cloned();
    {
        let connection = connect(&mut broker).await;
        let channel = declare_counted(confirm_channel(&connection).await).await;
        let persistent = BasicProperties::default().with_delivery_mode(2);
        publish(&channel, "", "counted", b"flaky", persistent).await;
        let mut counts = Vec::new();
        for _ in 0..2 {
            let got = get(&channel, "counted").await.expect("the message");
            counts.push(count_of(&got.delivery));
            requeue(got.delivery).await;
        }
        assert_eq!(counts, [None, Some(AMQPValue::LongLongInt(1))]);
        // A round trip on the channel makes sure the second nack was applied before the kill.
        declare_counted(channel).await;
        broker.kill_and_restart();
    }
    let connection = connect(&mut broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let got = get(&channel, "counted")
        .await
        .expect("the message after the restart");
    assert_eq!(
        count_of(&got.delivery),
        Some(AMQPValue::LongLongInt(2)),
        "requeued twice before the SIGKILL"
    );
    assert!(got.delivery.redelivered);
    requeue(got.delivery).await;
    let got = get(&channel, "counted")
        .await
        .expect("within the limit of 3");
    assert_eq!(count_of(&got.delivery), Some(AMQPValue::LongLongInt(3)));
    requeue(got.delivery).await;
    // The fourth requeue is over the limit: dead-lettered when it next reaches the head.
    assert!(get(&channel, "counted").await.is_none(), "over the limit");
    let dead = get(&channel, "counted-dlq").await.expect("dead-lettered");
    assert_eq!(dead.delivery.data, b"flaky");
    assert_eq!(
        long_text(header(&dead.delivery, "x-first-death-reason")).as_deref(),
        Some("delivery_limit")
    );
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Starts a stream consumer at `offset` and returns the next `count` (body, x-stream-offset).
async fn read_stream(
    connection: &lapin::Connection,
    offset: AMQPValue,
    count: usize,
) -> Vec<(String, i64)> {
    let (channel, mut consumer) = consume_stream(connection, "events", offset).await;
    let mut got = Vec::new();
    for _ in 0..count {
        let delivery = next(&mut consumer).await;
        let Some(AMQPValue::LongLongInt(at)) = header(&delivery, "x-stream-offset").cloned() else {
            panic!("no x-stream-offset header");
        };
        got.push((String::from_utf8(delivery.data.clone()).unwrap(), at));
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    channel.close(200, "done".into()).await.expect("close");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_read_from_first_offset_timestamp_and_next_and_by_kafka() {
    let mut broker = TestBroker::start();
    let amqp = broker.addr("amqp");
    let connection = connect_to(amqp).await;
    let refused = declare_error(&connection, false, stream_args()).await;
    assert!(
        refused.contains("invalid property 'non-durable'"),
        "{refused}"
    );
    let channel = confirm_channel(&connection).await;
    declare_with(&channel, "events", true, stream_args()).await;
    for body in ["e0", "e1", "e2"] {
        publish(
            &channel,
            "",
            "events",
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    // Timestamps are seconds: the later messages come in a later second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = now_seconds();
    for body in ["e3", "e4"] {
        publish(
            &channel,
            "",
            "events",
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let owned = |list: &[(&str, i64)]| -> Vec<(String, i64)> {
        list.iter().map(|(b, o)| ((*b).to_owned(), *o)).collect()
    };
    assert_eq!(
        read_stream(&connection, text("first"), 5).await,
        owned(&[("e0", 0), ("e1", 1), ("e2", 2), ("e3", 3), ("e4", 4)])
    );
    assert_eq!(
        read_stream(&connection, AMQPValue::LongLongInt(2), 2).await,
        owned(&[("e2", 2), ("e3", 3)])
    );
    assert_eq!(
        read_stream(&connection, AMQPValue::Timestamp(later), 2).await,
        owned(&[("e3", 3), ("e4", 4)])
    );
    // `next` (also the default) sees only what is published after the consumer started.
    let reader = {
        let connection = connect_to(amqp).await;
        tokio::spawn(async move { read_stream(&connection, text("next"), 1).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(&channel, "", "events", b"e5", BasicProperties::default()).await;
    assert_eq!(reader.await.expect("reader"), owned(&[("e5", 5)]));

    // RabbitMQ's refusals for streams.
    let get_channel = connection.create_channel().await.expect("channel");
    let error = get_channel
        .basic_get("events".into(), BasicGetOptions::default())
        .await
        .expect_err("basic.get on a stream");
    assert!(
        error
            .to_string()
            .contains("basic.get not supported by stream queues"),
        "{error}"
    );
    let connection = connect_to(amqp).await;
    let no_prefetch = connection.create_channel().await.expect("channel");
    let error = no_prefetch
        .basic_consume(
            "events".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("a stream consumer needs a prefetch");
    assert!(
        error
            .to_string()
            .contains("consumer prefetch count is not set for 'queue 'events' in vhost '/''"),
        "{error}"
    );

    // The stream is the Kafka topic of the same name.
    let kafka = broker.addr("kafka").to_string();
    let bodies = tokio::task::spawn_blocking(move || kafka_bodies(&kafka, "events", 6))
        .await
        .expect("kafka reader");
    assert_eq!(bodies, ["e0", "e1", "e2", "e3", "e4", "e5"]);
    // And what a Kafka producer writes is read by a stream consumer.
    let producer: rdkafka::producer::FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.addr("kafka").to_string())
        .set("acks", "all")
        .create()
        .expect("kafka producer");
    producer
        .send(
            rdkafka::producer::FutureRecord::to("events")
                .key("k")
                .payload("from-kafka"),
            Duration::from_secs(10),
        )
        .await
        .expect("kafka produce");
    let connection = connect_to(amqp).await;
    assert_eq!(
        read_stream(&connection, AMQPValue::LongLongInt(6), 1).await,
        owned(&[("from-kafka", 6)])
    );
    // `last` starts at the last stored batch, an interval at that long ago.
    assert_eq!(
        read_stream(&connection, text("last"), 1).await,
        owned(&[("from-kafka", 6)])
    );
    assert_eq!(
        read_stream(&connection, text("1h"), 1).await,
        owned(&[("e0", 0)])
    );
    let bogus = connection.create_channel().await.expect("channel");
    bogus
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let error = bogus
        .basic_consume(
            "events".into(),
            "".into(),
            BasicConsumeOptions::default(),
            args(&[("x-stream-offset", text("bogus"))]),
        )
        .await
        .expect_err("a bogus x-stream-offset");
    assert!(error.to_string().contains("PRECONDITION_FAILED"), "{error}");
}

/// docs/interop.md through real clients: a Kafka record reaches an AMQP stream consumer with its
/// key, timestamp and headers as a table (binary kept, null as void, a repeated name as one
/// array); a record with a header name AMQP cannot carry cancels the consumer instead of being
/// passed over; an AMQP publish reaches Kafka with its table entries and properties as headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_read_natively_over_amqp_and_amqp_headers_reach_kafka() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let mut broker = TestBroker::start();
    let connection = connect_to(broker.addr("amqp")).await;
    let channel = confirm_channel(&connection).await;
    declare_with(&channel, "mapped", true, stream_args()).await;
    let producer: FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.addr("kafka").to_string())
        .set("acks", "all")
        .create()
        .expect("kafka producer");
    let binary: &[u8] = &[0, 1, 2, 0xff];
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "h",
            value: Some(&b"one"[..]),
        })
        .insert(Header {
            key: "bin",
            value: Some(binary),
        })
        .insert(Header {
            key: "nil",
            value: None::<&[u8]>,
        })
        .insert(Header {
            key: "h",
            value: Some(&b"two"[..]),
        });
    let long_name = "n".repeat(300);
    let refused_headers = OwnedHeaders::new().insert(Header {
        key: long_name.as_str(),
        value: Some(&b"v"[..]),
    });
    for record in [
        FutureRecord::to("mapped")
            .key("k1")
            .payload("v1")
            .timestamp(1_700_000_000_999)
            .headers(headers),
        FutureRecord::to("mapped")
            .key("k2")
            .payload("v2")
            .headers(refused_headers),
    ] {
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("kafka produce");
    }

    let (consuming, mut consumer) = consume_stream(&connection, "mapped", text("first")).await;
    let first = next(&mut consumer).await;
    assert_eq!(first.data, b"v1");
    assert_eq!(first.routing_key.as_str(), "k1");
    assert_eq!(first.exchange.as_str(), "");
    assert_eq!(first.properties.timestamp(), &Some(1_700_000_000));
    let long = |bytes: &[u8]| AMQPValue::LongString(bytes.to_vec().into());
    assert_eq!(
        header(&first, "h"),
        Some(&AMQPValue::FieldArray(
            vec![long(b"one"), long(b"two")].into()
        ))
    );
    assert_eq!(header(&first, "bin"), Some(&long(binary)));
    assert_eq!(header(&first, "nil"), Some(&AMQPValue::Void));
    // The record AMQP cannot carry is not passed over: the channel is closed with the error,
    // right after the deliveries before it (so an ack of those may race with the close).
    let _ = first.ack(BasicAckOptions::default()).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("the consumer ends within 10 s");
    assert!(!matches!(ended, Some(Ok(_))), "delivered: {ended:?}");
    let error = consuming
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect_err("the channel is closed");
    let closed = format!("{ended:?} {error:?}");
    assert!(
        closed.contains("INTERNAL_ERROR") && closed.contains("header name of 300 bytes"),
        "{closed}"
    );
    let http = broker.http_addr();
    let exposition = tokio::task::spawn_blocking(move || lapin_support::scrape(http))
        .await
        .expect("scrape");
    assert!(
        exposition.lines().any(|line| {
            line.starts_with("tributary_interop_undeliverable_batches_total{")
                && line.contains("protocol=\"amqp\"")
                && line.contains("reason=\"header_name_too_long\"")
        }),
        "{exposition}"
    );

    let mut table = FieldTable::default();
    table.insert("n".into(), AMQPValue::LongInt(7));
    table.insert(
        "arr".into(),
        AMQPValue::FieldArray(vec![text("a"), text("b")].into()),
    );
    let properties = BasicProperties::default()
        .with_headers(table)
        .with_content_type("text/plain".into());
    publish(&channel, "", "mapped", b"from-amqp", properties).await;
    let kafka = broker.addr("kafka").to_string();
    let (key, headers) = tokio::task::spawn_blocking(move || kafka_record(&kafka, "mapped", 2))
        .await
        .expect("kafka reader");
    assert_eq!(
        key.as_deref(),
        Some(&b"mapped"[..]),
        "the routing key is the key"
    );
    let shown: Vec<(String, Option<String>)> = headers
        .into_iter()
        .filter(|(name, _)| name != "amqp.props")
        .collect();
    let pair = |n: &str, v: &str| (n.to_owned(), Some(v.to_owned()));
    assert_eq!(
        shown,
        [
            pair("arr", "a"),
            pair("arr", "b"),
            pair("n", "7"),
            pair("amqp.content-type", "text/plain"),
            pair("amqp.exchange", ""),
        ]
    );
}

/// Record headers as Kafka returns them, values as lossy text.
type TextHeaders = Vec<(String, Option<String>)>;

/// The key and headers of record `offset` of partition 0 of `topic`.
fn kafka_record(bootstrap: &str, topic: &str, offset: i64) -> (Option<Vec<u8>>, TextHeaders) {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mapping-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no record at {offset}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("kafka poll");
        let headers = message.headers().map_or(Vec::new(), |headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect()
        });
        return (message.key().map(<[u8]>::to_vec), headers);
    }
}

/// The first `count` record values of partition 0 of `topic`, read with librdkafka.
fn kafka_bodies(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "stream-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("kafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut bodies = Vec::new();
    while bodies.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {bodies:?} arrived"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("kafka consume");
            bodies
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    bodies
}
