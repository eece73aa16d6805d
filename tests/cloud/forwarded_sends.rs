//! RocketMQ sends through a broker that does not lead every queue of the topic (its routes
//! name only itself): the sends to partitions another broker leads are forwarded to the leader
//! over the internal RPC and stored once each, as a Kafka consumer reads back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message as _;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;

use crate::cluster::start_broker;
use crate::rocketmq_support::{Client, body, producer, runtime};
use crate::services::{bucket, fresh_database, unique};

const QUEUES: i32 = 4;
const SENDS: usize = 24;

#[test]
fn rocketmq_sends_to_partitions_another_broker_leads_are_forwarded() {
    let rt = runtime();
    let database = rt.block_on(fresh_database("rmq-forward"));
    let objects = format!("s3://{}/{}", bucket(), unique("rmq-forward"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "[cluster]\nflush_interval_ms = 20\n").expect("write config");
    let path = config.path().to_str().expect("utf-8").to_owned();
    let mut a = start_broker(1, &database, &objects, &path);
    let mut b = start_broker(2, &database, &objects, &path);
    let kafka = a.addr("kafka").to_string();
    let namesrv = a.addr("rocketmq-namesrv").to_string();
    let _b_kafka = b.addr("kafka");
    let topic = "ForwardedRmq";
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .create()
            .expect("admin client");
        let created = admin
            .create_topics(
                &[NewTopic::new(topic, QUEUES, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create topics");
        assert!(created[0].is_ok(), "{created:?}");
        // Both brokers know the topic and lead some of its partitions.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let client = Client::new("forward").expect("client");
        let producer = producer(&client, &namesrv, "PID-forward").await;
        let mut sent = BTreeSet::new();
        for n in 0..SENDS {
            let payload = body("fwd", n);
            let message = Message::builder()
                .topic(topic)
                .tags("F")
                .body(payload.clone())
                .build()
                .expect("message");
            producer
                .send_with_selector(
                    message,
                    |queues: &[MessageQueue], _msg: &Message, queue: &i32| {
                        queues.iter().find(|q| q.queue_id() == *queue).cloned()
                    },
                    n as i32 % QUEUES,
                )
                .await
                .unwrap_or_else(|error| panic!("send {n} to queue {}: {error}", n as i32 % QUEUES))
                .expect("a send result");
            sent.insert(payload);
        }
        client.shutdown().await;

        let reader = crate::kafka::consumer(&kafka, "rmq-forward-check", topic, QUEUES);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < SENDS && Instant::now() < deadline {
            if let Some(message) = reader.poll(Duration::from_millis(200)) {
                let message = message.expect("consume");
                got.push(message.payload().unwrap_or_default().to_vec());
            }
        }
        reader.unsubscribe();
        let unique: BTreeSet<Vec<u8>> = got.iter().cloned().collect();
        assert_eq!(got.len(), SENDS, "each send stored once");
        assert_eq!(unique, sent, "every send is in the topic");
    });
}
