//! Consumer groups with a real RocketMQ remoting client (`rocketmq-client-rust` 1.0.0) against
//! the real `tributary` binary: two push consumers of one group split a topic's queues and the
//! survivor takes over all of them when the other leaves (membership changes are pushed as
//! NOTIFY_CONSUMER_IDS_CHANGED); an orderly consumer, which consumes only queues it has locked
//! with LOCK_BATCH_MQ, sees every queue's messages in send order.

use crate::broker;

use crate::rocketmq;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq::{Client, body, producer, runtime, wait_for};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
    MessageListenerOrderly,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;

/// (body, queue id) of every delivery a member saw.
type Seen = Arc<Mutex<Vec<(Vec<u8>, i32)>>>;

struct Recorder(Seen);

impl MessageListenerConcurrently for Recorder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self.0.lock();
        for msg in msgs {
            seen.push((
                msg.body().map(|b| b.to_vec()).unwrap_or_default(),
                msg.queue_id(),
            ));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

async fn member(
    client: &Client,
    namesrv: &str,
    group: &str,
    topic: &str,
    seen: Seen,
) -> DefaultMQPushConsumer {
    let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
        .consumer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(Recorder(seen));
    consumer.start().await.expect("consumer start");
    consumer
}

fn queues(seen: &Seen) -> BTreeSet<i32> {
    seen.lock().iter().map(|(_, queue)| *queue).collect()
}

fn bodies(seen: &Seen) -> BTreeSet<Vec<u8>> {
    seen.lock().iter().map(|(b, _)| b.clone()).collect()
}

#[test]
fn two_members_split_the_queues_and_the_survivor_takes_over() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let (topic, group) = ("GroupRmq", "CID-pair");
    runtime().block_on(async {
        let client_a = Client::new("member-a").expect("client");
        let client_b = Client::new("member-b").expect("client");
        let (seen_a, seen_b): (Seen, Seen) = Default::default();
        let mut producer = producer(&client_a, &namesrv, "PID-pair").await;
        let mut a = member(&client_a, &namesrv, group, topic, Arc::clone(&seen_a)).await;
        let mut b = member(&client_b, &namesrv, group, topic, Arc::clone(&seen_b)).await;

        // Keep sending until both members have received something: the queues are split.
        let mut sent = BTreeSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        for n in 0.. {
            if !seen_a.lock().is_empty() && !seen_b.lock().is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "both members never received"
            );
            let b = body("split", n);
            producer.send(plain(topic, b.clone())).await.expect("send");
            sent.insert(b);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_for("every split message", Duration::from_secs(60), || {
            bodies(&seen_a).union(&bodies(&seen_b)).count() >= sent.len()
        })
        .await;
        let (queues_a, queues_b) = (queues(&seen_a), queues(&seen_b));
        assert!(
            queues_a.is_disjoint(&queues_b),
            "a queue consumed by both members: {queues_a:?} / {queues_b:?}"
        );
        let all: BTreeSet<Vec<u8>> = bodies(&seen_a).union(&bodies(&seen_b)).cloned().collect();
        assert_eq!(all, sent, "nothing lost while split");

        // B leaves; A takes over every queue and gets everything sent afterwards.
        b.shutdown().await;
        client_b.shutdown().await;
        let before = seen_a.lock().len();
        let mut after = BTreeSet::new();
        for n in 0..24 {
            let b = body("after", n);
            producer.send(plain(topic, b.clone())).await.expect("send");
            after.insert(b);
        }
        wait_for(
            "the survivor to get every later message",
            Duration::from_secs(90),
            || after.is_subset(&bodies(&seen_a)),
        )
        .await;
        let late_queues: BTreeSet<i32> = seen_a.lock()[before..].iter().map(|(_, q)| *q).collect();
        assert_eq!(
            late_queues.len(),
            4,
            "the survivor consumes all four queues"
        );
        a.shutdown().await;
        producer.shutdown().await;
        client_a.shutdown().await;
    });
    broker.terminate();
}

fn plain(topic: &str, body: Vec<u8>) -> Message {
    Message::builder()
        .topic(topic)
        .tags("G")
        .body(body)
        .build()
        .expect("message")
}

/// Records each queue's bodies in delivery order.
struct InOrder(Arc<Mutex<BTreeMap<i32, Vec<Vec<u8>>>>>);

impl MessageListenerOrderly for InOrder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &mut ConsumeOrderlyContext,
    ) -> ClientResult<ConsumeOrderlyStatus> {
        let mut seen = self.0.lock();
        for msg in msgs {
            seen.entry(msg.queue_id())
                .or_default()
                .push(msg.body().map(|b| b.to_vec()).unwrap_or_default());
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

#[test]
fn an_orderly_consumer_sees_each_queue_in_send_order() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "OrderlyRmq";
    runtime().block_on(async {
        let client = Client::new("orderly").expect("client");
        let mut producer = producer(&client, &namesrv, "PID-orderly").await;
        // Orders 0..4, each with steps 0..10, sent interleaved; an order's queue is order % 4.
        let mut expected: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
        for step in 0..10 {
            for order in 0..4i32 {
                let b = format!("order-{order}-step-{step}").into_bytes();
                producer
                    .send_with_selector(
                        plain(topic, b.clone()),
                        |queues: &[MessageQueue], _msg: &Message, order: &i32| {
                            queues.iter().find(|q| q.queue_id() == order % 4).cloned()
                        },
                        order,
                    )
                    .await
                    .expect("ordered send")
                    .expect("a send result");
                expected.entry(order % 4).or_default().push(b);
            }
        }
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
            .consumer_group("CID-orderly".to_string())
            .name_server_addr(namesrv.clone())
            .build();
        consumer.subscribe(topic, "*").await.expect("subscribe");
        consumer.register_message_listener_orderly(InOrder(Arc::clone(&seen)));
        consumer.start().await.expect("consumer start");
        wait_for("40 ordered messages", Duration::from_secs(90), || {
            seen.lock().values().map(Vec::len).sum::<usize>() >= 40
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*seen.lock(), expected, "per-queue order");
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}
