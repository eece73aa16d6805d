//! Kafka transactions seen from the other protocols (issue 18, `tributary_api::transactions`):
//! an AMQP stream consumer, an AMQP queue fed by the topic's exchange and RocketMQ push
//! consumers get the records of committed transactions only, never those of an aborted one
//! nor the markers, and the records of an open transaction only once it commits, each reader
//! waiting at the last stable offset and woken by the commit.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use rdkafka::producer::Producer;

use crate::amqp::declare_stream;
use crate::broker::TestBroker;
use crate::kafka::create_topic;
use crate::kafka_txn::{WAIT, send, transactional_producer, values};
use crate::lapin_support::{args, connect_to, text};
use crate::rmq::read_exactly;
use crate::rocketmq::runtime;

/// Consumes `queue` (with `arguments`) on a fresh channel of `channel`'s connection.
async fn consume(channel: &Channel, queue: &str, arguments: FieldTable) -> lapin::Consumer {
    channel
        .basic_qos(50, BasicQosOptions::default())
        .await
        .expect("qos");
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .unwrap_or_else(|err| panic!("consume {queue}: {err}"))
}

/// The bodies of the next `count` deliveries (acked), then fails if another comes within
/// `quiet`.
async fn next_bodies(
    consumer: &mut lapin::Consumer,
    what: &str,
    count: usize,
    quiet: Duration,
) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(15), consumer.next()).await;
        let Ok(Some(delivery)) = next else {
            panic!("{what}: only {got:?} of {count} deliveries within 15 s of the last");
        };
        let delivery = delivery.expect("delivery");
        got.push(String::from_utf8_lossy(&delivery.data).into_owned());
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    if let Ok(Some(extra)) = tokio::time::timeout(quiet, consumer.next()).await {
        let extra = extra.expect("delivery");
        panic!(
            "{what}: after {got:?}, one more: {:?}",
            String::from_utf8_lossy(&extra.data)
        );
    }
    got
}

#[test]
fn other_protocols_read_committed_transactional_records_only() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "txn-interop";
    let feed = "txn-interop-feed";
    let rt = runtime();
    let connection = rt.block_on(async {
        // One partition: the topic is the stream `txn-interop`.
        create_topic(&bootstrap, topic, 1).await;
        // Bound before anything is written: the feed takes records from the bind on.
        let connection = connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(feed.into(), durable, FieldTable::default())
            .await
            .expect("declare the fed queue");
        channel
            .queue_bind(
                feed.into(),
                topic.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind to the topic's exchange");
        connection
    });

    let committed = values("committed", 5);
    let aborted = values("aborted", 4);
    let open = values("open", 3);
    let producer = transactional_producer(&bootstrap, "txn-interop-producer");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &committed);
    producer.commit_transaction(WAIT).expect("commit");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &aborted);
    producer.abort_transaction(WAIT).expect("abort");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &open);

    rt.block_on(async {
        let quiet = Duration::from_millis(1_500);
        // A RocketMQ group reading now gets the committed records and nothing else.
        let before = read_exactly(&namesrv, "CID-txn-interop-before", topic, committed.len()).await;
        let bodies: Vec<String> = before
            .messages
            .iter()
            .map(|pulled| String::from_utf8_lossy(&pulled.body).into_owned())
            .collect();
        assert_eq!(bodies, committed, "RocketMQ before the commit");

        let channel = connection.create_channel().await.expect("channel");
        declare_stream(&channel, topic).await;
        let mut stream =
            consume(&channel, topic, args(&[("x-stream-offset", text("first"))])).await;
        let feed_channel = connection.create_channel().await.expect("channel");
        let mut fed = consume(&feed_channel, feed, FieldTable::default()).await;
        assert_eq!(
            next_bodies(&mut stream, "stream before the commit", 5, quiet).await,
            committed
        );
        assert_eq!(
            next_bodies(&mut fed, "fed queue before the commit", 5, quiet).await,
            committed
        );

        // A RocketMQ group waiting at the last stable offset while the transaction commits.
        let waiting = read_exactly(&namesrv, "CID-txn-interop-waiting", topic, 8);
        let commit = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tokio::task::spawn_blocking(move || {
                producer.commit_transaction(WAIT).expect("commit");
            })
            .await
            .expect("commit task");
            (
                next_bodies(&mut stream, "stream after the commit", 3, quiet).await,
                next_bodies(&mut fed, "fed queue after the commit", 3, quiet).await,
            )
        };
        let (waited, (streamed, fed_after)) = tokio::join!(waiting, commit);
        assert_eq!(streamed, open, "the stream consumer is woken by the commit");
        assert_eq!(fed_after, open, "the feed is woken by the commit");
        let bodies: Vec<String> = waited
            .messages
            .iter()
            .map(|pulled| String::from_utf8_lossy(&pulled.body).into_owned())
            .collect();
        let expected: Vec<String> = committed.iter().chain(&open).cloned().collect();
        assert_eq!(bodies, expected, "RocketMQ across the commit");
        let _ = connection.close(200, "done".into()).await;
    });
}
