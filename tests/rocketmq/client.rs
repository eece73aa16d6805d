//! End to end with a real RocketMQ remoting client (`rocketmq-client-rust` 1.0.0, JSON headers)
//! against the real `tributary` binary: sync, async and one-way sends, a push consumer with a
//! tag filter receiving the bodies byte for byte, and committed offsets surviving SIGKILL.

use crate::broker;

use crate::rocketmq;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq::{Client, body, consumer, message, producer, runtime, wait_for};

#[test]
fn sync_async_oneway_sends_reach_a_tag_filtered_push_consumer_byte_for_byte() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    runtime().block_on(async move {
        let client = Client::new("sends").expect("client");
        let topic = "OrdersRmq";
        let producer = producer(&client, &namesrv, "PID-sends").await;
        let mut expected = BTreeSet::new();
        for n in 0..10 {
            let result = producer
                .send(message(topic, "TagA", body("sync", n), "sync"))
                .await
                .expect("sync send")
                .expect("a send result");
            assert!(
                result
                    .offset_msg_id
                    .as_deref()
                    .is_some_and(|id| id.len() == 32),
                "offset message id {:?}",
                result.offset_msg_id
            );
            expected.insert(body("sync", n));
        }
        for n in 0..5 {
            producer
                .send(message(topic, "TagB", body("filtered", n), "sync"))
                .await
                .expect("sync send of TagB");
        }
        let acked = Arc::new(AtomicUsize::new(0));
        for n in 0..10 {
            let acked = Arc::clone(&acked);
            producer
                .send_with_callback(
                    message(topic, "TagA", body("async", n), "async"),
                    move |ok, err| {
                        assert!(err.is_none(), "async send failed: {err:?}");
                        if ok.is_some() {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                    },
                )
                .await
                .expect("async send");
            expected.insert(body("async", n));
        }
        wait_for("async acks", Duration::from_secs(20), || {
            acked.load(Ordering::SeqCst) == 10
        })
        .await;
        for n in 0..10 {
            producer
                .send_oneway(message(topic, "TagA", body("oneway", n), "oneway"))
                .await
                .expect("oneway send");
            expected.insert(body("oneway", n));
        }

        let received = Arc::new(Mutex::new(Vec::new()));
        let mut consumer = consumer(
            &client,
            &namesrv,
            "CID-sends",
            topic,
            "TagA",
            Arc::clone(&received),
        )
        .await;
        wait_for("30 TagA messages", Duration::from_secs(60), || {
            received.lock().len() >= expected.len()
        })
        .await;
        // Give a stray TagB message the chance to show up before checking.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let received = received.lock().clone();
        let bodies: BTreeSet<Vec<u8>> = received.iter().map(|(b, _, _)| b.clone()).collect();
        assert_eq!(bodies, expected);
        assert!(
            received
                .iter()
                .all(|(_, tag, _)| tag.as_deref() == Some("TagA"))
        );
        for (body, _, origin) in &received {
            let origin = origin.as_deref().expect("user property kept");
            assert!(body.starts_with(origin.as_bytes()), "{origin} vs {body:?}");
        }
        consumer.shutdown().await;
        let mut producer = producer;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}

#[test]
fn committed_offsets_survive_kill_and_restart() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "ResumeRmq";
    let group = "CID-resume";
    let rt = runtime();
    rt.block_on(async {
        let client = Client::new("first").expect("client");
        let mut producer = producer(&client, &namesrv, "PID-resume").await;
        for n in 0..12 {
            producer
                .send(message(topic, "T", body("before", n), "before"))
                .await
                .expect("send");
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut consumer =
            consumer(&client, &namesrv, group, topic, "*", Arc::clone(&received)).await;
        wait_for("12 messages", Duration::from_secs(60), || {
            received.lock().len() >= 12
        })
        .await;
        // The client persists offsets 10 s after it starts and every 5 s after that; its
        // shutdown persist is one-way and not awaited, so the test waits for a periodic one.
        tokio::time::sleep(Duration::from_secs(12)).await;
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });

    broker.kill_and_restart();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    rt.block_on(async {
        let client = Client::new("second").expect("client");
        let mut producer = producer(&client, &namesrv, "PID-resume").await;
        let mut expected = BTreeSet::new();
        for n in 0..4 {
            producer
                .send(message(topic, "T", body("after", n), "after"))
                .await
                .expect("send after restart");
            expected.insert(body("after", n));
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut consumer =
            consumer(&client, &namesrv, group, topic, "*", Arc::clone(&received)).await;
        wait_for("4 new messages", Duration::from_secs(60), || {
            received.lock().len() >= 4
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let bodies: BTreeSet<Vec<u8>> = received.lock().iter().map(|(b, _, _)| b.clone()).collect();
        assert_eq!(
            bodies, expected,
            "only messages after the committed offsets"
        );
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}
