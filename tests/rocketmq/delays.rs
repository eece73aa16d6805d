//! Delayed delivery, retries and the dead-letter queue with a real RocketMQ remoting client
//! (`rocketmq-client-rust` 1.0.0) against the real `tributary` binary, with short delay levels
//! from the configuration so the test runs in seconds: delay levels and 5.x timers hold messages
//! back, a pending delay survives SIGKILL, and a consumer that keeps failing sees a message
//! `1 + maxReconsumeTimes` times before it lands in `%DLQ%<group>`.

use crate::broker;

use crate::rocketmq;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq::{Client, body, consumer, producer, runtime, wait_for};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer,
    MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

/// Level 1 is 1 s, level 2 is 3 s; every retry level (3 and up) is 300 ms.
const LEVELS: &str = "1s 3s 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms 300ms";

fn config_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("config file");
    writeln!(file, "[rocketmq]\ndelay_levels = \"{LEVELS}\"").expect("write config");
    file
}

fn start_broker(config: &tempfile::NamedTempFile) -> TestBroker {
    TestBroker::start_with(&["--config", config.path().to_str().expect("utf-8 path")])
}

fn delayed(topic: &str, body: Vec<u8>, level: i32) -> Message {
    Message::builder()
        .topic(topic)
        .tags("D")
        .delay_level(level)
        .body(body)
        .build()
        .expect("message")
}

fn plain(topic: &str, body: Vec<u8>) -> Message {
    Message::builder()
        .topic(topic)
        .tags("P")
        .body(body)
        .build()
        .expect("message")
}

#[test]
fn delay_levels_and_timers_hold_messages_back_and_survive_a_restart() {
    let config = config_file();
    let mut broker = start_broker(&config);
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "DelayRmq";
    let rt = runtime();
    rt.block_on(async {
        let client = Client::new("delay").expect("client");
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut consumer = consumer(
            &client,
            &namesrv,
            "CID-delay",
            topic,
            "*",
            Arc::clone(&received),
        )
        .await;
        let mut producer = producer(&client, &namesrv, "PID-delay").await;
        // Wait until the consumer has its queues: a plain message comes through.
        producer
            .send(plain(topic, body("warm-up", 0)))
            .await
            .expect("send");
        wait_for("the warm-up message", Duration::from_secs(60), || {
            !received.lock().is_empty()
        })
        .await;

        let sent = Instant::now();
        producer
            .send(delayed(topic, body("level-2", 0), 2))
            .await
            .expect("delayed send");
        let timer = Message::builder()
            .topic(topic)
            .tags("T")
            .delay_secs(1)
            .body(body("timer-1s", 0))
            .build()
            .expect("timer message");
        producer.send(timer).await.expect("timer send");
        producer
            .send(plain(topic, body("plain", 1)))
            .await
            .expect("send");
        let arrival = |label: &'static str| {
            let received = Arc::clone(&received);
            move || {
                received
                    .lock()
                    .iter()
                    .any(|(b, _, _)| b.starts_with(label.as_bytes()))
            }
        };
        wait_for(
            "the plain message",
            Duration::from_secs(20),
            arrival("plain"),
        )
        .await;
        assert!(
            !arrival("level-2")() && !arrival("timer-1s")(),
            "delayed messages arrived with the plain one, {:?} after sending",
            sent.elapsed()
        );
        wait_for(
            "the 1 s timer message",
            Duration::from_secs(20),
            arrival("timer-1s"),
        )
        .await;
        let timer_after = sent.elapsed();
        wait_for(
            "the level-2 message",
            Duration::from_secs(20),
            arrival("level-2"),
        )
        .await;
        let level_after = sent.elapsed();
        assert!(
            timer_after >= Duration::from_millis(900),
            "timer after {timer_after:?}"
        );
        assert!(
            level_after >= Duration::from_millis(2_900),
            "level 2 after {level_after:?}"
        );
        assert!(
            level_after < Duration::from_secs(15),
            "level 2 after {level_after:?}"
        );

        // A delay pending when the broker dies is delivered after the restart.
        producer
            .send(delayed(topic, body("across-restart", 0), 2))
            .await
            .expect("delayed send");
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });

    broker.kill_and_restart();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    rt.block_on(async {
        let client = Client::new("delay-after").expect("client");
        let received = Arc::new(Mutex::new(Vec::new()));
        // A new group starts from the first offset, so it sees everything including the
        // message the scheduler delivered after the restart.
        let mut consumer = consumer(
            &client,
            &namesrv,
            "CID-delay-after",
            topic,
            "*",
            Arc::clone(&received),
        )
        .await;
        wait_for(
            "the message delayed across the restart",
            Duration::from_secs(60),
            || {
                received
                    .lock()
                    .iter()
                    .any(|(b, _, _)| b.starts_with(b"across-restart"))
            },
        )
        .await;
        let copies = received
            .lock()
            .iter()
            .filter(|(b, _, _)| b.starts_with(b"across-restart"))
            .count();
        assert_eq!(copies, 1, "delivered once");
        consumer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}

/// Fails every message and counts deliveries per body.
struct AlwaysFails(Arc<Mutex<BTreeMap<Vec<u8>, Vec<i32>>>>);

impl MessageListenerConcurrently for AlwaysFails {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self.0.lock();
        for msg in msgs {
            let body = msg.body().map(|b| b.to_vec()).unwrap_or_default();
            seen.entry(body).or_default().push(msg.reconsume_times());
        }
        Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
    }
}

#[test]
fn failed_messages_are_retried_then_dead_lettered() {
    let config = config_file();
    let mut broker = start_broker(&config);
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "RetryRmq";
    let group = "CID-retry";
    let max_reconsume = 2;
    runtime().block_on(async {
        let client = Client::new("retry").expect("client");
        let deliveries = Arc::new(Mutex::new(BTreeMap::new()));
        let mut failing = DefaultMQPushConsumer::builder(client.runtime.clone())
            .consumer_group(group.to_string())
            .name_server_addr(namesrv.clone())
            .max_reconsume_times(max_reconsume)
            .build();
        failing.subscribe(topic, "*").await.expect("subscribe");
        failing.register_message_listener_concurrently(AlwaysFails(Arc::clone(&deliveries)));
        failing.start().await.expect("consumer start");

        let mut producer = producer(&client, &namesrv, "PID-retry").await;
        let bodies: Vec<Vec<u8>> = (0..3).map(|n| body("doomed", n)).collect();
        for b in &bodies {
            producer.send(plain(topic, b.clone())).await.expect("send");
        }

        let dead = Arc::new(Mutex::new(Vec::new()));
        let dlq = format!("%DLQ%{group}");
        let mut dlq_reader = consumer(
            &client,
            &namesrv,
            "CID-dlq-reader",
            &dlq,
            "*",
            Arc::clone(&dead),
        )
        .await;
        wait_for("three dead letters", Duration::from_secs(90), || {
            dead.lock().len() >= bodies.len()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let deliveries = deliveries.lock().clone();
        for b in &bodies {
            let times = deliveries.get(b).expect("delivered at least once");
            assert_eq!(
                times,
                &(0..=max_reconsume).collect::<Vec<_>>(),
                "deliveries (reconsume times) of {b:?}"
            );
        }
        let mut dead_bodies: Vec<Vec<u8>> = dead.lock().iter().map(|(b, _, _)| b.clone()).collect();
        dead_bodies.sort();
        let mut expected = bodies.clone();
        expected.sort();
        assert_eq!(dead_bodies, expected, "each failed message in the DLQ once");
        assert!(
            dead.lock()
                .iter()
                .all(|(_, tag, _)| tag.as_deref() == Some("P")),
            "the tag is kept"
        );
        failing.shutdown().await;
        dlq_reader.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}
